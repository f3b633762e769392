"""Layers whose training-mode results follow the micro-batch decomposition of a step
(seg.training.steps), never the process that computes a micro-batch (docs/determinism.md,
"Several workers").

- StatelessDropout: the mask of micro-batch k at step s is a stateless draw keyed by
  (layer seed, s, k). Keras' seeded Dropout draws from a generator whose state advances with
  every call, so a process that computed other micro-batches before gives another mask.
- GhostBatchNormalization: in training, each micro-batch is normalized with its own mean and
  variance ("ghost batch normalization", Hoffer et al. 2017, arXiv:1705.08741), and those
  moments are handed to the step, which updates the moving statistics once from all
  micro-batches in micro-batch order. Keras' BatchNormalization updates them in place at each
  call, from whatever slice the process holds.

Both take (step, micro-batch) and the moments list from micro_batch(), which the step enters
around the model's forward pass.
"""

import contextlib
import dataclasses

import keras
import tensorflow as tf
from keras import layers


@dataclasses.dataclass
class MicroBatch:
  """The micro-batch being computed: step and index (int64 scalar tensors), and the batch
  moments [(layer, mean, variance)] its batch-norm layers computed, in call order."""
  step: object
  index: object
  moments: list


_current = []  # the MicroBatch of the forward pass being traced, if any


@contextlib.contextmanager
def micro_batch(step, index):
  """The forward pass of micro-batch `index` of training step `step` (both int64 scalars);
  yields its MicroBatch, whose moments the batch-norm layers fill."""
  _current.append(MicroBatch(tf.cast(step, tf.int64), tf.cast(index, tf.int64), []))
  try:
    yield _current[-1]
  finally:
    _current.pop()


def _current_micro_batch(layer):
  if not _current:
    raise RuntimeError(
        "%s ran in training mode outside a training step: call the model within seg.model."
        "micro_batch_layers.micro_batch(step, index), as seg.training.steps does" % layer.name)
  return _current[-1]


@keras.saving.register_keras_serializable(package="reproseg")
class StatelessDropout(layers.Layer):
  """Dropout whose mask is a function of (seed, step, micro-batch, position in it).

  Inputs: any shape; each element is kept with probability 1 - rate and scaled by
  1 / (1 - rate) in training, passed unchanged otherwise. seed: a non-negative int.
  """

  def __init__(self, rate, seed, **kwargs):
    super().__init__(**kwargs)
    self.rate, self.seed = float(rate), int(seed)

  def call(self, inputs, training=False):
    if not training or self.rate == 0:
      return inputs
    current = _current_micro_batch(self)
    # Philox named: the default algorithm is chosen per device type.
    key = tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int64),
                                                 current.step, alg="philox"),
        current.index, alg="philox")
    keep = tf.random.stateless_uniform(tf.shape(inputs), key, alg="philox") >= self.rate
    return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return dict(super().get_config(), rate=self.rate, seed=self.seed)


@keras.saving.register_keras_serializable(package="reproseg")
class GhostBatchNormalization(layers.BatchNormalization):
  """BatchNormalization that, in training, normalizes with the micro-batch's own moments and
  leaves the moving statistics to the step (update_moving_statistics). Inference, and a
  frozen layer, use the moving statistics as Keras' layer does."""

  def call(self, inputs, training=None, mask=None):
    if self.renorm or mask is not None:
      raise NotImplementedError("%s supports neither renorm nor masks" % type(self).__name__)
    inputs = tf.cast(inputs, tf.float32)
    if training and self.trainable:
      mean, variance = self._moments(inputs, None)
      _current_micro_batch(self).moments.append((self, mean, variance))
    else:
      mean, variance = self.moving_mean, self.moving_variance
    return tf.cast(self.normalize(inputs, mean, variance), self.compute_dtype)

  def normalize(self, inputs, mean, variance):
    """Keras' formula (tf.nn.batch_normalization)."""
    return tf.nn.batch_normalization(inputs, mean, variance, self.beta if self.center else None,
                                     self.gamma if self.scale else None, self.epsilon)

  def update_moving_statistics(self, mean, variance):
    """One exponential moving-average step towards the step's mean and variance ([channels])."""
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(
        self.moving_variance * self.momentum + variance * (1.0 - self.momentum))


def with_layer_classes(model, classes):
  """A copy of a functional model (a keras.applications backbone) in which each layer whose
  class is a key of classes (exactly that class) is of the class it maps to (e.g.
  BatchNormalization to a GhostBatchNormalization), with the same config and weights."""

  def clone(layer):
    return classes.get(type(layer), type(layer)).from_config(layer.get_config())

  copy = keras.models.clone_model(model, clone_function=clone)
  copy.set_weights(model.get_weights())
  return copy
