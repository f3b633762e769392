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
- Kernel gradients (per_image_weight_gradient): oneDNN's batched weight gradient, a sum over
  batch and pixels, is split by vector width, so AVX2 and AVX-512 give other bits. Every
  trained convolution here adds its images' kernel gradients in image order: ExactConv2D and
  ExactDepthwiseConv2D from exact products summed by pairwise_sum, ChunkedConv2DTranspose
  through oneDNN at batch 1 (docs/determinism.md, "The instruction set").

APPROXIMATE_OPS lists the TensorFlow op types known to use approximate hardware instructions,
WEIGHT_GRADIENT_OPS those of batched weight gradients; tests/graph_audit_test.py fails if the
train or eval step contains one after TensorFlow's graph optimizer (grappler) has run.
"""

import collections
import itertools

import keras
import tensorflow as tf
from keras import layers
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
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


def _as_run(function, input_specs, lower_loops=True):
  """A tf.function's GraphDef as it runs: after grappler, TensorFlow's graph optimizer, which
  prunes what the outputs do not need and can itself introduce ops. lower_loops=False keeps
  while loops as loops (grappler's function optimizer off)."""
  concrete = function.get_concrete_function(*input_specs)
  meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=concrete.graph.as_graph_def(),
                                                    graph=concrete.graph)
  # Grappler keeps what the fetch collection names and prunes the rest.
  meta_graph.collection_def["train_op"].node_list.value.extend(
      t.name.split(":")[0] for t in concrete.outputs)
  config = config_pb2.ConfigProto()
  if not lower_loops:
    config.graph_options.rewrite_options.function_optimization = (
        rewriter_config_pb2.RewriterConfig.OFF)
  return tf_optimizer.OptimizeGraph(config, meta_graph)


def approximate_ops(function, *input_specs):
  """{op type: reason} of APPROXIMATE_OPS in a tf.function's graph as it runs."""
  optimized = _as_run(function, input_specs)
  found = {node.op for node in optimized.node}
  for function_def in optimized.library.function:
    found.update(node.op for node in function_def.node_def)
  return {op: APPROXIMATE_OPS[op] for op in sorted(found & set(APPROXIMATE_OPS))}


# Op type of a batched convolution weight gradient: a reduction over batch and pixels that
# oneDNN blocks by vector width, so its bits follow the instruction set.
WEIGHT_GRADIENT_OPS = ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter")


def batched_weight_gradients(function, *input_specs):
  """{op type: count} of WEIGHT_GRADIENT_OPS in a tf.function's graph as it runs, outside
  while-loop bodies. per_image_weight_gradient's loop over images is the only loop in
  reproseg's steps: a weight gradient outside one is a batched one."""
  optimized = _as_run(function, input_specs, lower_loops=False)
  functions = {f.signature.name: f.node_def for f in optimized.library.function}
  loop_bodies = {node.attr["body"].func.name
                 for node in itertools.chain(optimized.node, *functions.values())
                 if node.op in ("While", "StatelessWhile")}
  outside = itertools.chain(optimized.node, *(nodes for name, nodes in functions.items()
                                              if name not in loop_bodies))
  return dict(collections.Counter(n.op for n in outside if n.op in WEIGHT_GRADIENT_OPS))


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


def pairwise_sum(x):
  """Sum over axis 0 of x [n, ...]: zero-padded to a power of two, then the second half added
  to the first, elementwise, until one row is left. One order of additions on every CPU;
  ours because a library reduction (Eigen's, oneDNN's) blocks by the machine's vector width,
  threads or cache sizes."""
  n = x.shape[0]
  size = 1 << (n - 1).bit_length()
  x = tf.pad(x, [[0, size - n]] + [[0, 0]] * (x.shape.rank - 1))
  while size > 1:
    size //= 2
    x = x[:size] + x[size:]
  return x[0]


def _tap_windows(image, layer):
  """[pixels, taps, channels]: for each output pixel of a Conv2D or DepthwiseConv2D layer
  (channels_last) and each kernel tap (row-major), the input pixel it multiplies. image:
  [1, height, width, channels]. Data movement only (ExtractImagePatches): exact."""
  rows, cols = layer.kernel_size
  patches = tf.image.extract_patches(
      image, sizes=[1, rows, cols, 1], strides=[1, *layer.strides, 1],
      rates=[1, *layer.dilation_rate, 1], padding=layer.padding.upper())
  return tf.reshape(patches, [-1, rows * cols, image.shape[-1]])


def _conv_image_kernel_gradient(layer):
  """Conv2D: kernel gradient [rows, cols, in, out] of one image, as products summed by
  pairwise_sum over output pixels."""

  def gradient(image, upstream, kernel):
    windows = _tap_windows(image, layer)  # [pixels, taps, in]
    upstream = tf.reshape(upstream, [-1, 1, 1, kernel.shape[-1]])  # [pixels, 1, 1, out]
    return tf.reshape(pairwise_sum(windows[..., None] * upstream), kernel.shape)

  return gradient


