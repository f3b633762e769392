"""Step-time cost of training on two workers (--distribute=multi_worker), interleaved.

Three setups, each its own processes, all in reproseg's portable determinism settings and at
the same global batch: one process; two workers (MultiWorkerMirroredStrategy on 127.0.0.1,
RING all-reduce) with batch statistics synchronized, as //seg:train does; two workers with
per-worker batch statistics (what Keras does by default, for comparison). The coordinator
has each setup run a few timed steps in turn, round after round, and prints median step
times and their ratio to one process.

On one machine the two workers share its cores (each with its own thread pools), so this
measures the all-reduce and synchronization overhead plus that sharing, not a cluster.

  ./dev python -m benchmarks.multi_worker_benchmark

(Run from the repository root.) Record results in BENCHMARKS.md with the machine (lscpu).
"""

import json
import multiprocessing
import os
import platform
import statistics

from absl import app
from absl import flags

from benchmarks import timing
from pipeline import determinism
from tests import tiny_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 16, "Global batch size (split evenly across workers).")
flags.DEFINE_bool("freeze_backbone", True,
                  "Freeze the encoder, as the seed's real configuration does.")
flags.DEFINE_integer("rounds", 6, "Rounds; each setup runs --steps timed steps per round.")
flags.DEFINE_integer("steps", 4, "Timed steps per setup per round.")

# name: (workers, synchronized batch statistics)
SETUPS = {"one_process": (1, False), "two_workers": (2, True),
          "two_workers_unsynchronized": (2, False)}


def _worker(connection, tf_config, synchronized, image_size, batch_size, freeze_backbone):
  settings = determinism.resolve(deterministic=True, portable=True)
  determinism.apply(settings)
  distribution = None
  if tf_config:
    os.environ["TF_CONFIG"] = tf_config
    from seg import distribute  # pylint: disable=g-import-not-at-top
    distribution = distribute.start(distribute.cluster_from_tf_config(tf_config))
  import contextlib  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seg import training  # pylint: disable=g-import-not-at-top
  from seg import unet  # pylint: disable=g-import-not-at-top
  rows = batch_size
  if distribution:
    rows //= distribution.cluster.count
  rng = np.random.default_rng(distribution.cluster.index if distribution else 0)
  images = tf.constant(rng.uniform(0, 255, (rows, image_size, image_size, 3)), tf.float32)
  masks = tf.constant(rng.integers(0, 3, (rows, image_size, image_size)), tf.int32)
  strategy = distribution.strategy if distribution else None
  with strategy.scope() if strategy else contextlib.nullcontext():
    model = unet.build("mobilenetv2", image_size, 3, settings.seed,
                       freeze_backbone=freeze_backbone, exact=settings.exact_layers)
    if synchronized:
      training.synchronize_batchnorm(model)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
  train_step, _ = training.make_steps(model, optimizer, 3, strategy)
  timing.serve_steps(connection, train_step, images, masks)


def start_setup(context, workers, synchronized):
  """[(connection, process)] of one setup's processes, started."""
  cluster = {"worker": ["127.0.0.1:%d" % port for port in tiny_pipeline.free_ports(workers)]}
  started = []
  for index in range(workers):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}
                           ) if workers > 1 else None
    parent, child = context.Pipe()
    process = context.Process(target=_worker, daemon=True, args=(
        child, tf_config, synchronized, FLAGS.image_size, FLAGS.batch_size,
        FLAGS.freeze_backbone))
    process.start()
    started.append((parent, process))
  return started


def main(argv):
  del argv
  print("machine: %s, %d cores visible; image %d, global batch %d, encoder %s, %d rounds x "
        "%d steps" % (determinism.cpu_model(), len(os.sched_getaffinity(0)), FLAGS.image_size,
                      FLAGS.batch_size, "frozen" if FLAGS.freeze_backbone else "trainable",
                      FLAGS.rounds, FLAGS.steps), flush=True)
  context = multiprocessing.get_context("spawn")
  names = list(SETUPS)
  setups = {name: start_setup(context, *SETUPS[name]) for name in names}
  for processes in setups.values():
    for parent, _ in processes:
      assert parent.recv() == "ready"
  times = {name: [] for name in names}
  for round_number in range(FLAGS.rounds):
    order = names[round_number % len(names):] + names[:round_number % len(names)]
    for name in order:
      for parent, _ in setups[name]:  # the workers of a setup step together
        parent.send(FLAGS.steps)
      per_worker = [parent.recv() for parent, _ in setups[name]]
      times[name] += [max(step) for step in zip(*per_worker)]
    print("  round %d/%d done" % (round_number + 1, FLAGS.rounds), flush=True)
  for processes in setups.values():
    for parent, process in processes:
      parent.send(None)
      process.join()
  medians = {name: statistics.median(t) for name, t in times.items()}
  print("\n| setup | median step (s) | ratio to one_process |")
  print("| --- | --- | --- |")
  for name in names:
    print("| %s | %.3f | %.2fx |" % (name, medians[name], medians[name] / medians[names[0]]))
  print(json.dumps({"python": platform.python_version(), "results": medians}))


if __name__ == "__main__":
  app.run(main)
