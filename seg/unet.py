"""The seed's U-Net: a MobileNetV2 or VGG19 encoder, five skip connections, and a decoder of
Conv2DTranspose blocks (512, 256, 128, 64 filters) with BatchNorm, ReLU and seeded Dropout.

Conv2DTranspose, not UpSampling2D: nearest-neighbour upsampling has no deterministic GPU
gradient, and op determinism would refuse it. Every initialiser and dropout layer gets its
own seed derived from the run's seed. Batch norm and dropout are seg.micro_batch_layers'
(ghost batch normalization; masks keyed by step and micro-batch); with exact=True (portable
determinism) the batch norms and transposed convolutions are seg.exact_layers' CPU-independent
versions.
"""

import os

import keras
from keras import layers
import numpy as np

from pipeline import determinism
from seg import exact_layers
from seg import micro_batch_layers

# Encoder layers whose outputs feed the decoder, from 1/2 to 1/32 of the input side.
SKIP_LAYERS = {
    "mobilenetv2": ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                    "block_13_expand_relu", "block_16_project"),
    "vgg19": ("block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"),
}
DECODER_FILTERS = (512, 256, 128, 64)

# ImageNet weights as keras.applications publishes them (file name, URL). Fetched into
# ~/.keras/models by keras.utils.get_file; reproseg keys the model on the file's digest.
_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_WEIGHTS = {
    "mobilenetv2": lambda size: (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_%d_no_top.h5" % size,
        _KERAS_WEIGHTS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_%d"
        "_no_top.h5" % size),
    "vgg19": lambda size: (
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_WEIGHTS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
MOBILENETV2_IMAGENET_SIZES = (96, 128, 160, 192, 224)


def _backbone(arch, image_size):
  # A named input: Keras' automatic name (input_layer_3) counts the layers built before.
  images = keras.Input((image_size, image_size, 3), name="backbone_image")
  if arch == "mobilenetv2":
    return keras.applications.MobileNetV2(input_tensor=images, include_top=False, weights=None)
  if arch == "vgg19":
    return keras.applications.VGG19(input_tensor=images, include_top=False, weights=None)
  raise ValueError("unknown backbone %r: use one of %s" % (arch, ", ".join(SKIP_LAYERS)))


def _preprocess(arch, images):
  """uint8-range RGB floats to what the backbone was trained on."""
  if arch == "mobilenetv2":
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(images)
  # VGG19: BGR, minus the ImageNet channel means (keras.applications' "caffe" mode). The
  # channel swap is a fixed permutation matrix (exact: one product by 1, the rest by 0), not a
  # Lambda, so that a saved model loads with stock Keras and safe_mode on.
  swap = np.eye(3, dtype=np.float32)[::-1]
  bgr = layers.Dense(3, use_bias=False, trainable=False, name="rgb_to_bgr",
                     kernel_initializer=keras.initializers.Constant(swap))(images)
  return layers.Rescaling(1.0, offset=[-103.939, -116.779, -123.68], name="preprocess")(bgr)


def _layer_types(exact, stock):
  """(BatchNormalization, Conv2DTranspose, Dropout) classes: Keras' own if stock, else those
  of a training step decomposed in micro-batches, CPU-independent ones if exact."""
  if stock:
    return layers.BatchNormalization, layers.Conv2DTranspose, layers.Dropout
  if exact:
    return (exact_layers.ExactBatchNormalization, exact_layers.ChunkedConv2DTranspose,
            micro_batch_layers.StatelessDropout)
  return (micro_batch_layers.GhostBatchNormalization, layers.Conv2DTranspose,
          micro_batch_layers.StatelessDropout)


def _up_block(x, filters, seed, name, dropout_rate, seeded_dropout, layer_types):
  batch_norm, conv_transpose, dropout = layer_types
  x = conv_transpose(
      filters, 3, strides=2, padding="same", use_bias=False, name=name + "_conv",
      kernel_initializer=keras.initializers.RandomNormal(
          0.0, 0.02, seed=determinism.derive_seed(seed, "init", name)))(x)
  x = batch_norm(name=name + "_bn")(x)
  if dropout_rate:
    # Unseeded means what it meant in 2019: a fresh seed each run.
    dropout_seed = (determinism.derive_seed(seed, "dropout", name) if seeded_dropout
                    else int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF)
    x = dropout(dropout_rate, seed=dropout_seed, name=name + "_dropout")(x)
  return layers.ReLU(name=name + "_relu")(x)


def build(arch, image_size, num_classes, seed, dropout_rate=0.5, dropout_blocks=1,
          backbone_weights=None, freeze_backbone=False, seeded_dropout=True,
          batchnorm_momentum=None, exact=True, stock=False):
  """The U-Net as a keras.Model from [batch, size, size, 3] floats in 0..255 to logits.

  dropout_blocks: decoder blocks with dropout, from the first (the seed's U-Net: all 4).
  backbone_weights: a weights file for the encoder (ImageNet or other), or None.
  seeded_dropout=False leaves dropout unseeded: the seed's Figure 9 experiment.
  batchnorm_momentum: if set, for every BatchNormalization layer. keras.applications' 0.999
  suits fine-tuning; a short run from scratch needs faster moving statistics, or validation
  (which uses them) sees an untrained network.
  exact: CPU-independent batch norms and transposed convolutions (seg.exact_layers), as
  portable determinism needs; False gives Keras' own transposed convolutions and batch-norm
  formula. Either way batch norm and dropout are seg.micro_batch_layers', as the micro-batch
  training step (seg.training) needs, unless stock: Keras' own layers only, for a model that
  loads anywhere and only infers (seg.export); its weights are the same list.
  """
  layer_types = _layer_types(exact, stock)
  backbone = _backbone(arch, image_size)
  if backbone_weights:
    backbone.load_weights(backbone_weights)
  if not stock:
    backbone = micro_batch_layers.with_batchnorm(backbone, layer_types[0])
  encoder = keras.Model(backbone.input,
                        [backbone.get_layer(n).output for n in SKIP_LAYERS[arch]],
                        name="encoder")
  encoder.trainable = not freeze_backbone

  images = keras.Input((image_size, image_size, 3), name="image")
  skips = encoder(_preprocess(arch, images))
  x = skips[-1]
  for i, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips[:-1]))):
    x = _up_block(x, filters, seed, "up%d" % i, dropout_rate if i < dropout_blocks else 0.0,
                  seeded_dropout, layer_types)
    x = layers.Concatenate(name="skip%d" % i)([x, skip])
  logits = layer_types[1](
      num_classes, 3, strides=2, padding="same", name="logits",
      kernel_initializer=keras.initializers.GlorotUniform(
          seed=determinism.derive_seed(seed, "init", "logits")))(x)
  model = keras.Model(images, logits, name="unet_" + arch)
  if batchnorm_momentum is not None:
    for layer in model._flatten_layers():  # pylint: disable=protected-access
      if isinstance(layer, layers.BatchNormalization):  # so are seg.micro_batch_layers' ones
        layer.momentum = batchnorm_momentum
  return model
