"""Step-time cost of micro-batches and of two workers (issue 19), interleaved.

Three setups, each its own processes, all in reproseg's portable determinism settings, on the
same global batch of random data (generated from one fixed seed in every process, each
process keeping its rows), with the update step of seg.training.steps:

- whole_batch: one process, the whole batch in one forward and backward pass (one
  micro-batch, as the step was before micro-batches);
- micro_batches: one process, the batch split into --micro_batches micro-batches, each with
  its own forward and backward pass;
- two_workers: two worker processes (MultiWorkerMirroredStrategy on 127.0.0.1), --micro_batches
  micro-batches, each worker computing half of them and all-gathering every worker's, as
  --workers=2 trains.

The coordinator has each setup run --steps timed steps in turn, round after round, the order
rotating, and prints each setup's median step time and its ratio to the first setup (a
two-worker step is the slower worker's), then one line per setup with the median wall time of
one micro-batch's forward and backward pass (a call of seg.training.steps.TrainStep.micro_step)
and, for two workers, the median time per step spent in the all-gathers: per step the smaller
of the two workers' (the worker that reaches an all-gather first waits there for the other),
so it is the all-gathers' own cost, not the wait. Then one JSON line.

On one machine the two workers share its cores (each with its own thread pools, on a 2-core
machine the same two cores), so the two_workers ratio is that sharing plus the all-gather
overhead, not what a cluster of two machines would gain.

  ./dev bazel run //benchmarks:multi_worker_benchmark

Record results in BENCHMARKS.md with the machine (lscpu).
"""

import json
import multiprocessing
import os
import platform
import statistics
import time

from absl import app
from absl import flags

from pipeline import determinism
from seg.configs import config
from seg.training import local_workers

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 60, "Global batch size (the seed's real configuration).")
flags.DEFINE_integer("micro_batches", 2,
                     "Micro-batches of the micro_batches and two_workers setups; it must divide "
                     "--batch_size, and 2 must divide it for two_workers.")
flags.DEFINE_bool("freeze_backbone", True,
                  "Freeze the encoder, as the seed's real configuration does.")
flags.DEFINE_integer("rounds", 5, "Rounds; each setup runs --steps timed steps per round.")
flags.DEFINE_integer("steps", 3, "Timed steps per setup per round.")

# name: (worker processes, whether the batch is split into --micro_batches, else one)
SETUPS = {"whole_batch": (1, False), "micro_batches": (1, True), "two_workers": (2, True)}
flags.DEFINE_list("setups", list(SETUPS),
                  "Setups to compare, from SETUPS; the first is the baseline of the ratios.")


class Stopwatch:
  """Wraps functions so that each call's wall time (seconds) is added to calls."""

  def __init__(self):
    self.calls = []

  def wrap(self, function):
    def timed(*args):
      start = time.perf_counter()
      result = function(*args)
      self.calls.append(time.perf_counter() - start)
      return result
    return timed

  def take(self):
    """The times recorded since the last take."""
    calls, self.calls = self.calls, []
    return calls


def _batch(image_size, batch_size, rows):
  """(images, masks) of rows (a slice) of the global batch, the same in every process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3))
  masks = rng.integers(0, 3, (batch_size, image_size, image_size))
  return tf.constant(images[rows], tf.float32), tf.constant(masks[rows], tf.int32)


def _worker(connection, tf_config, micro_batches, image_size, batch_size, freeze_backbone):
  """One process of a setup: a worker of tf_config's cluster, or alone if None."""
  settings = determinism.resolve(deterministic=True, portable=True)
  determinism.apply(settings)
  from seg.training import distribute  # pylint: disable=g-import-not-at-top
  distribution = None
  if tf_config:
    os.environ["TF_CONFIG"] = tf_config  # which the strategy reads
    distribution = distribute.start(distribute.cluster_from_tf_config(tf_config))
  import keras  # pylint: disable=g-import-not-at-top
  from seg.model import unet  # pylint: disable=g-import-not-at-top
  from seg.training import steps  # pylint: disable=g-import-not-at-top
  first, count = (distribute.part(micro_batches, distribution.cluster) if distribution
                  else (0, micro_batches))
  size = batch_size // micro_batches
  images, masks = _batch(image_size, batch_size, slice(first * size, (first + count) * size))
  model = unet.create(config.ModelConfig(freeze_backbone=freeze_backbone), image_size, 3,
                      settings.seed, exact=settings.exact_layers,
                      fixed_order=settings.fixed_order_kernels)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  gathers, micro_steps = Stopwatch(), Stopwatch()
  train_step, _ = steps.make_steps(
      model, optimizer, 3, micro_batches, (first, count),
      gathers.wrap(distribution.all_gather) if distribution else None)
  train_step.micro_step = micro_steps.wrap(train_step.micro_step)
  _serve(connection, train_step, images, masks, micro_steps, gathers)


