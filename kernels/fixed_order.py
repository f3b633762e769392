"""Convolutions whose summation order reproseg fixes, not the CPU: TensorFlow ops from
kernels/ops.cc, with their gradients.

Every output element is one chain of fused multiply-adds in a fixed order (below), and lanes
and threads run over independent outputs only, so the bits are the same on every x86-64 CPU
with FMA, for every vector width (AVX-512, AVX2, the scalar reference) and every intra-op
pool size. Why C++: no library here fixes that order across CPUs (docs/determinism.md).

Orders (each chain starts from +0; taps in the padding are not terms):
- conv2d: y[n,oh,ow,co] over (kh, kw, ci);
- its input gradient (and conv2d_transpose's forward): dx[n,ih,iw,ci] over (kh, kw, co);
- its weight gradient: dw[kh,kw,ci,co] over (n, oh, ow);
- depthwise_conv2d: over (kh, kw); its input gradient over (kh, kw); its weight gradient over
  (n, oh, ow).

Tensors are float32, NHWC; filters as TensorFlow's: [KH, KW, CI, CO] for conv2d,
[KH, KW, CO, CI] for conv2d_transpose (CO: its output channels), [KH, KW, C, 1] for
depthwise_conv2d. padding is "SAME" or "VALID" with TensorFlow's meaning.
"""

import ctypes
import os

import tensorflow as tf

from pipeline import errors

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixed_order_ops.so")
# Kernel paths for force_path(), as ops.cc numbers them.
PATHS = {"auto": 0, "scalar": 1, "avx2": 2, "avx512": 3}
# A path forced on a whole process and its children (tests: a pipeline on each path); no
# stage key holds it, since every path gives the same bits.
PATH_VARIABLE = "REPROSEG_FIXED_ORDER_PATH"


def _library():
  """LIBRARY beside this file (Bazel's runfiles), else the workspace's bazel-bin copy if it is
  newer than every source here (a run from the source tree, as `store check` makes).

  Raises errors.Error naming the fix if neither is there, or the copy is older.
  """
  if os.path.exists(LIBRARY):
    return LIBRARY
  folder = os.path.dirname(LIBRARY)
  built = os.path.join(os.path.dirname(folder), "bazel-bin", "kernels",
                       os.path.basename(LIBRARY))
  sources = [os.path.join(folder, n) for n in os.listdir(folder)
             if n.endswith((".cc", ".h", ".bzl"))]
  if not os.path.exists(built):
    raise errors.Error("the fixed-order kernels' library is not built: run reproseg through "
                       "`./dev bazel run` or `./dev bazel test`, or build it with "
                       "`./dev bazel build //kernels:fixed_order_ops.so`")
  if os.path.getmtime(built) < max(map(os.path.getmtime, sources)):
    raise errors.Error("%s is older than the kernels' sources: rebuild it with "
                       "`./dev bazel build //kernels:fixed_order_ops.so`" % built)
  return built


_LOADED = _library()
_ops = tf.load_op_library(_LOADED)
_native = ctypes.CDLL(_LOADED)  # the same loaded library: its path switch is the ops' one
_native.ReprosegFixedOrderSetPath.argtypes = [ctypes.c_int]
_native.ReprosegFixedOrderPath.restype = ctypes.c_char_p


def force_path(name):
  """Runs every op of this process on one kernel path: "avx512", "avx2", "scalar", or "auto"
  (the widest this CPU has). Raises ValueError for a name not in PATHS or a path this CPU
  cannot run."""
  if name not in PATHS:
    raise ValueError("kernel path %r is not one of %s" % (name, ", ".join(PATHS)))
  if _native.ReprosegFixedOrderSetPath(PATHS[name]) != 0:
    raise ValueError("this CPU cannot run the %s kernel path" % name)


if os.environ.get(PATH_VARIABLE):
  try:
    force_path(os.environ[PATH_VARIABLE])
  except ValueError as e:
    raise ValueError("%s=%s: %s" % (PATH_VARIABLE, os.environ[PATH_VARIABLE], e)) from e


def current_path():
  """The kernel path the ops run ("avx512", "avx2", "scalar"), or "" on a CPU without FMA."""
  return _native.ReprosegFixedOrderPath().decode()


