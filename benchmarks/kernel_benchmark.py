"""Time of each fixed-order kernel (kernels/fixed_order.py) against TensorFlow's own (oneDNN),
at the convolution shapes of the U-Net, measured in one run, interleaved.

For every distinct convolution of the model (Conv2D, DepthwiseConv2D, Conv2DTranspose: kernel,
stride, padding, input and output shape, at --batch_size images) it times the forward pass,
the input gradient and the weight gradient of both implementations in turn, round after round,
so both see the same machine noise, in one process with the visible cores as its pool. It
prints each shape's median times and ratios, and the total over the model's layers (a shape
counted as often as the model has it).

  ./dev bazel run //benchmarks:kernel_benchmark -- --arch=mobilenetv2 --batch_size=30

(Through Bazel, which builds the kernels' library.) Record results in BENCHMARKS.md with the
machine (lscpu), two runs on a quiet machine.
"""

import collections
import os
import statistics
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", "mobilenetv2", "The U-Net's encoder (seg.model.backbones.BACKBONES).")
flags.DEFINE_integer("image_size", 128, "Image side.")
flags.DEFINE_integer("batch_size", 30,
                     "Images per pass (the seed's configuration: 60 in 2 micro-batches of 30).")
flags.DEFINE_integer("rounds", 5, "Rounds; each times every kernel --repeats times.")
flags.DEFINE_integer("repeats", 3, "Timed calls per kernel per round.")

Shape = collections.namedtuple("Shape", "kind n h w ci co k stride padding")


def model_shapes(arch, image_size, batch):
  """{Shape: count} of the U-Net's convolutions (kind: conv2d, depthwise, transpose)."""
  import keras  # pylint: disable=g-import-not-at-top
  from seg.configs import config  # pylint: disable=g-import-not-at-top
  from seg.model import unet  # pylint: disable=g-import-not-at-top
  model = unet.create(config.ModelConfig(model_arch=arch), image_size, 3, seed=1, exact=False)
  layers = list(model.get_layer("encoder").layers) + list(model.layers)
  shapes = collections.Counter()
  for layer in layers:
    kinds = ((keras.layers.Conv2DTranspose, "transpose"),
             (keras.layers.DepthwiseConv2D, "depthwise"), (keras.layers.Conv2D, "conv2d"))
    kind = next((name for cls, name in kinds if isinstance(layer, cls)), None)
    if kind is None:
      continue
    _, h, w, ci = layer.input.shape
    co = layer.output.shape[-1]
    shapes[Shape(kind, batch, h, w, ci, co, layer.kernel_size[0], layer.strides[0],
                 layer.padding.upper())] += 1
  return shapes


