"""bazel run //seg:train -- [--dataset=synthetic] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. --help lists its flags by group.
"""

import signal

# Blocked before any import starts a thread (NumPy's BLAS pool does), so that every thread
# inherits the mask: a worker takes these signals in a thread of its own
# (seg.distribute.stop_on_signals); one process unblocks them again.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

# pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import cli
from seg import distribute
from seg import launch
# pylint: enable=g-import-not-at-top,wrong-import-position


def train():
  """The train stage and those before it, as one process or as a worker of TF_CONFIG's
  cluster that stops at SIGINT/SIGTERM and names the workers that never came or went away."""
  cluster = distribute.cluster_from_flags()
  if not cluster:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return launch.run_stages("train")
  distribute.stop_on_signals(cluster, STOP_SIGNALS)
  with distribute.lost_peers_named(cluster):
    return launch.run_stages("train", start_distribution=distribute.from_flags)


if __name__ == "__main__":
  # The other stages take no --distribute: they would look for a single-process train output.
  cli.run(train, launch.FLAG_GROUPS + (("distribution", distribute),),
          next_target=lambda: None if distribute.cluster_from_flags() else ("//seg:evaluate",))
