"""bazel run //seg:calibrate -- [--dataset=synthetic] [flags]

Fits the calibration temperature of the trained model on the calibration split, running (or
taking from the store) download, partition and train first. Writes calibration.json and
reliability.png; prints every stage's output digest and key.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

from pipeline import cli
from seg import launch


def calibrate():
  return launch.run_stages("calibrate")


if __name__ == "__main__":
  cli.run(calibrate, launch.FLAG_GROUPS, next_target=("//seg:evaluate",))
