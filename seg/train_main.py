"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. --help lists its flags by group.
"""

from pipeline import cli
from seg import distribute
from seg import launch


def train():
  return launch.run_stages("train", start_distribution=distribute.from_flags)


if __name__ == "__main__":
  # The other stages take no --distribute: they would look for a single-process train output.
  cli.run(train, launch.FLAG_GROUPS + (("distribution", distribute),),
          next_target=lambda: None if distribute.cluster_from_flags() else ("//seg:evaluate",))
