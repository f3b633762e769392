"""A micro-batch's loss, gradients and batch moments are a function of the weights, its examples and
its (step, index) alone: not of which micro-batches the process computed before it
(seg.training.steps.TrainStep, seg.model.micro_batch_layers). That is what lets any worker compute
any micro-batch; tests/multi_worker_test.py checks the whole train stage end to end."""

import numpy as np
from absl.testing import absltest

from pipeline import determinism
from seg.configs import config

determinism.apply(determinism.resolve())  # portable, before TensorFlow loads

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from seg.model import micro_batch_layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.model import unet  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.training import steps  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZE, BATCH, MICRO_BATCHES = 32, 8, 4


def batch():
  rng = np.random.default_rng(0)
  return (tf.constant(rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)), tf.float32),
          tf.constant(rng.integers(0, 3, (BATCH, SIZE, SIZE)), tf.int32))


def values_of(model, part):
  """[micro-batch][value] as bytes: the losses, gradients and moments of the micro-batches of
  part=(first, count), computed by a fresh TrainStep that computed nothing before."""
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  step = steps.TrainStep(model, optimizer, 3, MICRO_BATCHES, part=part)
  size = BATCH // MICRO_BATCHES
  images, masks = (tensor[part[0] * size:(part[0] + part[1]) * size] for tensor in batch())
  values, _, _ = step.compute(images, masks)
  return [[value[row].numpy().tobytes() for value in values] for row in range(part[1])]


class MicroBatchTest(absltest.TestCase):

  def assert_parts_equal_the_whole(self, model, equal):
    whole = values_of(model, (0, MICRO_BATCHES))
    for part in ((2, 2), (3, 1), (1, 3)):
      with self.subTest(part=part):
        alone = values_of(model, part)
        same = alone == whole[part[0]:part[0] + part[1]]
        self.assertEqual(same, equal)

  def test_a_micro_batch_computed_alone_equals_the_same_one_computed_after_others(self):
    model = unet.create(config.ModelConfig(dropout_blocks=4, batchnorm_momentum=0.9), SIZE, 3,
                        seed=1)
    self.assert_parts_equal_the_whole(model, equal=True)

  def test_keras_stateful_dropout_breaks_it(self):
    # Negative control: Keras' seeded Dropout draws from a generator that every call advances.
    model = unet.create(config.ModelConfig(dropout_blocks=4), SIZE, 3, seed=1, stock=True)
    self.assert_parts_equal_the_whole(model, equal=False)

  def test_dropout_masks_follow_seed_step_and_micro_batch(self):
    layer = micro_batch_layers.StatelessDropout(0.5, seed=7)
    ones = tf.ones([2, 8, 8, 4])

    def mask(step, index, layer=layer):
      with micro_batch_layers.micro_batch(step, index):
        return layer(ones, training=True).numpy().tobytes()

    self.assertEqual(mask(3, 1), mask(3, 1))
    others = {mask(4, 1), mask(3, 2), mask(3, 1, micro_batch_layers.StatelessDropout(0.5, 8))}
    self.assertNotIn(mask(3, 1), others)
    self.assertLen(others, 3)
    self.assertEqual(layer(ones, training=False).numpy().tobytes(), ones.numpy().tobytes())

  def test_training_outside_a_step_is_refused(self):
    layer = micro_batch_layers.StatelessDropout(0.5, seed=7, name="up0_dropout")
    with self.assertRaisesRegex(RuntimeError, "up0_dropout ran in training mode outside a "
                                "training step"):
      layer(tf.ones([1, 2]), training=True)

  def test_the_mean_of_micro_batches_is_summed_in_order(self):
    # 2^24 + 1 + 1: added left to right, each 1 is lost to rounding; any other order keeps them.
    stacked = tf.constant([2.0**24, 1.0, 1.0], tf.float32)
    ordered_sum = steps._ordered_sum  # pylint: disable=protected-access
    self.assertEqual(float(tf.function(ordered_sum)(stacked)), 2.0**24)  # as the step runs it
    self.assertEqual(float(stacked[1] + stacked[2] + stacked[0]), 2.0**24 + 2)


if __name__ == "__main__":
  absltest.main()
