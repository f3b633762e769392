"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. --help lists its flags by group.
"""

from pipeline import cli
from seg import launch


def train():
  return launch.run_stages("train")


if __name__ == "__main__":
  cli.run(train, launch.FLAG_GROUPS, next_target=("//seg:evaluate",))
