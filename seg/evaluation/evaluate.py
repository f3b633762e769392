"""The evaluate stage's build (seg.evaluation.evaluate_stage runs it through the store): the
trained, calibrated model measured on a split (test by default).

Output: metrics.json (mean IoU, IoU and Dice/F1 per class, pixel accuracy, NLL and ECE with
and without calibration), confusion.json and confusion.png, and gallery.png (the split's first
pets by pet id: photo, true mask, predicted mask, errors). The same metrics and pictures go to
TensorBoard in the run folder.
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from data_tools import split_reader
from pipeline import files
from pipeline import stage
from seg.drawing import canvas
from seg.evaluation import figures
from seg.evaluation import inference
from seg.model import factory
from seg.model import metrics
from seg.model import temperature


def measure(outputs, scale, batch_size):
  """(metrics.json's content, int64 confusion matrix [true, predicted]) for
  inference.SplitOutputs and a calibration temperature, scale.

  Raises errors.Error if a logit is not finite (the train output diverged).
  """
  outputs.check_finite("evaluate")
  matrix = inference.confusion(outputs.masks, outputs.predictions(), len(outputs.class_names))
  batches = outputs.batches(batch_size)
  result = metrics.segmentation(matrix, outputs.class_names)
  result.update({
      "examples": len(outputs.pet_ids), "temperature": scale,
      "nll": {"uncalibrated": metrics.nll(batches, 1.0),
              "calibrated": metrics.nll(batches, scale)},
      "ece": {"uncalibrated": metrics.reliability(batches, 1.0)["ece"],
              "calibrated": metrics.reliability(batches, scale)["ece"]}})
  return result, matrix


def pictures_of(outputs, matrix, split, result, gallery_size):
  """{file name: PIL image} of the gallery and the confusion matrix."""
  return {
      "gallery.png": figures.gallery(
          outputs, gallery_size, outputs.class_names,
          "%s split: the first %d pets by id; mean IoU %.4f over all %d"
          % (split, min(gallery_size, len(outputs.pet_ids)), result["mean_iou"],
             result["examples"])),
      "confusion.png": figures.confusion_matrix(
          matrix, outputs.class_names, "%s split: pixel accuracy %.4f" %
          (split, result["pixel_accuracy"]))}


def log_to_tensorboard(run_dir, train_run_dir, split, result, images):
  """Writes the metrics and pictures to the evaluate run's TensorBoard logs, and the metrics
  also to the train run's, under evaluate-<split>/ (best effort): TensorBoard's HParams
  dashboard then shows them in the train run's row, as it takes a run's metrics from the
  folders below it. Evaluations of one train run on one split share that folder."""
  scalars = (("mean_iou", result["mean_iou"]), ("pixel_accuracy", result["pixel_accuracy"]),
             ("ece_calibrated", result["ece"]["calibrated"]),
             ("ece_uncalibrated", result["ece"]["uncalibrated"]))
  writer = tf.summary.create_file_writer(os.path.join(run_dir, stage.LOGS_FOLDER))
  with writer.as_default(step=0):
    for name, value in scalars:
      tf.summary.scalar("%s/%s" % (split, name), value)
    for name, image in images.items():
      tf.summary.image("%s/%s" % (split, name[:-len(".png")]),
                       np.asarray(image)[None])
  writer.close()
  train_logs = os.path.join(train_run_dir, stage.LOGS_FOLDER, "evaluate-" + split)
  try:  # a view for people, not a result: the train run's folder may be another user's
    writer = tf.summary.create_file_writer(train_logs)
    with writer.as_default(step=0):
      for name, value in scalars:
        tf.summary.scalar(name, value)
    writer.close()
  except (OSError, tf.errors.OpError) as e:
    logging.warning("evaluate: its metrics are not in the train run's logs %s (%s)",
                    train_logs, e)


def build(out_dir, run_dir, train_run_dir, splits, train, calibrated, model_config, batch_size,
          settings, split, gallery_size):
  """Writes the evaluate stage's output to out_dir, for partition, train and calibrate Results:
  the model of a seg.configs.config.ModelConfig run over a split in batches of batch_size
  examples; logs to TensorBoard in run_dir and train_run_dir (log_to_tensorboard); returns the
  manifest's details."""
  info = split_reader.split_info(splits.path)
  model = factory.load(train.path, model_config, info, settings)
  outputs = inference.run_on_split(model, splits.path, split, batch_size)
  scale = temperature.load(calibrated.path)
  result, matrix = measure(outputs, scale, batch_size)
  files.write_json(os.path.join(out_dir, "metrics.json"), result)
  files.write_json(os.path.join(out_dir, "confusion.json"),
                   {"classes": list(outputs.class_names), "rows": "true",
                    "columns": "predicted", "pixels": matrix.tolist()})
  images = pictures_of(outputs, matrix, split, result, gallery_size)
  for name, image in images.items():
    canvas.save(image, os.path.join(out_dir, name))
  log_to_tensorboard(run_dir, train_run_dir, split, result, images)
  logging.info("evaluate: %s split, mean IoU %.4f, pixel accuracy %.4f", split,
               result["mean_iou"], result["pixel_accuracy"])
  return dict(result, headline="%s mean IoU %.4f, pixel accuracy %.4f" % (
      split, result["mean_iou"], result["pixel_accuracy"]), metrics={
          split + "_mean_iou": result["mean_iou"],
          split + "_pixel_accuracy": result["pixel_accuracy"],
          split + "_ece": result["ece"]["calibrated"]})
