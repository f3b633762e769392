"""No op in the portable train or validation step may depend on approximate hardware
instructions (seg.model.exact_layers.APPROXIMATE_OPS), or be a convolution or matrix product whose
order follows the CPU (exact_layers.machine_order_ops), as the graph runs: after grappler's
rewrites."""

import itertools

from absl.testing import absltest

from pipeline import determinism
from seg.configs import config
from seg.model import backbones

PORTABLE = determinism.resolve()  # the default
determinism.apply(PORTABLE)  # before TensorFlow loads

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from seg.model import exact_layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.model import micro_batch_layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.model import unet  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.training import steps  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZE = 32
BATCH = (tf.TensorSpec([4, SIZE, SIZE, 3], tf.float32), tf.TensorSpec([4, SIZE, SIZE], tf.int32))
VECTOR = tf.TensorSpec([None], tf.float32)


def step_audit(arch, settings, freeze_backbone=False, audit=exact_layers.approximate_ops):
  """{step name: what audit finds} for the U-Net's train step (a micro-batch's forward
  and backward pass, and the update) and validation step; audit: approximate_ops (a dict)
  or machine_order_ops (a list)."""
  model = unet.create(config.ModelConfig(model_arch=arch, freeze_backbone=freeze_backbone), SIZE,
                      3, seed=1, exact=settings.exact_layers,
                      fixed_order=settings.fixed_order_kernels)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  step, validation_step = steps.make_steps(model, optimizer, 3, micro_batches=2)
  values, confusions, _ = step.compute(tf.zeros(BATCH[0].shape),
                                       tf.zeros(BATCH[1].shape, tf.int32))
  micro_batch = (tf.TensorSpec([2, SIZE, SIZE, 3], tf.float32),
                 tf.TensorSpec([2, SIZE, SIZE], tf.int32), tf.TensorSpec([], tf.int64))
  found = {"train": [audit(step.micro_step, *micro_batch), audit(step.update, values, confusions)],
           "validation": [audit(validation_step, *BATCH)]}
  if audit is exact_layers.approximate_ops:
    return {name: {k: v for part in parts for k, v in part.items()}
            for name, parts in found.items()}
  return {name: sorted({op for part in parts for op in part}) for name, parts in found.items()}


class GraphAuditTest(absltest.TestCase):

  def test_the_portable_model_has_no_approximate_op(self):
    # Every encoder, trained and frozen (a frozen one runs its batch norms in inference mode).
    for arch, frozen in itertools.product(backbones.BACKBONES, (False, True)):
      with self.subTest(arch=arch, freeze_backbone=frozen):
        self.assertEqual(step_audit(arch, PORTABLE, freeze_backbone=frozen),
                         {"train": {}, "validation": {}})

  def test_the_portable_model_has_no_convolution_of_tensorflows(self):
    # No Conv2D*, DepthwiseConv2dNative*, MatMul or fused convolution after grappler: every
    # convolution and product runs kernels/fixed_order.py's ops.
    for arch, frozen in itertools.product(backbones.BACKBONES, (False, True)):
      with self.subTest(arch=arch, freeze_backbone=frozen):
        self.assertEqual(step_audit(arch, PORTABLE, freeze_backbone=frozen,
                                    audit=exact_layers.machine_order_ops),
                         {"train": [], "validation": []})

  def test_oneDNN_convolutions_are_caught(self):  # negative control of the test above
    found = step_audit("vgg19", determinism.resolve(portable=False, exact_layers=True),
                       audit=exact_layers.machine_order_ops)
    self.assertIn("Conv2D", found["validation"])
    self.assertIn("Conv2DBackpropFilter", found["train"])
    self.assertIn("MatMul", found["validation"])  # VGG19's BGR swap, a Dense layer

  # --- Negative controls: the audit sees approximate ops, also those grappler makes. ------
  def test_keras_batch_normalization_is_caught(self):
    found = step_audit("mobilenetv2", determinism.resolve(portable=False))
    self.assertIn("Rsqrt", found["train"])
    self.assertIn("Rsqrt", found["validation"])

  def test_an_inserted_rsqrt_is_caught(self):
    self.assertEqual(list(exact_layers.approximate_ops(tf.function(tf.math.rsqrt), VECTOR)),
                     ["Rsqrt"])

  def test_grappler_turns_one_over_sqrt_into_rsqrt_and_is_caught(self):
    one_over_sqrt = tf.function(lambda x: 1.0 / tf.sqrt(x))
    self.assertEqual(list(exact_layers.approximate_ops(one_over_sqrt, VECTOR)), ["Rsqrt"])
    exact = tf.function(exact_layers._inverse_sqrt)  # pylint: disable=protected-access
    self.assertEqual(exact_layers.approximate_ops(exact, VECTOR), {})

  def test_exact_layers_compute_what_keras_layers_compute(self):
    x = tf.random.stateless_normal([2, 5, 5, 600], seed=[1, 2])
    conv = dict(strides=2, padding="same", bias_initializer="random_normal")
    for keras_layer, exact_layer in (
        (keras.layers.BatchNormalization(), exact_layers.ExactBatchNormalization()),
        (keras.layers.Conv2DTranspose(8, 3, **conv),
         exact_layers.FixedOrderConv2DTranspose(8, 3, **conv)),
        (keras.layers.Conv2D(8, 3, **conv), exact_layers.FixedOrderConv2D(8, 3, **conv)),
        (keras.layers.Conv2D(8, 3, padding="valid"),
         exact_layers.FixedOrderConv2D(8, 3, padding="valid")),
        (keras.layers.DepthwiseConv2D(3, **conv),
         exact_layers.FixedOrderDepthwiseConv2D(3, **conv)),
        (keras.layers.Dense(8, bias_initializer="random_normal"),
         exact_layers.FixedOrderDense(8, bias_initializer="random_normal"))):
      keras_layer.build(x.shape)
      exact_layer.build(x.shape)
      exact_layer.set_weights(keras_layer.get_weights())
      for training in (False, True):
        with self.subTest(layer=type(exact_layer).__name__, training=training):
          kwargs = {"training": training} if "Batch" in type(exact_layer).__name__ else {}
          expected = keras_layer(x, **kwargs).numpy()
          with micro_batch_layers.micro_batch(step=0, index=0):  # where training runs it
            actual = exact_layer(x, **kwargs).numpy()
          self.assertLess(abs(expected - actual).max(), 1e-4)


if __name__ == "__main__":
  absltest.main()
