"""Segmentation and calibration metrics, exact on every CPU.

Counts are int64. Probabilities come from TensorFlow's CPU kernels (Eigen, compiled for one
instruction set, unlike NumPy's transcendental functions, which dispatch on the CPU), and
every float64 total is a sum of per-batch values in a fixed order. Ratios of counts are single
IEEE divisions. So the same logits give the same metrics, bit for bit, on any x86-64 CPU.
"""

import math

import numpy as np
import tensorflow as tf

from seg.model import calibration_error


# --- From a confusion matrix [true, predicted] ---------------------------------------------------
def _per_class(numerator, denominator):
  """numerator / denominator per class, 1.0 where the class is absent from both sides."""
  return [float(n) / float(d) if d else 1.0 for n, d in zip(numerator, denominator)]


def iou(confusion):
  """(per-class IoU, their mean) from a [true, predicted] confusion matrix."""
  confusion = np.asarray(confusion, np.int64)
  tp = np.diag(confusion)
  per_class = _per_class(tp, confusion.sum(0) + confusion.sum(1) - tp)
  return per_class, sum(per_class) / len(per_class)


def segmentation(confusion, class_names):
  """Mean IoU, IoU and Dice (F1) per class, and pixel accuracy, as a JSON-able dict."""
  confusion = np.asarray(confusion, np.int64)
  tp = np.diag(confusion)
  per_class_iou, mean_iou = iou(confusion)
  dice = _per_class(2 * tp, confusion.sum(0) + confusion.sum(1))
  return {"mean_iou": mean_iou, "iou": dict(zip(class_names, per_class_iou)),
          "dice": dict(zip(class_names, dice)), "mean_dice": sum(dice) / len(dice),
          "pixel_accuracy": float(tp.sum()) / float(max(1, confusion.sum())),
          "pixels": int(confusion.sum())}


# --- Calibration: per batch in TensorFlow, totals in a fixed order ----------------------------------
@tf.function(reduce_retracing=True)
def _batch_nll(logits, labels, temperature):
  """Summed negative log-likelihood of a batch's pixels at a temperature, in float64."""
  scaled = tf.cast(logits, tf.float64) / temperature
  return tf.reduce_sum(tf.reduce_logsumexp(scaled, -1) -
                       tf.gather(scaled, tf.cast(labels, tf.int32), batch_dims=3))


@tf.function(reduce_retracing=True)
def _batch_bins(logits, labels, temperature):
  """Per-bin (pixel count, summed top-class probability, correct count) of a batch."""
  probabilities = tf.nn.softmax(tf.cast(logits, tf.float64) / temperature, -1)
  confidence = tf.reshape(tf.reduce_max(probabilities, -1), [-1])
  correct = tf.reshape(tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32),
                                        tf.cast(labels, tf.int32)), tf.int64), [-1])
  count = calibration_error.BINS
  bins = tf.minimum(tf.cast(confidence * count, tf.int32), count - 1)
  return (tf.math.unsorted_segment_sum(tf.ones_like(correct), bins, count),
          tf.math.unsorted_segment_sum(confidence, bins, count),
          tf.math.unsorted_segment_sum(correct, bins, count))


def nll(batches, temperature):
  """Mean per-pixel negative log-likelihood over [(logits, labels)] at a temperature."""
  total, pixels = 0.0, 0
  for logits, labels in batches:
    total += float(_batch_nll(logits, labels, tf.constant(temperature, tf.float64)))
    pixels += int(np.prod(labels.shape))
  return total / pixels


def reliability(batches, temperature):
  """{"count", "confidence", "accuracy": per-bin lists, "ece"} over [(logits, labels)]: 15
  equal-width bins of the top-class probability, per pixel."""
  count = np.zeros(calibration_error.BINS, np.int64)
  confidence = np.zeros(calibration_error.BINS, np.float64)
  correct = np.zeros(calibration_error.BINS, np.int64)
  for logits, labels in batches:
    c, p, k = _batch_bins(logits, labels, tf.constant(temperature, tf.float64))
    count += c.numpy()
    confidence += p.numpy()  # element-wise: the batch order fixes every sum
    correct += k.numpy()
  mean_confidence = [float(p) / float(c) if c else 0.0 for p, c in zip(confidence, count)]
  accuracy = [float(k) / float(c) if c else 0.0 for k, c in zip(correct, count)]
  pixels = int(count.sum())
  ece = sum(float(c) / pixels * abs(a - p)
            for c, a, p in zip(count, accuracy, mean_confidence))
  return {"count": count.tolist(), "confidence": mean_confidence, "accuracy": accuracy,
          "ece": ece}


def fit_temperature(batches, low=0.05, high=20.0, iterations=48):
  """The temperature T in [low, high] that minimises the NLL of softmax(logits / T): a golden-
  section search on log T, a fixed number of steps, no randomness. The NLL of temperature
  scaling is convex in 1/T, so unimodal in log T and the search finds its minimum."""
  ratio = (math.sqrt(5.0) - 1.0) / 2.0
  a, b = math.log(low), math.log(high)
  c, d = b - ratio * (b - a), a + ratio * (b - a)
  fc, fd = nll(batches, math.exp(c)), nll(batches, math.exp(d))
  for _ in range(iterations):
    if fc <= fd:
      b, d, fd = d, c, fc
      c = b - ratio * (b - a)
      fc = nll(batches, math.exp(c))
    else:
      a, c, fc = c, d, fd
      d = a + ratio * (b - a)
      fd = nll(batches, math.exp(d))
  return math.exp((a + b) / 2.0)
