"""bazel run //seg:train -- [--dataset=synthetic] [--workers=N|auto] [--flagfile=FILE] [flags]

Trains the U-Net, running (or taking from the store) download and partition first, and
prints every stage's output digest and key. --workers=N trains on N local worker processes of
this binary, whose chief prints them. --help lists its flags by group.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

import sys

from absl import flags

from pipeline import child_process
from pipeline import cli
from pipeline import determinism
from pipeline import planning
from pipeline import stopping
from seg import launch
from seg.configs import config
from seg.configs import config_flags
from seg.training import distribute
from seg.training import local_workers

NEXT = "//seg:evaluate"  # the command a user would run after training


def train():
  """The train stage and those before it, as one process, as a worker of TF_CONFIG's cluster
  that stops at SIGINT/SIGTERM and names the workers that never came or went away, or as the
  launcher of --workers local workers: then the exit status of the workers (an int). A dry
  run checks the workers' flags as the run would, then plans as one process: workers train
  its bits under its key."""
  count = local_worker_count()
  cluster = distribute.cluster_from_flags() if count == 1 else None
  if cluster:
    config.refuse_several(config_flags.from_flags(flags.FLAGS.dataset),
                          flags.FLAGS.stop_after_epochs, "workers")
  if planning.dry_run():
    return launch.run_stages("train")
  if count > 1:
    cli.leave_result_to_workers()
    status = local_workers.run(local_workers.worker_command(sys.argv), count,
                               env=child_process.environment())
    if status == 0:  # the chief, a worker of a cluster, names no next command
      print(cli.next_command(NEXT, cli.without_flag(sys.argv, "workers")))
    return status
  if not cluster:
    return launch.run_stages("train")
  stopping.subject = "distribute: %s" % cluster.describe()  # the line of a stop names it
  with distribute.lost_peers_named(cluster):
    return launch.run_stages("train", start_distribution=distribute.from_flags)


def local_worker_count():
  """The worker count --workers asks for: 1 unless it is given, and then the training config
  and the intra-op pool size are read (the count must divide micro_batches). Refuses what
  several workers cannot do: stop on purpose (--stop_after_epochs), or agree on an
  unrepeatable run's key (--noseeded_dropout)."""
  if not local_workers.asked(multi_worker=flags.FLAGS.distribute == "multi_worker"):
    return 1
  train_config = config_flags.from_flags(flags.FLAGS.dataset)
  config.refuse_several(train_config, flags.FLAGS.stop_after_epochs, "workers")
  return local_workers.from_flags(train_config.micro_batches,
                                  determinism.from_flags().intra_op_threads)


if __name__ == "__main__":
  # A worker of a cluster names no next command: its flags hold --distribute, which only
  # train takes, and one worker's view is not the whole run's.
  cli.run(train, launch.FLAG_GROUPS + (("distribution", distribute),
                                       ("local workers", local_workers)),
          next_target=lambda: None if distribute.cluster_from_flags() else (NEXT,))
