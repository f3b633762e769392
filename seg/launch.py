"""What the stage mains share: settings, data and training configs from their flags, the
determinism switches applied before TensorFlow loads, then a seg.stages function."""

from absl import flags

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from pipeline import planning
from pipeline import tensorflow_startup
from seg import stages
from seg.configs import config_flags


# The modules whose flags run_stages reads, as every seg binary's --help groups them.
FLAG_GROUPS = (("training", config_flags), ("data", dataset), ("determinism", determinism),
               ("store", cli), ("dry run", planning), ("output", tensorflow_startup))


def configs_from_flags():
  """(pipeline.determinism.Settings, data_tools.dataset.DataConfig, TrainConfig) from the flags,
  each value checked. Loads no TensorFlow and makes no store."""
  planning.check_flags()
  settings = determinism.from_flags()
  data_config = dataset.config_from_flags()
  return settings, data_config, config_flags.from_flags(data_config.dataset)


def open_run(settings, data_config, train_config):
  """The stages.Run of the configs, on the store of the flags (made if missing; opened for
  planning under --dry_run), with --stop_after_epochs."""
  return stages.Run(planning.open_store(), data_config, train_config, settings,
                    flags.FLAGS.stop_after_epochs)


def run_stages(name, start_distribution=None, **kwargs):
  """seg.stages.<name>(Run of the flags, **kwargs)'s Results, in the order they ran, with the
  determinism switches applied first, before TensorFlow is imported. Under --dry_run, the
  cli.Outcome of the plan (pipeline.planning), planned as one process.

  start_distribution: seg.training.distribute.from_flags, for the binaries that train on several
  workers; called once TensorFlow's threads are set, before any TensorFlow op.
  """
  configs = configs_from_flags()
  if planning.dry_run():
    determinism.check_cpu(configs[0])  # as the run would, first; TensorFlow never starts
  else:
    determinism.apply(configs[0])  # before TensorFlow is imported
    if start_distribution:
      kwargs["distribution"] = start_distribution()
  run = open_run(*configs)
  return planning.finish(run.store, list(getattr(stages, name)(run, **kwargs).values()))
