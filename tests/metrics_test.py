"""seg.model.metrics: segmentation metrics from a confusion matrix, NLL, ECE and the temperature
fit."""

from absl.testing import absltest
import numpy as np

from seg.model import metrics


def _sampled(temperature, n=4000, classes=3, seed=0):
  """Logits and labels drawn from softmax(logits / temperature): perfectly calibrated at it."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(0.0, 3.0, (n, 1, 1, classes)).astype(np.float32)
  scaled = logits.astype(np.float64) / temperature
  p = np.exp(scaled - scaled.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  labels = (rng.random((n, 1, 1, 1)) > np.cumsum(p, -1)).sum(-1).astype(np.uint8)
  return [(logits[i:i + 500], labels[i:i + 500]) for i in range(0, n, 500)]


class MetricsTest(absltest.TestCase):

  def test_segmentation_metrics_of_a_known_matrix(self):
    confusion = [[8, 2, 0], [1, 6, 0], [0, 0, 0]]  # border: absent from truth and prediction
    found = metrics.segmentation(confusion, ("pet", "background", "border"))
    self.assertEqual(found["iou"], {"pet": 8 / 11, "background": 6 / 9, "border": 1.0})
    self.assertEqual(found["dice"], {"pet": 16 / 19, "background": 12 / 15, "border": 1.0})
    self.assertEqual(found["pixel_accuracy"], 14 / 17)
    self.assertEqual(found["mean_iou"], (8 / 11 + 6 / 9 + 1.0) / 3)
    found = metrics.segmentation([[0, 0, 0], [0, 5, 1], [0, 0, 0]], ("a", "b", "c"))
    self.assertEqual(found["iou"]["c"], 0.0)  # predicted, never true: no credit

  def test_ece_of_a_known_case(self):
    # Two pixels: confident (p=0.9) and right, unsure (p=0.5) and wrong.
    logits = np.log(np.array([[[[0.9, 0.05, 0.05]]], [[[0.5, 0.25, 0.25]]]], np.float32))
    labels = np.array([[[0]], [[1]]], np.uint8)
    found = metrics.reliability([(logits, labels)], 1.0)
    self.assertEqual(sum(found["count"]), 2)
    self.assertAlmostEqual(found["ece"], 0.5 * abs(1 - 0.9) + 0.5 * abs(0 - 0.5), places=6)

  def test_the_fit_finds_the_temperature_that_generated_the_labels(self):
    for true_temperature in (0.5, 2.0):
      batches = _sampled(true_temperature)
      fitted = metrics.fit_temperature(batches)
      self.assertAlmostEqual(fitted, true_temperature, delta=0.25 * true_temperature)
      self.assertLess(metrics.nll(batches, fitted), metrics.nll(batches, 1.0))
      self.assertLess(metrics.reliability(batches, fitted)["ece"],
                      metrics.reliability(batches, 1.0)["ece"])

  def test_the_fit_is_repeatable_to_the_bit(self):
    batches = _sampled(1.5)
    self.assertEqual(metrics.fit_temperature(batches), metrics.fit_temperature(batches))


if __name__ == "__main__":
  absltest.main()
