"""Which variables' gradients follow the machine: one training step's digests
(seg.training.step_digests: logits, loss, every gradient) under settings that differ in one machine
trait each.

Each setting runs in its own process (thread pools and oneDNN are fixed at start) on the
same model, seed and random batch; the coordinator lists, for every setting, the variables
whose gradient differs from the first setting's, grouped by layer type.

  ./dev bazel run //benchmarks:gradient_digests -- --arch=mobilenetv2
"""

import collections
import json
import multiprocessing
import os

from absl import app
from absl import flags

from pipeline import determinism
from seg.training import step_digests

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", "mobilenetv2", "Backbone.")
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_bool("freeze_backbone", False, "Freeze the encoder.")

# name: (determinism.resolve keyword arguments, CPU affinity or None)
VARIANTS = {
    "portable": (dict(portable=True), None),
    "portable, one visible core": (dict(portable=True), {0}),
    "portable, oneDNN capped at AVX2": (dict(portable=True, onednn_max_cpu_isa="AVX2"), None),
    "portable, oneDNN capped at AVX512_CORE": (dict(portable=True,
                                                   onednn_max_cpu_isa="AVX512_CORE"), None),
    "portable, intra-op pool 1": (dict(portable=True, intra_op_threads=1), None),
    "portable, intra-op pool 2": (dict(portable=True, intra_op_threads=2), None),
    "portable, intra-op pool 3": (dict(portable=True, intra_op_threads=3), None),
    "portable, intra-op pool 8": (dict(portable=True, intra_op_threads=8), None),
    "portable, oneDNN off": (dict(portable=True, onednn=False), None),
    "oneDNN's kernels and Keras' layers, pools of 4": (dict(portable=False, inter_op_threads=4,
                                                            intra_op_threads=4), None),
    "Keras' own layers, oneDNN capped at AVX2": (dict(portable=False, inter_op_threads=4,
                                                      intra_op_threads=4,
                                                      onednn_max_cpu_isa="AVX2"), None),
    "same machine (pools follow cores, native ISA)": (dict(portable=False), None),
    "same machine, one visible core": (dict(portable=False), {0}),
}


def _worker(queue, kwargs, affinity, config):
  if affinity:
    os.sched_setaffinity(0, affinity)
  settings = determinism.resolve(**kwargs)
  determinism.apply(settings)
  queue.put(step_digests.digests(config, settings))


def _layer_type(path):
  name = path.split("/")[-2] if "/" in path else path
  for kind in ("depthwise", "expand", "project", "bn", "conv", "logits", "up"):
    if kind in path:
      return kind
  return name


def main(argv):
  del argv
  config = step_digests.StepConfig(FLAGS.arch, FLAGS.image_size, FLAGS.batch_size, steps=1,
                                   freeze_backbone=FLAGS.freeze_backbone)
  context = multiprocessing.get_context("spawn")
  results = {}
  for name, (kwargs, affinity) in VARIANTS.items():
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, kwargs, affinity, config))
    process.start()
    results[name] = queue.get()
    process.join()
  base_name = next(iter(VARIANTS))
  base = results[base_name]
  print("\n%s, %d px, batch %d; compared with '%s' (%d gradients)" % (
      FLAGS.arch, FLAGS.image_size, FLAGS.batch_size, base_name, len(base["gradients"])))
  for name, result in results.items():
    differing = [p for p, d in result["gradients"].items() if d != base["gradients"][p]]
    kinds = collections.Counter(_layer_type(p) for p in differing)
    print("- %s: loss %s, forward %s, %d of %d gradients differ %s" % (
        name, "same" if result["loss"] == base["loss"] else "differs",
        "same" if result["logits"] == base["logits"] else "differs",
        len(differing), len(result["gradients"]), json.dumps(dict(kinds)) if kinds else ""))


if __name__ == "__main__":
  app.run(main)
