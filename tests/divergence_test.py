"""A diverged training run is refused with one clear error, never stored: the train stage's
finiteness check (seg.training.train.check_finite), the one calibrate and evaluate share
(SplitOutputs.check_finite), and strict JSON in outputs. Through the binaries:
pipeline_e2e_test's test_diverged_training_is_one_line_and_stores_no_train_output."""

import math

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from pipeline import digest
from pipeline import errors
from seg.evaluation import calibrate
from seg.evaluation import calibrate_stage
from seg.evaluation import evaluate
from seg.evaluation import inference
from seg.training import train


class TrainingCheckTest(absltest.TestCase):

  def test_finite_values_pass(self):
    train.check_finite([("the loss", 0.5), ("variable a/kernel", np.float32([3e38, -3e38])),
                        ("variable b/bias", np.zeros((2, 3), np.float32))], 1, 1, 1e-3)

  def test_a_nan_loss_names_the_epoch_the_step_and_the_learning_rate(self):
    with self.assertRaisesRegex(
        errors.Error, r"^training diverged at epoch 2, step 3: the loss is not finite \(NaN or "
        r"infinite\), so nothing is stored\. The learning rate 0\.0018464290366223407 is too "
        r"high for this run: train again with a lower --learning_rate$"):
      train.check_finite([("the loss", math.nan)], 2, 3, 0.0018464290366223407)

  def test_the_first_non_finite_variable_is_named(self):
    named = [("variable a/kernel", np.ones((2, 2), np.float32)),
             ("variable b/bias", np.float32([1.0, -np.inf])),
             ("variable c/kernel", np.float32([np.nan]))]
    with self.assertRaisesRegex(errors.Error, r"^training diverged at epoch 1, step 4: "
                                r"variable b/bias is not finite .* learning rate 1e\+30 "):
      train.check_finite(named, 1, 4, 1e30)

  def test_train_epoch_stops_at_the_first_step_with_a_nan_loss(self):
    losses, steps_run = iter([0.7, math.nan, 0.5]), []

    def train_step(images, unused_masks):
      steps_run.append(images)
      return tf.constant(next(losses)), tf.zeros((3, 3), tf.int64)

    with self.assertRaisesRegex(errors.Error, r"^training diverged at epoch 4, step 2: the loss"):
      train.train_epoch(train_step, [(i, None) for i in range(3)], 3, 3, 4, 1e30)
    self.assertEqual(steps_run, [0, 1])


def _calibration_split(logits):
  """SplitOutputs of the calibration split with these float32 [n, size, size, 3] logits."""
  n, size = logits.shape[:2]
  labels = np.arange(n * size * size, dtype=np.uint8).reshape(n, size, size) % 3
  return inference.SplitOutputs("calibration", ["pet_%d" % i for i in range(n)],
                                np.zeros((n, size, size, 3), np.uint8), labels, logits,
                                ("pet", "background", "border"))


class SplitOutputsCheckTest(absltest.TestCase):

  def test_calibrate_and_evaluate_refuse_non_finite_logits(self):
    logits = np.zeros((2, 4, 4, 3), np.float32)
    logits[0, 0, 0, 1], logits[1, 2, 3, 0] = np.inf, np.nan
    outputs = _calibration_split(logits)
    search = calibrate_stage.SEARCH
    for stage, measure in (("calibrate", lambda: calibrate.calibrate(outputs, 8, search)),
                           ("evaluate", lambda: evaluate.measure(outputs, 1.0, 8))):
      with self.subTest(stage), self.assertRaisesRegex(
          errors.Error, r"^%s: 2 of the model's 96 logits on the calibration split are NaN or "
          r"infinite: the train output's weights come from a training run that diverged\. "
          r"Train again with a lower --learning_rate$" % stage):
        measure()

  def test_finite_logits_give_strict_json_metrics(self):  # the control
    logits = np.random.default_rng(0).normal(0.0, 3.0, (2, 4, 4, 3)).astype(np.float32)
    outputs = _calibration_split(logits)
    report = calibrate.calibrate(outputs, 8, calibrate_stage.SEARCH)
    result, _ = evaluate.measure(outputs, report["temperature"], 8)
    for value in (report, result):
      digest.readable_json(value)  # raises on NaN or Infinity


class StrictJsonTest(absltest.TestCase):

  def test_readable_json_refuses_nan_and_infinity(self):
    for bad in (math.nan, math.inf, -math.inf):
      with self.subTest(bad), self.assertRaisesRegex(ValueError, "not JSON compliant"):
        digest.readable_json({"history": [{"epoch": 1, "loss": bad}]})

  def test_finite_numbers_keep_their_bytes(self):
    self.assertEqual(digest.readable_json({"loss": 0.1, "b": [1, 2.5e-300, -3.4e38]}),
                     b'{\n "b": [\n  1,\n  2.5e-300,\n  -3.4e+38\n ],\n "loss": 0.1\n}\n')


if __name__ == "__main__":
  absltest.main()
