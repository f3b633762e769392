"""bazel run //seg:calibrate -- [--dataset=synthetic] [flags]

Fits the calibration temperature of the trained model on the calibration split, running (or
taking from the store) download, partition and train first. Writes calibration.json and
reliability.png; prints every stage's output digest and key.
"""

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from seg import config
from seg import launch


def calibrate():
  return launch.run_stages("calibrate")


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("training", config),
               ("data", dataset),
               ("determinism", determinism),
               ("store", cli))


if __name__ == "__main__":
  cli.run(calibrate, FLAG_GROUPS, next_target=("//seg:evaluate",))
