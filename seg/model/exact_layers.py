"""Layers whose bits do not depend on the CPU model: the one place for every reformulation
that portable determinism needs (docs/determinism.md, "The rule").

- ExactBatchNormalization: Keras' BatchNormalization computes 1/sqrt(variance + epsilon)
  with tf.math.rsqrt, which Eigen builds on the approximate rsqrtps instruction; Intel, AMD
  and an emulator each return other bits for it. Here the same formula uses a true square
  root and a true division; the layer is otherwise seg.model.micro_batch_layers' ghost batch
  normalization.
- FixedOrderConv2D, FixedOrderDepthwiseConv2D, FixedOrderConv2DTranspose, FixedOrderDense
  (--fixed_order_kernels, on in portable mode): Keras' layers with every convolution and
  product computed by kernels/fixed_order.py, whose summation order the code fixes for every
  CPU and pool size; biases are broadcast adds, whose gradient is a plain Sum (TensorFlow's
  BiasAddGrad follows the pool size). FIXED_ORDER_LAYERS maps each Keras class to its
  fixed-order class.

APPROXIMATE_OPS lists the TensorFlow op types known to use approximate hardware instructions;
tests/graph_audit_test.py fails if the train or eval step contains one after TensorFlow's
graph optimizer (grappler) has rewritten it, and, with the fixed-order kernels, if it
contains a convolution or matrix product of TensorFlow's own (machine_order_ops).
"""

import keras
import tensorflow as tf
from keras import layers
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

from seg.model import micro_batch_layers

# Op type: why its bits follow the CPU model.
APPROXIMATE_OPS = {
    "Rsqrt": "Eigen's rsqrt: rsqrtps estimate plus a Newton step",
    "RsqrtGrad": "uses the rsqrt estimate's output",
    "Reciprocal": "Eigen's reciprocal: rcpps estimate plus a Newton step",
    "ReciprocalGrad": "uses the rcpps estimate's output",
    "Inv": "an alias of Reciprocal",
    "InvGrad": "an alias of ReciprocalGrad",
    "FusedBatchNorm": "computes rsqrt internally",
    "FusedBatchNormV2": "computes rsqrt internally",
    "FusedBatchNormV3": "computes rsqrt internally",
    "FusedBatchNormGrad": "computes rsqrt internally",
    "FusedBatchNormGradV2": "computes rsqrt internally",
    "FusedBatchNormGradV3": "computes rsqrt internally",
    "_FusedBatchNormEx": "computes rsqrt internally",
}

def graph_ops(function, *input_specs):
  """The op types of a tf.function's graph as it runs: after grappler, TensorFlow's graph
  optimizer, which rewrites and fuses ops."""
  concrete = function.get_concrete_function(*input_specs)
  meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=concrete.graph.as_graph_def(),
                                                    graph=concrete.graph)
  # Grappler keeps what the fetch collection names and prunes the rest.
  meta_graph.collection_def["train_op"].node_list.value.extend(
      t.name.split(":")[0] for t in concrete.outputs)
  optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
  found = {node.op for node in optimized.node}
  for function_def in optimized.library.function:
    found.update(node.op for node in function_def.node_def)
  return found


def approximate_ops(function, *input_specs):
  """{op type: reason} of APPROXIMATE_OPS in graph_ops(function)."""
  found = graph_ops(function, *input_specs)
  return {op: APPROXIMATE_OPS[op] for op in sorted(found & set(APPROXIMATE_OPS))}


def machine_order_ops(function, *input_specs):
  """The convolutions and matrix products of graph_ops(function) that are TensorFlow's own
  (Conv2D*, DepthwiseConv2dNative*, MatMul, oneDNN's fused _FusedConv2D, ...): their order
  follows the CPU. The fixed-order kernels' ops (Reproseg*) are not listed."""
  return sorted(op for op in graph_ops(function, *input_specs)
                if ("Conv" in op or "MatMul" in op) and not op.startswith("Reproseg"))


def _inverse_sqrt(x):
  # Not 1 / tf.sqrt(x): grappler rewrites Div(a, Sqrt(b)) into a * Rsqrt(b). It leaves
  # DivNoNan alone, and x > 0 here, so the no-NaN case never applies.
  return tf.math.divide_no_nan(tf.ones_like(x), tf.sqrt(x))


