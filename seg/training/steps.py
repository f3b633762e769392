"""The training step: one Adam update on a batch split into micro-batches (TrainStep), and the
validation step. seg.training.train runs them epoch after epoch; seg.training.step_digests and the
benchmarks run them alone.
"""

import keras
import tensorflow as tf

from pipeline import errors
from seg.model import micro_batch_layers


def _confusion(masks, logits, num_classes):
  return tf.math.confusion_matrix(tf.reshape(masks, [-1]),
                                  tf.reshape(tf.argmax(logits, -1, output_type=tf.int32), [-1]),
                                  num_classes=num_classes, dtype=tf.int64)


def _pixel_losses(masks, logits):
  return keras.losses.sparse_categorical_crossentropy(masks, logits, from_logits=True)


def _ordered_sum(stacked):
  """The sum over the first axis of a [micro_batches, ...] tensor, added in micro-batch
  order: ((s[0] + s[1]) + s[2]) + ... Written out because tf.reduce_sum's order is its
  kernel's own, and this one must not depend on it."""
  total = stacked[0]
  for index in range(1, stacked.shape[0]):
    total = total + stacked[index]
  return total


class TrainStep:
  """One Adam update on a batch split into micro-batches (docs/determinism.md, "Several
  workers"): the bits follow the decomposition, not which process computes what.

  Each micro-batch has its own forward and backward pass (ghost batch normalization and
  dropout masks keyed by (step, micro-batch): seg.model.micro_batch_layers). The update uses the
  mean of the micro-batch losses, gradients and batch moments, each summed in micro-batch
  order (_ordered_sum). A worker of a cluster computes its own micro-batches, all-gathers
  every worker's (all_gather), and applies the same update as every other worker.

  Calling it with (float images [rows, h, w, 3], int masks [rows, h, w]), this process's
  rows of the batch, returns (mean loss, confusion matrix [classes, classes]) of the whole
  batch.
  """

  def __init__(self, model, optimizer, num_classes, micro_batches, part=None, all_gather=None):
    """part: (first, count) of the micro-batches this process computes, all by default;
    all_gather: a function of a list of [count, ...] tensors returning the list of
    [micro_batches, ...] tensors of every worker, in worker order (seg.training.distribute)."""
    self.model, self.optimizer, self.num_classes = model, optimizer, num_classes
    self.micro_batches = micro_batches
    self.first, self.count = part or (0, micro_batches)
    self.all_gather = all_gather
    self.variables = model.trainable_variables
    self.batchnorms = []  # the layers whose moments micro_step returns, set when it is traced
    self.micro_step = tf.function(self._micro_step)
    self.update = tf.function(self._update)

  def _micro_step(self, images, masks, index):
    """(values, confusion [classes, classes], logits [rows, h, w, classes]) of micro-batch
    index (an int64 scalar) of images [rows, h, w, 3] and masks [rows, h, w]: values are
    [mean pixel loss, the gradient of each trainable variable, then the mean [channels] and
    variance [channels] of each training batch norm], float32."""
    with micro_batch_layers.micro_batch(self.optimizer.iterations, index) as current:
      with tf.GradientTape() as tape:
        logits = self.model(images, training=True)
        loss = tf.reduce_mean(_pixel_losses(masks, logits))
    self.batchnorms = [layer for layer, _, _ in current.moments]
    moments = [value for _, mean, variance in current.moments for value in (mean, variance)]
    values = [loss] + tape.gradient(loss, self.variables) + moments
    return values, _confusion(masks, logits, self.num_classes), logits

  def _update(self, values, confusions):
    """Applies the means of values (_micro_step's, each stacked [micro_batches, ...]);
    returns (mean loss, confusion matrix summed over confusions [micro_batches, c, c], mean
    gradients)."""
    if len(values) != 1 + len(self.variables) + 2 * len(self.batchnorms):
      raise RuntimeError("%d values for %d variables and %d batch norms: trace micro_step "
                         "before update" % (len(values), len(self.variables),
                                            len(self.batchnorms)))
    means = [_ordered_sum(value) / self.micro_batches for value in values]
    loss, gradients = means[0], means[1:1 + len(self.variables)]
    moments = means[1 + len(self.variables):]
    self.optimizer.apply_gradients(zip(gradients, self.variables))
    for layer, mean, variance in zip(self.batchnorms, moments[0::2], moments[1::2]):
      layer.update_moving_statistics(mean, variance)
    return loss, _ordered_sum(confusions), gradients

  def compute(self, images, masks):
    """(values, confusions, logits) of every micro-batch, stacked in micro-batch order:
    this process's, all-gathered from every worker's if in a cluster (logits: this
    process's only)."""
    if images.shape[0] % self.count:
      raise errors.Error("%d rows do not split into %d equal micro-batches: give a batch size "
                         "that micro_batches divides" % (images.shape[0], self.count))
    size = images.shape[0] // self.count
    results = [self.micro_step(images[j * size:(j + 1) * size],
                               masks[j * size:(j + 1) * size],
                               tf.constant(self.first + j, tf.int64))
               for j in range(self.count)]
    values = [tf.stack(column) for column in zip(*(result[0] for result in results))]
    confusions = tf.stack([result[1] for result in results])
    if self.all_gather:
      values, confusions = self.all_gather(values), self.all_gather([confusions])[0]
    return values, confusions, tf.concat([result[2] for result in results], axis=0)

  def __call__(self, images, masks):
    values, confusions, _ = self.compute(images, masks)
    loss, confusion, _ = self.update(values, confusions)
    return loss, confusion


def make_steps(model, optimizer, num_classes, micro_batches, part=None, all_gather=None):
  """(train_step, validation_step): a TrainStep (see there for part and all_gather), and a
  tf.function of (float images, int masks) returning (summed pixel loss, confusion matrix)."""

  @tf.function
  def validation_step(images, masks):
    logits = model(images, training=False)
    return tf.reduce_sum(_pixel_losses(masks, logits)), _confusion(masks, logits, num_classes)

  return (TrainStep(model, optimizer, num_classes, micro_batches, part, all_gather),
          validation_step)
