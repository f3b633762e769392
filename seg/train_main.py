"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. See --helpfull for every seed and switch.
"""

from absl import flags

from pipeline import cli
from seg import launch

FLAGS = flags.FLAGS


def train():
  return launch.run_stages("train", stop_after_epochs=FLAGS.stop_after_epochs)


if __name__ == "__main__":
  cli.run(train)