@keras.saving.register_keras_serializable(package="reproseg")
class ExactBatchNormalization(micro_batch_layers.GhostBatchNormalization):
  """Ghost batch normalization computed as x * scale / sqrt(var + eps) + offset, no rsqrt."""

  def normalize(self, inputs, mean, variance):
    # The same arithmetic as tf.nn.batch_normalization, but for the inverse square root.
    inverse = _inverse_sqrt(variance + self.epsilon)
    if self.scale:
      inverse = inverse * self.gamma
    offset = -mean * inverse
    if self.center:
      offset = offset + self.beta
    return inputs * inverse + offset


def fixed_order_kernels():
  """kernels.fixed_order, imported on first use, not with this module: it loads a library that
  Bazel builds (pipeline/code.py still counts it, and its C++, in the keys). Raises errors.Error
  naming the fix if that library is not built, or is older than the kernels' sources."""
  from kernels import fixed_order  # pylint: disable=g-import-not-at-top
  return fixed_order


def _check_plain_window(layer):
  """Raises ValueError for what the fixed-order kernels do not compute."""
  if (tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last" or
      layer.compute_dtype != "float32"):
    raise ValueError("%s: the fixed-order kernels take float32, channels_last and no dilation; "
                     "got %s, %s, dilation %s" % (layer.name, layer.compute_dtype,
                                                   layer.data_format, layer.dilation_rate))


def _bias_and_activation(layer, outputs):
  if layer.use_bias:
    outputs = outputs + layer.bias  # a broadcast add: its gradient is a plain Sum
  return outputs if layer.activation is None else layer.activation(outputs)


@keras.saving.register_keras_serializable(package="reproseg")
class FixedOrderConv2D(layers.Conv2D):
  """Conv2D through fixed_order.conv2d (groups 1)."""

  def call(self, inputs):
    _check_plain_window(self)
    if self.groups != 1:
      raise ValueError("%s: the fixed-order kernels take groups=1, not %d" % (self.name,
                                                                              self.groups))
    outputs = fixed_order_kernels().conv2d(inputs, self.kernel, self.strides, self.padding.upper())
    return _bias_and_activation(self, outputs)


@keras.saving.register_keras_serializable(package="reproseg")
class FixedOrderDepthwiseConv2D(layers.DepthwiseConv2D):
  """DepthwiseConv2D through fixed_order.depthwise_conv2d (depth multiplier 1)."""

  def call(self, inputs):
    _check_plain_window(self)
    if self.depth_multiplier != 1:
      raise ValueError("%s: the fixed-order kernels take depth_multiplier=1, not %d"
                       % (self.name, self.depth_multiplier))
    outputs = fixed_order_kernels().depthwise_conv2d(inputs, self.kernel, self.strides,
                                                     self.padding.upper())
    return _bias_and_activation(self, outputs)


@keras.saving.register_keras_serializable(package="reproseg")
class FixedOrderConv2DTranspose(layers.Conv2DTranspose):
  """Conv2DTranspose through fixed_order.conv2d_transpose (no output_padding)."""

  def call(self, inputs):
    _check_plain_window(self)
    if self.output_padding is not None:
      raise ValueError("%s: the fixed-order kernels take no output_padding" % self.name)
    output_hw = self.compute_output_shape(inputs.shape)[1:3]
    outputs = fixed_order_kernels().conv2d_transpose(inputs, self.kernel, output_hw,
                                                     self.strides, self.padding.upper())
    return _bias_and_activation(self, outputs)


@keras.saving.register_keras_serializable(package="reproseg")
class FixedOrderDense(layers.Dense):
  """Dense on image features [N, H, W, C] as a fixed-order 1x1 convolution."""

  def call(self, inputs):
    if len(inputs.shape) != 4 or self.compute_dtype != "float32":
      raise ValueError("%s: the fixed-order Dense takes float32 [batch, height, width, "
                       "channels], got %s %s" % (self.name, self.compute_dtype, inputs.shape))
    kernel = keras.ops.reshape(self.kernel, (1, 1) + tuple(self.kernel.shape))
    outputs = fixed_order_kernels().conv2d(inputs, kernel, 1, "VALID")
    return _bias_and_activation(self, outputs)


# Keras' class -> its fixed-order class (seg.model.unet builds the U-Net from these).
FIXED_ORDER_LAYERS = {
    layers.Conv2D: FixedOrderConv2D,
    layers.DepthwiseConv2D: FixedOrderDepthwiseConv2D,
    layers.Conv2DTranspose: FixedOrderConv2DTranspose,
    layers.Dense: FixedOrderDense,
}
