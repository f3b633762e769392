"""Which variables' gradients follow the machine: one training step's gradients, digested per
variable, under settings that differ in one machine trait each.

Each setting runs in its own process (thread pools and oneDNN are fixed at start) on the
same model, seed and random batch, and prints a sha256 per gradient; the coordinator lists,
for every setting, the variables whose gradient differs from the first setting's, grouped by
layer type.

  ./dev python -m benchmarks.gradient_digests --arch=mobilenetv2
"""

import collections
import hashlib
import json
import multiprocessing
import os

from absl import app
from absl import flags

from pipeline import determinism

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", "mobilenetv2", "Backbone.")
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")

# name: (Settings keyword arguments, CPU affinity or None)
VARIANTS = {
    "portable": (dict(portable=True), None),
    "portable, one visible core": (dict(portable=True), {0}),
    "portable, oneDNN capped at AVX512_CORE": (dict(portable=True,
                                                   onednn_max_cpu_isa="AVX512_CORE"), None),
    "portable, intra-op pool 1": (dict(portable=True, intra_op_threads=1), None),
    "portable, intra-op pool 2": (dict(portable=True, intra_op_threads=2), None),
    "portable, oneDNN off": (dict(portable=True, onednn=False), None),
    "same machine (pools follow cores, native ISA)": (dict(portable=False), None),
    "same machine, one visible core": (dict(portable=False), {0}),
}


def _worker(queue, kwargs, affinity, arch, image_size, batch_size):
  if affinity:
    os.sched_setaffinity(0, affinity)
  settings = determinism.resolve(**kwargs)
  determinism.apply(settings)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seg import unet  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)), tf.float32)
  masks = tf.constant(rng.integers(0, 3, (batch_size, image_size, image_size)), tf.int32)
  model = unet.build(arch, image_size, 3, settings.seed)

  @tf.function
  def gradients():
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
          masks, logits, from_logits=True))
    return loss, tape.gradient(loss, model.trainable_variables)

  loss, grads = gradients()
  digests = {}
  for variable, grad in zip(model.trainable_variables, grads):
    digests[variable.path] = hashlib.sha256(grad.numpy().tobytes()).hexdigest()
  queue.put({"loss": float(loss), "gradients": digests,
             "logits_sha256": hashlib.sha256(
                 model(images, training=False).numpy().tobytes()).hexdigest()})


def _layer_type(path):
  name = path.split("/")[-2] if "/" in path else path
  for kind in ("depthwise", "expand", "project", "bn", "conv", "logits", "up"):
    if kind in path:
      return kind
  return name


def main(argv):
  del argv
  context = multiprocessing.get_context("spawn")
  results = {}
  for name, (kwargs, affinity) in VARIANTS.items():
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, kwargs, affinity, FLAGS.arch,
                                                    FLAGS.image_size, FLAGS.batch_size))
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
        "same" if result["logits_sha256"] == base["logits_sha256"] else "differs",
        len(differing), len(result["gradients"]), json.dumps(dict(kinds)) if kinds else ""))


if __name__ == "__main__":
  app.run(main)