def _depthwise_image_kernel_gradient(layer):
  """DepthwiseConv2D: kernel gradient [rows, cols, channels, multiplier] of one image."""

  def gradient(image, upstream, kernel):
    windows = _tap_windows(image, layer)  # [pixels, taps, channels]
    upstream = tf.reshape(upstream, [-1, 1, *kernel.shape[2:]])  # [pixels, 1, ch, mult]
    return tf.reshape(pairwise_sum(windows[..., None] * upstream), kernel.shape)

  return gradient


def _taped_image_kernel_gradient(convolve):
  """The kernel gradient of one image through convolve's own gradient (for oneDNN, a weight
  gradient of batch 1)."""

  def gradient(image, upstream, kernel):
    with tf.GradientTape() as tape:
      tape.watch(kernel)
      outputs = convolve(image, kernel)
    return tape.gradient(outputs, kernel, output_gradients=upstream)

  return gradient


def per_image_weight_gradient(convolve, image_kernel_gradient):
  """convolve(inputs, kernel) -> outputs, with its kernel gradient summed image by image.

  inputs: [batch, ...]. The forward pass and the gradient with respect to inputs are
  convolve's own; those do not follow the instruction set (docs/determinism.md, "The
  instruction set"). A batched weight gradient does: oneDNN splits its reduction over batch and
  pixels by vector width. Here the kernel gradient is
  image_kernel_gradient(image [1, ...], upstream [1, ...], kernel) added in image order.
  """

  @tf.custom_gradient
  def apply(inputs, kernel):

    def gradient(upstream):
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = convolve(inputs, kernel)
      input_gradient = tape.gradient(outputs, inputs, output_gradients=upstream)

      def one_image(x, i):
        return tf.ensure_shape(x[i:i + 1], [1] + x.shape[1:])

      def add_image(i, total):
        return i + 1, total + image_kernel_gradient(one_image(inputs, i), one_image(upstream, i),
                                                    kernel)

      _, kernel_gradient = tf.while_loop(lambda i, _: i < tf.shape(inputs)[0], add_image,
                                         (tf.constant(0), tf.zeros_like(kernel)))
      return input_gradient, kernel_gradient

    return convolve(inputs, kernel), gradient

  return apply


def _finish(layer, outputs):
  """Bias and activation, as Keras' convolution layers apply them. The bias is a broadcast
  add: its gradient is a plain Sum, the same on every CPU tried."""
  if layer.use_bias:
    outputs = outputs + layer.bias
  if layer.activation is not None:
    outputs = layer.activation(outputs)
  return outputs


@keras.saving.register_keras_serializable(package="reproseg")
class ExactConv2D(layers.Conv2D):
  """Conv2D whose kernel gradient is exact products summed in a fixed order, image by image."""

  def call(self, inputs):
    convolve = per_image_weight_gradient(self.convolution_op, _conv_image_kernel_gradient(self))
    return _finish(self, convolve(inputs, tf.convert_to_tensor(self.kernel)))


@keras.saving.register_keras_serializable(package="reproseg")
class ExactDepthwiseConv2D(layers.DepthwiseConv2D):
  """DepthwiseConv2D whose kernel gradient is exact products summed in a fixed order."""

  def _depthwise(self, inputs, kernel):
    return keras.ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                    dilation_rate=self.dilation_rate,
                                    data_format=self.data_format)

  def call(self, inputs):
    convolve = per_image_weight_gradient(self._depthwise, _depthwise_image_kernel_gradient(self))
    return _finish(self, convolve(inputs, tf.convert_to_tensor(self.kernel)))


@keras.saving.register_keras_serializable(package="reproseg")
class ChunkedConv2DTranspose(layers.Conv2DTranspose):
  """Conv2DTranspose as a fixed-order sum of transposed convolutions over channel chunks,
  its kernel gradient summed image by image."""

  def _chunked(self, inputs, kernel):
    outputs = None
    for start in range(0, inputs.shape[-1], CHUNK_CHANNELS):
      stop = min(start + CHUNK_CHANNELS, inputs.shape[-1])
      part = keras.ops.conv_transpose(
          inputs[..., start:stop], kernel[..., start:stop], strides=list(self.strides),
          padding=self.padding, output_padding=self.output_padding,
          dilation_rate=self.dilation_rate, data_format=self.data_format)
      outputs = part if outputs is None else outputs + part
    return outputs

  def call(self, inputs):
    convolve = per_image_weight_gradient(self._chunked,
                                         _taped_image_kernel_gradient(self._chunked))
    return _finish(self, convolve(inputs, tf.convert_to_tensor(self.kernel)))
