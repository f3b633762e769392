"""No op in the train or eval step may depend on approximate hardware instructions
(seg.exact_layers.APPROXIMATE_OPS), and no convolution weight gradient may be batched
(seg.exact_layers.WEIGHT_GRADIENT_OPS), as the graph runs: after grappler's rewrites. The
exact layers compute what Keras' compute, gradients included."""

from absl.testing import absltest
from absl.testing import parameterized

from pipeline import determinism

determinism.apply(determinism.resolve())  # portable, before TensorFlow loads

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from seg import exact_layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg import micro_batch_layers  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg import training  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg import unet  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZE = 32
BATCH = (tf.TensorSpec([4, SIZE, SIZE, 3], tf.float32), tf.TensorSpec([4, SIZE, SIZE], tf.int32))
VECTOR = tf.TensorSpec([None], tf.float32)


MICRO_BATCH = (tf.TensorSpec([2, SIZE, SIZE, 3], tf.float32),
               tf.TensorSpec([2, SIZE, SIZE], tf.int32), tf.TensorSpec([], tf.int64))


def steps(arch, exact, freeze_backbone=False):
  """The U-Net's train step and eval step."""
  model = unet.build(arch, SIZE, 3, seed=1, freeze_backbone=freeze_backbone, exact=exact)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  return training.make_steps(model, optimizer, 3, micro_batches=2)


def step_audit(arch, exact, freeze_backbone=False):
  """{step name: approximate ops found} for the U-Net's train step (a micro-batch's forward
  and backward pass, and the update) and eval step."""
  train_step, eval_step = steps(arch, exact, freeze_backbone)
  values, confusions, _ = train_step.compute(tf.zeros(BATCH[0].shape),
                                             tf.zeros(BATCH[1].shape, tf.int32))
  return {"train": dict(exact_layers.approximate_ops(train_step.micro_step, *MICRO_BATCH),
                        **exact_layers.approximate_ops(train_step.update, values, confusions)),
          "eval": exact_layers.approximate_ops(eval_step, *BATCH)}


def batched_weight_gradients(arch, exact, freeze_backbone=False):
  train_step, _ = steps(arch, exact, freeze_backbone)
  return exact_layers.batched_weight_gradients(train_step.micro_step, *MICRO_BATCH)


