"""Layers whose bits do not depend on the CPU model: the one place for every reformulation
that portable determinism needs (docs/determinism.md, "What changes the bits").

- ExactBatchNormalization: Keras' BatchNormalization computes 1/sqrt(variance + epsilon)
  with tf.math.rsqrt, which Eigen builds on the approximate rsqrtps instruction; Intel, AMD
  and an emulator each return other bits for it. Here the same formula uses a true square
  root and a true division; the layer is otherwise seg.micro_batch_layers' ghost batch
  normalization.
- ChunkedConv2DTranspose: oneDNN's transposed convolution sums over input channels in an
  order that follows the cache sizes the CPU reports. Here the input channels are split into
  fixed chunks of CHUNK_CHANNELS, each chunk is one convolution small enough that no CPU's
  blocking splits it, and the partial results are summed in a fixed order.

APPROXIMATE_OPS lists the TensorFlow op types known to use approximate hardware instructions;
tests/graph_audit_test.py fails if the train or eval step contains one after TensorFlow's
graph optimizer (grappler) has rewritten it.
"""

import keras
import tensorflow as tf
from keras import layers
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

from seg import micro_batch_layers

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

# Input channels per transposed convolution. 256 holds the bits on every CPU tried, at the
# real shapes (128 px, batch 60); 512 did not (docs/determinism.md).
CHUNK_CHANNELS = 256


def approximate_ops(function, *input_specs):
  """{op type: reason} of APPROXIMATE_OPS in a tf.function's graph as it runs: after
  grappler, TensorFlow's graph optimizer, which can itself introduce them."""
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
  return {op: APPROXIMATE_OPS[op] for op in sorted(found & set(APPROXIMATE_OPS))}


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


@keras.saving.register_keras_serializable(package="reproseg")
class ChunkedConv2DTranspose(layers.Conv2DTranspose):
  """Conv2DTranspose as a fixed-order sum of transposed convolutions over channel chunks."""

  def call(self, inputs):
    channels = inputs.shape[-1]
    outputs = None
    for start in range(0, channels, CHUNK_CHANNELS):
      stop = min(start + CHUNK_CHANNELS, channels)
      part = keras.ops.conv_transpose(
          inputs[..., start:stop], self.kernel[..., start:stop], strides=list(self.strides),
          padding=self.padding, output_padding=self.output_padding,
          dilation_rate=self.dilation_rate, data_format=self.data_format)
      outputs = part if outputs is None else outputs + part
    if self.use_bias:
      outputs = outputs + self.bias  # a broadcast add: its gradient is a plain Sum
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

