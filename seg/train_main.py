"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. See --helpfull for every seed and switch.
"""

from absl import flags

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from seg import config

FLAGS = flags.FLAGS


def train():
  settings = determinism.from_flags()
  data_config = dataset.config_from_flags()
  train_config = config.from_flags()
  determinism.apply(settings)  # before TensorFlow is imported
  from seg import stages  # pylint: disable=g-import-not-at-top
  return stages.run_pipeline(cli.open_store(), data_config, train_config, settings,
                             stop_after_epochs=FLAGS.stop_after_epochs)


if __name__ == "__main__":
  cli.run(train)
