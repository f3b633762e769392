"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. --help lists its flags by group.
"""

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from seg import config
from seg import launch


def train():
  return launch.run_stages("train")


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("training", config),
               ("data", dataset),
               ("determinism", determinism),
               ("store", cli))


if __name__ == "__main__":
  cli.run(train, FLAG_GROUPS, next_target=("//seg:evaluate",))