class GraphAuditTest(parameterized.TestCase):

  def test_the_portable_model_has_no_approximate_op(self):
    # VGG19 has no batch norm: one setting covers its decoder.
    for arch, frozen in (("mobilenetv2", False), ("mobilenetv2", True), ("vgg19", False)):
      with self.subTest(arch=arch, freeze_backbone=frozen):
        self.assertEqual(step_audit(arch, exact=True, freeze_backbone=frozen),
                         {"train": {}, "eval": {}})

  def test_the_portable_model_has_no_batched_weight_gradient(self):
    for arch, frozen in (("mobilenetv2", False), ("mobilenetv2", True), ("vgg19", True)):
      with self.subTest(arch=arch, freeze_backbone=frozen):
        self.assertEqual(batched_weight_gradients(arch, exact=True, freeze_backbone=frozen), {})

  def test_only_a_trainable_vgg19_encoder_keeps_batched_weight_gradients(self):
    """Its 16 convolutions are Keras' own: portable mode caps oneDNN at AVX2 for it
    (seg.backbones; tests/instruction_set_test.py)."""
    self.assertEqual(batched_weight_gradients("vgg19", exact=True),
                     {"Conv2DBackpropFilter": 16})

  # --- Negative controls: the audit sees approximate ops, also those grappler makes. ------
  def test_keras_layers_have_batched_weight_gradients(self):
    self.assertEqual(batched_weight_gradients("mobilenetv2", exact=False),
                     {"Conv2DBackpropFilter": 39, "DepthwiseConv2dNativeBackpropFilter": 17})

  def test_keras_batch_normalization_is_caught(self):
    found = step_audit("mobilenetv2", exact=False)
    self.assertIn("Rsqrt", found["train"])
    self.assertIn("Rsqrt", found["eval"])

  def test_an_inserted_rsqrt_is_caught(self):
    self.assertEqual(list(exact_layers.approximate_ops(tf.function(tf.math.rsqrt), VECTOR)),
                     ["Rsqrt"])

  def test_grappler_turns_one_over_sqrt_into_rsqrt_and_is_caught(self):
    one_over_sqrt = tf.function(lambda x: 1.0 / tf.sqrt(x))
    self.assertEqual(list(exact_layers.approximate_ops(one_over_sqrt, VECTOR)), ["Rsqrt"])
    exact = tf.function(exact_layers._inverse_sqrt)  # pylint: disable=protected-access
    self.assertEqual(exact_layers.approximate_ops(exact, VECTOR), {})

  def test_exact_layers_compute_what_keras_layers_compute(self):
    x = tf.random.stateless_normal([2, 4, 4, 600], seed=[1, 2])
    for keras_layer, exact_layer in (
        (keras.layers.BatchNormalization(), exact_layers.ExactBatchNormalization()),
        (keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same"),
         exact_layers.ChunkedConv2DTranspose(8, 3, strides=2, padding="same"))):
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

  @parameterized.parameters(
      ("Conv2D", "ExactConv2D", dict(filters=4, kernel_size=1)),
      ("Conv2D", "ExactConv2D", dict(filters=4, kernel_size=3, strides=2, use_bias=False)),
      ("Conv2D", "ExactConv2D", dict(filters=4, kernel_size=3, strides=2, padding="same")),
      ("Conv2D", "ExactConv2D", dict(filters=4, kernel_size=3, dilation_rate=2,
                                     padding="same")),
      ("DepthwiseConv2D", "ExactDepthwiseConv2D", dict(kernel_size=3, padding="same")),
      ("DepthwiseConv2D", "ExactDepthwiseConv2D", dict(kernel_size=3, strides=2)),
      ("DepthwiseConv2D", "ExactDepthwiseConv2D", dict(kernel_size=3, strides=2,
                                                       padding="same", depth_multiplier=2)),
      ("Conv2DTranspose", "ChunkedConv2DTranspose", dict(filters=4, kernel_size=3, strides=2,
                                                         padding="same")),
  )
  def test_exact_convolutions_have_keras_outputs_and_gradients(self, keras_name, exact_name,
                                                               config):
    """The same outputs and input gradients (the same ops), and kernel gradients equal up to
    the order of additions."""
    x = tf.random.stateless_normal([3, 9, 9, 5], seed=[1, 2])
    results = []
    for layer in (getattr(keras.layers, keras_name)(**config),
                  getattr(exact_layers, exact_name)(**config)):
      layer.build(x.shape)
      if results:
        layer.set_weights(weights)
      weights = layer.get_weights()

      @tf.function
      def outputs_and_gradients(x, layer=layer):
        with tf.GradientTape() as tape:
          tape.watch(x)
          y = layer(x)
          loss = tf.reduce_sum(y * tf.sin(y))
        return [y] + tape.gradient(loss, [x] + layer.trainable_variables)

      results.append([r.numpy() for r in outputs_and_gradients(x)])
    (y, dx, *d_weights), (exact_y, exact_dx, *exact_d_weights) = results
    np.testing.assert_array_equal(exact_y, y)
    np.testing.assert_array_equal(exact_dx, dx)
    for exact, expected in zip(exact_d_weights, d_weights):
      np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=1e-5)

  def test_pairwise_sum_folds_halves_in_a_fixed_order(self):
    x = tf.constant([1e8, 1.0, -1e8, 1.0, 3.0], tf.float32)
    # Padded to 8, halves folded: [1e8 + 3, 1 + 0, -1e8 + 0, 1 + 0] -> [0, 2] -> 2 (3 is lost
    # in 1e8 + 3); left to right gives 4, and the exact sum is 5.
    self.assertEqual(float(exact_layers.pairwise_sum(x)), 2.0)
    self.assertEqual(float((((x[0] + x[1]) + x[2]) + x[3]) + x[4]), 4.0)


if __name__ == "__main__":
  absltest.main()
