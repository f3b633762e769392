"""What the stage mains share: settings, data and training configs from their flags, the
determinism switches applied before TensorFlow loads, then a seg.stages function."""

from absl import flags

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from pipeline import tensorflow_startup
from seg.configs import config_flags


# The modules whose flags run_stages reads, as every seg binary's --help groups them.
FLAG_GROUPS = (("training", config_flags), ("data", dataset), ("determinism", determinism),
               ("store", cli), ("output", tensorflow_startup))


def run_stages(name, start_distribution=None, **kwargs):
  """seg.stages.<name>(store, data config, train config, settings, **kwargs) from the flags
  (seg.configs.config_flags' --stop_after_epochs included).

  start_distribution: seg.training.distribute.from_flags, for the binaries that train on several
  workers; called once TensorFlow's threads are set, before any TensorFlow op.
  """
  settings = determinism.from_flags()
  data_config = dataset.config_from_flags()
  train_config = config_flags.from_flags(data_config.dataset)
  determinism.apply(settings)  # before TensorFlow is imported
  if start_distribution:
    kwargs["distribution"] = start_distribution()
  from seg import stages  # pylint: disable=g-import-not-at-top
  return getattr(stages, name)(cli.open_store(), data_config, train_config, settings,
                               stop_after_epochs=flags.FLAGS.stop_after_epochs, **kwargs)
