"""Step-time cost of the determinism settings, measured in one run, interleaved.

One worker process per setting (thread pools and oneDNN are fixed at process start) builds
the U-Net and its update step on random data, the batch in --micro_batches micro-batches (by
default one: the whole batch in one forward and backward pass); the coordinator then asks
each worker in turn for a few timed steps, round after round, so every setting sees the same
machine noise. It prints each setting's median step time and its ratio to the first setting of
--settings (by default the non-deterministic one).

  ./dev bazel run //benchmarks:determinism_benchmark -- --archs=mobilenetv2,vgg19

(Through Bazel, which builds the fixed-order kernels that portable settings run.)
Record results in BENCHMARKS.md with the machine (lscpu).
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
from seg.configs import config
from seg.model import backbones

FLAGS = flags.FLAGS
flags.DEFINE_list("archs", list(backbones.BACKBONES), "Backbones to measure.")
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 16, "Batch size (the seed's real configuration: 60).")
flags.DEFINE_integer("micro_batches", 1,
                     "Micro-batches each batch is split into, each with its own forward and "
                     "backward pass; it must divide --batch_size. 1: the whole batch in one "
                     "pass, as the step was when BENCHMARKS.md's determinism figures were measured.")
flags.register_multi_flags_validator(
    ["batch_size", "micro_batches"],
    lambda given: given["micro_batches"] >= 1 and given["batch_size"] % given["micro_batches"] == 0,
    "--micro_batches must be ≥ 1 and divide --batch_size")
flags.DEFINE_bool("freeze_backbone", False,
                  "Freeze the encoder, as the seed's real configuration does.")
flags.DEFINE_integer("rounds", 6, "Rounds; each worker runs --steps timed steps per round.")
flags.DEFINE_integer("steps", 4, "Timed steps per worker per round.")
flags.DEFINE_list("settings", ["nondeterministic", "same_machine", "portable",
                                "onednn_exact_pool_4", "recipe_2019"],
                  "Settings to compare, from SETTINGS; the first is the baseline of the ratios.")

SETTINGS = {
    # The seed's fast_n_close: no op determinism, pools and instruction set as TF picks them.
    "nondeterministic": dict(deterministic=False, portable=False),
    # Same bits on this machine only: oneDNN's kernels and Keras' layers, pools of every core.
    "same_machine": dict(deterministic=True, portable=False),
    # reproseg's default: the same bits on every x86-64 CPU with AVX2 and FMA, on every core
    # (the fixed-order kernels).
    "portable": dict(deterministic=True, portable=True),
    # Portable mode before the fixed-order kernels: oneDNN's kernels, exact batch norms, pools
    # of 4; the same bits only within a CPU kind (not portable now).
    "onednn_exact_pool_4": dict(deterministic=True, portable=False, exact_layers=True,
                                inter_op_threads=4, intra_op_threads=4),
    "portable_2_threads": dict(deterministic=True, portable=True, intra_op_threads=2,
                               inter_op_threads=2),
    # One thread in each pool: a step's cost on one core (issue 36's scaling, reasoned from
    # the cost on one core and on two).
    "portable_1_thread": dict(deterministic=True, portable=True, intra_op_threads=1,
                              inter_op_threads=1),
    "nondeterministic_1_thread": dict(deterministic=False, portable=False, intra_op_threads=1,
                                      inter_op_threads=1),
    "portable_onednn_off": dict(deterministic=True, portable=True, onednn=False),
    # 2019: one inter-op and one intra-op thread.
    "recipe_2019": dict(deterministic=True, portable=False, inter_op_threads=1,
                        intra_op_threads=1),
}


def _worker(connection, settings, arch, image_size, batch_size, micro_batches,
            freeze_backbone):
  determinism.apply(settings)
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seg.model import unet  # pylint: disable=g-import-not-at-top
  from seg.training import steps  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)), tf.float32)
  masks = tf.constant(rng.integers(0, 3, (batch_size, image_size, image_size)), tf.int32)
  model_config = config.ModelConfig(model_arch=arch, freeze_backbone=freeze_backbone)
  model = unet.create(model_config, image_size, 3, settings.seed, exact=settings.exact_layers,
                      fixed_order=settings.fixed_order_kernels)
  optimizer = keras.optimizers.Adam(1e-3)
  train_step, _ = steps.make_steps(model, optimizer, 3, micro_batches)
  timing.serve_steps(connection, train_step, images, masks)


def measure(arch, names):
  context = multiprocessing.get_context("spawn")
  workers = {}
  for name in names:
    settings = determinism.resolve(**SETTINGS[name])
    parent, child = context.Pipe()
    process = context.Process(target=_worker, args=(child, settings, arch, FLAGS.image_size,
                                                    FLAGS.batch_size, FLAGS.micro_batches,
                                                    FLAGS.freeze_backbone),
                              daemon=True)
    process.start()
    workers[name] = (parent, process)
  for parent, _ in workers.values():
    assert parent.recv() == "ready"
  times = {name: [] for name in names}
  for round_number in range(FLAGS.rounds):
    order = names[round_number % len(names):] + names[:round_number % len(names)]
    for name in order:
      workers[name][0].send(FLAGS.steps)
      times[name] += workers[name][0].recv()
    print("  %s round %d/%d done" % (arch, round_number + 1, FLAGS.rounds), flush=True)
  for parent, process in workers.values():
    parent.send(None)
    process.join()
  return {name: statistics.median(t) for name, t in times.items()}


def main(argv):
  del argv
  names = list(FLAGS.settings)
  unknown = set(names) - set(SETTINGS)
  if unknown:
    raise app.UsageError("unknown settings %s; known: %s" % (sorted(unknown), sorted(SETTINGS)))
  print("machine: %s, %d cores visible; image %d, batch %d, encoder %s, %d rounds x %d steps"
        % (determinism.cpu_model(), len(os.sched_getaffinity(0)), FLAGS.image_size,
           FLAGS.batch_size, "frozen" if FLAGS.freeze_backbone else "trainable", FLAGS.rounds,
           FLAGS.steps), flush=True)
  results = {}
  for arch in FLAGS.archs:
    results[arch] = medians = measure(arch, names)
    base = medians[names[0]]
    print("\n| %s | median step (s) | ratio to %s |" % (arch, names[0]))
    print("| --- | --- | --- |")
    for name in names:
      print("| %s | %.3f | %.2fx |" % (name, medians[name], medians[name] / base))
    print(flush=True)
  print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
  app.run(main)