def _serve(connection, train_step, images, masks, micro_steps, gathers):
  """Warms train_step up (tracing), says "ready", then, for each count of steps the
  coordinator sends, runs that many and sends back, per step, (wall time, [wall time of
  each micro_step call], total wall time of the all-gathers); None ends."""
  for _ in range(2):
    train_step(images, masks)[0].numpy()
  micro_steps.take()
  gathers.take()
  connection.send("ready")
  while True:
    steps = connection.recv()
    if steps is None:
      return
    records = []
    for _ in range(steps):
      start = time.perf_counter()
      train_step(images, masks)[0].numpy()
      records.append((time.perf_counter() - start, micro_steps.take(), sum(gathers.take())))
    connection.send(records)


def micro_batch_count(name):
  return FLAGS.micro_batches if SETUPS[name][1] else 1


def start_setup(context, name):
  """[(connection, process)] of one setup's processes, started."""
  workers = SETUPS[name][0]
  cluster = {"worker": ["127.0.0.1:%d" % port for port in local_workers.free_ports(workers)]}
  started = []
  for index in range(workers):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}
                           ) if workers > 1 else None
    parent, child = context.Pipe()
    process = context.Process(target=_worker, daemon=True, args=(
        child, tf_config, micro_batch_count(name), FLAGS.image_size, FLAGS.batch_size,
        FLAGS.freeze_backbone))
    process.start()
    started.append((parent, process))
  return started


def measure(names):
  """{name: {"step", "micro_step", "all_gather": [seconds]}}, from --rounds rounds of each
  setup running --steps steps in turn; a step of several workers is the slowest's, its
  all-gather time the smallest (none for one process)."""
  context = multiprocessing.get_context("spawn")
  setups = {name: start_setup(context, name) for name in names}
  for processes in setups.values():
    for parent, _ in processes:
      assert parent.recv() == "ready"
  times = {name: {"step": [], "micro_step": [], "all_gather": []} for name in names}
  for round_number in range(FLAGS.rounds):
    order = names[round_number % len(names):] + names[:round_number % len(names)]
    for name in order:
      for parent, _ in setups[name]:  # the workers of a setup step together
        parent.send(FLAGS.steps)
      per_worker = [parent.recv() for parent, _ in setups[name]]
      for step in zip(*per_worker):  # one step's record from each worker
        times[name]["step"].append(max(wall for wall, _, _ in step))
        times[name]["micro_step"] += [call for _, calls, _ in step for call in calls]
        if len(step) > 1:
          times[name]["all_gather"].append(min(gather for _, _, gather in step))
    print("  round %d/%d done" % (round_number + 1, FLAGS.rounds), flush=True)
  for processes in setups.values():
    for parent, process in processes:
      parent.send(None)
      process.join()
  return times


def report(names, times):
  """Prints the table, the per-micro-batch and all-gather lines, and the JSON line."""
  medians = {name: {kind: statistics.median(values) for kind, values in kinds.items() if values}
             for name, kinds in times.items()}
  base = medians[names[0]]["step"]
  print("\n| setup | median step (s) | ratio to %s |" % names[0])
  print("| --- | --- | --- |")
  for name in names:
    print("| %s | %.3f | %.2fx |" % (name, medians[name]["step"], medians[name]["step"] / base))
  print()
  for name in names:
    workers, count = SETUPS[name][0], micro_batch_count(name)
    line = ("%s: median per-micro-batch forward+backward %.3f s (micro-batches of %d rows, %d "
            "per step%s)" % (name, medians[name]["micro_step"], FLAGS.batch_size // count,
                             count // workers, " per worker" if workers > 1 else ""))
    if workers > 1:
      line += "; median all-gather %.3f s per step" % medians[name]["all_gather"]
    print(line)
  print(json.dumps({"python": platform.python_version(), "results": medians}))


def main(argv):
  del argv
  names = list(FLAGS.setups)
  unknown = set(names) - set(SETUPS)
  if unknown:
    raise app.UsageError("unknown setups %s; known: %s" % (sorted(unknown), sorted(SETUPS)))
  workers = max(SETUPS[name][0] for name in names)
  if FLAGS.batch_size % FLAGS.micro_batches or FLAGS.micro_batches % workers:
    raise app.UsageError("--micro_batches=%d must divide --batch_size=%d, and %d workers must "
                         "divide it" % (FLAGS.micro_batches, FLAGS.batch_size, workers))
  print("machine: %s, %d cores visible; image %d, global batch %d, %d micro-batches "
        "(whole_batch: 1), encoder %s, %d rounds x %d steps" % (
            determinism.cpu_model(), len(os.sched_getaffinity(0)), FLAGS.image_size,
            FLAGS.batch_size, FLAGS.micro_batches,
            "frozen" if FLAGS.freeze_backbone else "trainable", FLAGS.rounds, FLAGS.steps),
        flush=True)
  report(names, measure(names))


if __name__ == "__main__":
  app.run(main)
