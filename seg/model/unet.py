"""The seed's U-Net: an encoder of seg.model.backbones, five skip connections, and a decoder of
Conv2DTranspose blocks (512, 256, 128, 64 filters) with BatchNorm, ReLU and seeded Dropout.

Conv2DTranspose, not UpSampling2D: nearest-neighbour upsampling has no deterministic GPU
gradient, and op determinism would refuse it. Every initialiser and dropout layer gets its
own seed derived from the run's seed. Batch norm and dropout are seg.model.micro_batch_layers'
(ghost batch normalization; masks keyed by step and micro-batch); with exact=True the batch
norms are seg.model.exact_layers' CPU-independent ones, and with fixed_order=True every convolution
and Dense layer, the encoder's too, is seg.model.exact_layers' fixed-order one (portable determinism
takes both).
"""

import os

import keras
from keras import layers
import numpy as np

from pipeline import seeds
from seg.model import backbones
from seg.model import exact_layers
from seg.model import micro_batch_layers

DECODER_FILTERS = (512, 256, 128, 64)


def _encoder(backbone, image_size):
  """The keras.applications model of a seg.model.backbones.Backbone, with random weights."""
  # A named input: Keras' automatic name (input_layer_3) counts the layers built before.
  images = keras.Input((image_size, image_size, 3), name="backbone_image")
  application = getattr(keras.applications, backbone.application)
  return application(input_tensor=images, include_top=False, weights=None)


def _preprocess(mode, images, dense=layers.Dense):
  """uint8-range RGB floats to what the encoder was trained on: keras.applications'
  preprocessing of the same mode name (seg.model.backbones.PREPROCESSING), as layers; dense: the
  Dense class of the channel swap."""
  if mode == "tf":  # [-1, 1]
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(images)
  # "caffe": BGR, minus the ImageNet channel means. The channel swap is a fixed permutation matrix
  # (exact: one product by 1, the rest by 0), not a Lambda, so that a saved model loads with
  # stock Keras and safe_mode on.
  swap = np.eye(3, dtype=np.float32)[::-1]
  bgr = dense(3, use_bias=False, trainable=False, name="rgb_to_bgr",
                     kernel_initializer=keras.initializers.Constant(swap))(images)
  return layers.Rescaling(1.0, offset=[-103.939, -116.779, -123.68], name="preprocess")(bgr)


def _layer_classes(exact, fixed_order, stock):
  """{Keras class: the class built in its place}: none if stock; else batch norm and dropout
  of a training step decomposed in micro-batches, CPU-independent batch norm if exact, and
  fixed-order convolutions and Dense layers if fixed_order."""
  if stock:
    return {}
  classes = {layers.Dropout: micro_batch_layers.StatelessDropout,
             layers.BatchNormalization: (exact_layers.ExactBatchNormalization if exact
                                         else micro_batch_layers.GhostBatchNormalization)}
  if fixed_order:
    # Loaded now: a library not built is refused in one line here, where inside a layer's
    # call Keras would rewrap the error in its own text.
    exact_layers.fixed_order_kernels()
    classes.update(exact_layers.FIXED_ORDER_LAYERS)
  return classes


def _up_block(x, filters, seed, name, dropout_rate, seeded_dropout, classes):
  batch_norm = classes.get(layers.BatchNormalization, layers.BatchNormalization)
  dropout = classes.get(layers.Dropout, layers.Dropout)
  x = classes.get(layers.Conv2DTranspose, layers.Conv2DTranspose)(
      filters, 3, strides=2, padding="same", use_bias=False, name=name + "_conv",
      kernel_initializer=keras.initializers.RandomNormal(
          0.0, 0.02, seed=seeds.derive_seed(seed, "init", name)))(x)
  x = batch_norm(name=name + "_bn")(x)
  if dropout_rate:
    # Unseeded means what it meant in 2019: a fresh seed each run.
    dropout_seed = (seeds.derive_seed(seed, "dropout", name) if seeded_dropout
                    else int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF)
    x = dropout(dropout_rate, seed=dropout_seed, name=name + "_dropout")(x)
  return layers.ReLU(name=name + "_relu")(x)


def create(model_config, image_size, num_classes, seed, backbone_weights_file=None, exact=True,
           fixed_order=False, stock=False):
  """The U-Net of a seg.configs.config.ModelConfig as a keras.Model from [batch, image_size,
  image_size, 3] floats in 0..255 to logits [batch, image_size, image_size, num_classes].

  model_config: the encoder (model_arch: a seg.model.backbones.BACKBONES key), whether it is frozen,
  dropout (rate, blocks from the first: the seed's U-Net had all 4; seeded_dropout=False draws
  a fresh seed each run, the seed's Figure 9 experiment) and batchnorm_momentum: if set, for
  every BatchNormalization layer (keras.applications' 0.999 suits fine-tuning; a short run from
  scratch needs faster moving statistics, or validation, which uses them, sees an untrained
  network). Its backbone_weights only names the encoder's weights (seg.model.factory finds the
  file).
  backbone_weights_file: a weights file for the encoder (ImageNet or other), or None.
  seed: the run's seed, from which every initialiser and dropout seed is derived.
  exact: CPU-independent batch norms (seg.model.exact_layers), as portable determinism needs; False
  gives Keras' batch-norm formula. fixed_order (with exact): every convolution and Dense layer
  computed by kernels/fixed_order.py (seg.model.exact_layers.FIXED_ORDER_LAYERS). Either way
  batch norm and dropout are seg.model.micro_batch_layers', as the micro-batch training step
  (seg.training.steps) needs, unless stock: Keras' own layers only, for a model that loads
  anywhere and only infers (seg.serve.export); its weights are the same list.
  """
  backbone = backbones.BACKBONES[model_config.model_arch]
  classes = _layer_classes(exact, fixed_order, stock)
  encoder = _encoder(backbone, image_size)
  if backbone_weights_file:
    encoder.load_weights(backbone_weights_file)
  if not stock:  # the encoder has no Dropout layer; its others are replaced
    encoder = micro_batch_layers.with_layer_classes(
        encoder, {k: v for k, v in classes.items() if k is not layers.Dropout})
  encoder = keras.Model(encoder.input,
                        [encoder.get_layer(n).output for n in backbone.skip_layers],
                        name="encoder")
  encoder.trainable = not model_config.freeze_backbone

  images = keras.Input((image_size, image_size, 3), name="image")
  skips = encoder(_preprocess(backbone.preprocessing, images,
                              classes.get(layers.Dense, layers.Dense)))
  x = skips[-1]
  for i, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips[:-1]))):
    dropout_rate = model_config.dropout_rate if i < model_config.dropout_blocks else 0.0
    x = _up_block(x, filters, seed, "up%d" % i, dropout_rate, model_config.seeded_dropout,
                  classes)
    x = layers.Concatenate(name="skip%d" % i)([x, skip])
  logits = classes.get(layers.Conv2DTranspose, layers.Conv2DTranspose)(
      num_classes, 3, strides=2, padding="same", name="logits",
      kernel_initializer=keras.initializers.GlorotUniform(
          seed=seeds.derive_seed(seed, "init", "logits")))(x)
  model = keras.Model(images, logits, name="unet_" + model_config.model_arch)
  if model_config.batchnorm_momentum is not None:
    for layer in model._flatten_layers():  # pylint: disable=protected-access
      if isinstance(layer, layers.BatchNormalization):  # so are seg.model.micro_batch_layers' ones
        layer.momentum = model_config.batchnorm_momentum
  return model