def window(input_hw, kernel_hw, strides, padding):
  """TensorFlow's padding as explicit pads: ([top, bottom, left, right], output [h, w]).

  SAME: output side ceil(in / stride), padding max((out - 1) * stride + k - in, 0) split with
  the extra pixel after (tensorflow/core/framework/kernel_shape_util.cc); VALID: no padding.
  Raises ValueError for another padding or a filter larger than a VALID input.
  """
  pads, out = [], []
  for size, k, stride in zip(input_hw, kernel_hw, strides):
    if padding == "SAME":
      side = -(-size // stride)
      total = max((side - 1) * stride + k - size, 0)
      pads += [total // 2, total - total // 2]
    elif padding == "VALID":
      if k > size:
        raise ValueError("a %d-pixel filter does not fit a %d-pixel input with VALID padding"
                         % (k, size))
      side = (size - k) // stride + 1
      pads += [0, 0]
    else:
      raise ValueError("padding %r is not SAME or VALID" % (padding,))
    out.append(side)
  return pads, out


def _static_hw(tensor, what):
  hw = tensor.shape[1:3]
  if None in hw.as_list():
    raise ValueError("the fixed-order kernels need the %s's height and width when the graph is "
                     "built; got shape %s" % (what, tensor.shape))
  return [int(d) for d in hw]


def _pair(value):
  return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value]


def conv2d(x, w, strides, padding):
  """tf.nn.conv2d(x, w, strides, padding) in the fixed order: [N,H,W,CI] x [KH,KW,CI,CO] ->
  [N,OH,OW,CO]. strides: int or (sh, sw)."""
  strides = _pair(strides)
  pads, _ = window(_static_hw(x, "input"), w.shape[:2], strides, padding)
  return _ops.reproseg_conv2d(x, w, strides=strides, pads=pads)


def conv2d_transpose(x, w, output_hw, strides, padding):
  """tf.nn.conv2d_transpose(x, w, [N, *output_hw, CO], strides, padding) in the fixed order:
  [N,H,W,CI] x [KH,KW,CO,CI] -> [N, output_h, output_w, CO]. The input gradient of a conv2d
  from output_hw to x's size, as TensorFlow defines it."""
  strides = _pair(strides)
  pads, out = window(list(output_hw), w.shape[:2], strides, padding)
  if out != _static_hw(x, "input"):
    raise ValueError("a transposed convolution to %s with strides %s and %s padding takes "
                     "%s inputs, not %s" % (list(output_hw), strides, padding, out,
                                            _static_hw(x, "input")))
  return _ops.reproseg_conv2d_backprop_input(w, x, input_hw=list(output_hw), strides=strides,
                                             pads=pads)


def depthwise_conv2d(x, w, strides, padding):
  """tf.nn.depthwise_conv2d with channel multiplier 1 in the fixed order: [N,H,W,C] x
  [KH,KW,C,1] -> [N,OH,OW,C]. Raises ValueError for another multiplier."""
  if w.shape[3] != 1:
    raise ValueError("depthwise filter %s has channel multiplier %s; the fixed-order kernels "
                     "take 1" % (w.shape, w.shape[3]))
  strides = _pair(strides)
  pads, _ = window(_static_hw(x, "input"), w.shape[:2], strides, padding)
  return _ops.reproseg_depthwise_conv2d(x, w, strides=strides, pads=pads)


def _window_attrs(op):
  return {"strides": op.get_attr("strides"), "pads": op.get_attr("pads")}


@tf.RegisterGradient("ReprosegConv2D")
def _conv2d_grad(op, dy):
  x, w = op.inputs
  attrs = _window_attrs(op)
  return (_ops.reproseg_conv2d_backprop_input(w, dy, input_hw=_static_hw(x, "input"), **attrs),
          _ops.reproseg_conv2d_backprop_filter(x, dy, filter_hw=list(w.shape[:2]), **attrs))


@tf.RegisterGradient("ReprosegConv2DBackpropInput")
def _conv2d_backprop_input_grad(op, grad):
  w, dy = op.inputs
  attrs = _window_attrs(op)
  return (_ops.reproseg_conv2d_backprop_filter(grad, dy, filter_hw=list(w.shape[:2]), **attrs),
          _ops.reproseg_conv2d(grad, w, **attrs))


@tf.RegisterGradient("ReprosegDepthwiseConv2D")
def _depthwise_grad(op, dy):
  x, w = op.inputs
  attrs = _window_attrs(op)
  return (_ops.reproseg_depthwise_conv2d_backprop_input(w, dy, input_hw=_static_hw(x, "input"),
                                                        **attrs),
          _ops.reproseg_depthwise_conv2d_backprop_filter(x, dy, filter_hw=list(w.shape[:2]),
                                                         **attrs))