def _kernels(shape):
  """{(pass, implementation): a call} for a Shape."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kernels import fixed_order  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  normal = lambda *s: tf.constant(rng.standard_normal(s).astype(np.float32))
  s, p, k = shape.stride, shape.padding, shape.k
  pads, (oh, ow) = fixed_order.window((shape.h, shape.w), (k, k), (s, s), p)
  window = dict(strides=[s, s], pads=pads)
  tf_window = dict(strides=[1, s, s, 1], padding=p)
  ops = fixed_order._ops  # pylint: disable=protected-access
  raw = tf.raw_ops
  n, h, w, ci, co = shape.n, shape.h, shape.w, shape.ci, shape.co
  if shape.kind == "depthwise":
    x, f, dy = normal(n, h, w, ci), normal(k, k, ci, 1), normal(n, oh, ow, ci)
    return {
        ("forward", "fixed"): lambda: ops.reproseg_depthwise_conv2d(x, f, **window),
        ("forward", "tf"): lambda: raw.DepthwiseConv2dNative(input=x, filter=f, **tf_window),
        ("input grad", "fixed"): lambda: ops.reproseg_depthwise_conv2d_backprop_input(
            f, dy, input_hw=[h, w], **window),
        ("input grad", "tf"): lambda: raw.DepthwiseConv2dNativeBackpropInput(
            input_sizes=[n, h, w, ci], filter=f, out_backprop=dy, **tf_window),
        ("weight grad", "fixed"): lambda: ops.reproseg_depthwise_conv2d_backprop_filter(
            x, dy, filter_hw=[k, k], **window),
        ("weight grad", "tf"): lambda: raw.DepthwiseConv2dNativeBackpropFilter(
            input=x, filter_sizes=[k, k, ci, 1], out_backprop=dy, **tf_window),
    }
  if shape.kind == "transpose":  # from [n, h, w, ci] to [n, H, W, co] with H = h * stride
    big_h, big_w = h * s, w * s
    pads, _ = fixed_order.window((big_h, big_w), (k, k), (s, s), p)
    window = dict(strides=[s, s], pads=pads)
    x, f, dy = normal(n, h, w, ci), normal(k, k, co, ci), normal(n, big_h, big_w, co)
    return {
        ("forward", "fixed"): lambda: ops.reproseg_conv2d_backprop_input(
            f, x, input_hw=[big_h, big_w], **window),
        ("forward", "tf"): lambda: raw.Conv2DBackpropInput(
            input_sizes=[n, big_h, big_w, co], filter=f, out_backprop=x, **tf_window),
        ("input grad", "fixed"): lambda: ops.reproseg_conv2d(dy, f, **window),
        ("input grad", "tf"): lambda: raw.Conv2D(input=dy, filter=f, **tf_window),
        ("weight grad", "fixed"): lambda: ops.reproseg_conv2d_backprop_filter(
            dy, x, filter_hw=[k, k], **window),
        ("weight grad", "tf"): lambda: raw.Conv2DBackpropFilter(
            input=dy, filter_sizes=[k, k, co, ci], out_backprop=x, **tf_window),
    }
  x, f, dy = normal(n, h, w, ci), normal(k, k, ci, co), normal(n, oh, ow, co)
  return {
      ("forward", "fixed"): lambda: ops.reproseg_conv2d(x, f, **window),
      ("forward", "tf"): lambda: raw.Conv2D(input=x, filter=f, **tf_window),
      ("input grad", "fixed"): lambda: ops.reproseg_conv2d_backprop_input(
          f, dy, input_hw=[h, w], **window),
      ("input grad", "tf"): lambda: raw.Conv2DBackpropInput(
          input_sizes=[n, h, w, ci], filter=f, out_backprop=dy, **tf_window),
      ("weight grad", "fixed"): lambda: ops.reproseg_conv2d_backprop_filter(
          x, dy, filter_hw=[k, k], **window),
      ("weight grad", "tf"): lambda: raw.Conv2DBackpropFilter(
          input=x, filter_sizes=[k, k, ci, co], out_backprop=dy, **tf_window),
  }


def measure(shapes, rounds, repeats):
  """{(shape, pass, implementation): median seconds}, interleaved over rounds."""
  calls = {(shape,) + key: call for shape in shapes for key, call in _kernels(shape).items()}
  for call in calls.values():
    call()  # first call: allocation, kernel choice
  times = collections.defaultdict(list)
  for done in range(rounds):
    for key, call in calls.items():
      for _ in range(repeats):
        start = time.perf_counter()
        call()
        times[key].append(time.perf_counter() - start)
    print("round %d of %d" % (done + 1, rounds), file=sys.stderr, flush=True)
  return {key: statistics.median(values) for key, values in times.items()}


def main(argv):
  del argv
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # TensorFlow's own side: oneDNN
  from kernels import fixed_order  # pylint: disable=g-import-not-at-top
  from pipeline import determinism  # pylint: disable=g-import-not-at-top
  shapes = model_shapes(FLAGS.arch, FLAGS.image_size, FLAGS.batch_size)
  print("%s, %d visible cores, kernel path %s; %s U-Net at %d px, %d images per pass; median "
        "of %d rounds x %d calls" % (determinism.cpu_model(), len(os.sched_getaffinity(0)),
                                     fixed_order.current_path(), FLAGS.arch, FLAGS.image_size,
                                     FLAGS.batch_size, FLAGS.rounds, FLAGS.repeats))
  medians = measure(list(shapes), FLAGS.rounds, FLAGS.repeats)
  passes = ("forward", "input grad", "weight grad")
  print("| kind | input | out ch | k/s | count | " +
        " | ".join("%s ms (fixed/tf, ratio)" % p for p in passes) + " |")
  print("|" + " --- |" * (5 + len(passes)))
  totals = collections.Counter()
  for shape, count in sorted(shapes.items(), key=lambda item: -item[0].h * item[0].ci):
    cells = []
    for p in passes:
      fixed, stock = medians[(shape, p, "fixed")], medians[(shape, p, "tf")]
      totals[(p, "fixed")] += count * fixed
      totals[(p, "tf")] += count * stock
      cells.append("%.2f / %.2f (%.2fx)" % (1e3 * fixed, 1e3 * stock, fixed / stock))
    print("| %s | %dx%dx%d | %d | %d/%d %s | %d | %s |" % (
        shape.kind, shape.h, shape.w, shape.ci, shape.co, shape.k, shape.stride, shape.padding,
        count, " | ".join(cells)))
  print("| **model** | | | | | " + " | ".join(
      "%.1f / %.1f (%.2fx)" % (1e3 * totals[(p, "fixed")], 1e3 * totals[(p, "tf")],
                               totals[(p, "fixed")] / totals[(p, "tf")]) for p in passes) + " |")


if __name__ == "__main__":
  app.run(main)
