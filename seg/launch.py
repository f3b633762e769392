"""What the stage mains share: settings, data and training configs from their flags, the
determinism switches applied before TensorFlow loads, then a seg.stages function."""

from absl import flags

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from pipeline import tensorflow_startup
from seg import stages
from seg.configs import config_flags


# The modules whose flags run_stages reads, as every seg binary's --help groups them.
FLAG_GROUPS = (("training", config_flags), ("data", dataset), ("determinism", determinism),
               ("store", cli), ("output", tensorflow_startup))


def run_from_flags(before_store=lambda settings: None):
  """The stages.Run the flags describe (seg.configs.config_flags' --stop_after_epochs
  included), calling before_store(settings) once the configs are read, before the store is
  opened. Loads no TensorFlow itself."""
  settings = determinism.from_flags()
  data_config = dataset.config_from_flags()
  train_config = config_flags.from_flags(data_config.dataset)  # refused before a store is made
  before_store(settings)
  return stages.Run(cli.open_store(), data_config, train_config, settings,
                    flags.FLAGS.stop_after_epochs)


def run_stages(name, start_distribution=None, **kwargs):
  """seg.stages.<name>(run_from_flags(), **kwargs)'s Results, in the order they ran, with the
  determinism switches applied first, before TensorFlow is imported.

  start_distribution: seg.training.distribute.from_flags, for the binaries that train on several
  workers; called once TensorFlow's threads are set, before any TensorFlow op.
  """
  run = run_from_flags(determinism.apply)  # before TensorFlow is imported
  if start_distribution:
    kwargs["distribution"] = start_distribution()
  return list(getattr(stages, name)(run, **kwargs).values())
