"""Training and validation of the U-Net, the train stage's build (seg.training.train_stage runs it
through the store). train_and_validate builds the model and its update step, runs train_epoch
and validate per epoch with Checkpoints, and ends in write_outputs. With a
seg.training.distribute.Distribution it trains as one of several workers.

Every epoch is a pure function of (seed, epoch) and the state after the previous epoch, and
that state (model and optimizer variables, the step count that keys dropout included) is
checkpointed after each epoch in the run folder; a run stopped after epoch k and started again
resumes from there and ends with the same bits as one that was never stopped.
"""

import contextlib
import json
import os
import re
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from data_tools import split_reader
from pipeline import arrays
from pipeline import errors
from pipeline import files
from pipeline import stage
from pipeline import stopping
from seg.model import factory
from seg.model import metrics
from seg.training import batches
from seg.training import steps

_CHECKPOINT = re.compile(r"^epoch-(\d{3})\.arrays$")


class StoppedAfterEpochs(errors.Error):
  """Raised by --stop_after_epochs: the run stopped early on purpose, checkpoint kept."""


def train_and_validate(config, splits_dir, out_dir, run_dir, settings,
                       backbone_weights_file=None, stop_after_epochs=0, distribution=None):
  """Trains on the training split, validates each epoch, and writes to out_dir:
  weights.arrays (all model variables), fingerprint.json, history.json, metrics.json.

  run_dir keeps checkpoints/ (resumable state) and the TensorBoard logs
  (stage.LOGS_FOLDER); neither is a result.
  settings: the pipeline.determinism.Settings in force (its seed, and exact_layers).
  backbone_weights_file: the encoder's weights file (seg.model.backbones.weights_file), or
  None.
  distribution: a seg.training.distribute.Distribution to train as one of several workers (each
  computes its share of every batch's micro-batches, and resumes from the chief's checkpoints
  in run_dir), or None.
  Returns the final metrics for the manifest.
  """
  info = split_reader.split_info(splits_dir)
  steps_per_epoch = _steps_per_epoch(config, info)
  part = distribution.part(config.micro_batches) if distribution else None
  size = config.batch_size // config.micro_batches
  rows = (part[0] * size, (part[0] + part[1]) * size) if part else None
  model = factory.for_splits(config.model, info, settings, backbone_weights_file)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(model.trainable_variables)
  train_step, validation_step = steps.make_steps(
      model, optimizer, info["num_classes"], config.micro_batches, part,
      distribution.all_gather if distribution else None)
  # Every worker holds the same variables after each step, so the chief's checkpoints serve
  # them all: each resumes from the newest, and only the chief writes.
  writes = distribution is None or distribution.cluster.is_chief
  checkpoints = Checkpoints(os.path.join(run_dir, "checkpoints"), model, optimizer)
  start = checkpoints.newest(config.epochs)
  if distribution:
    start = distribution.common_epoch(start)
  history = checkpoints.restore(start)
  summaries = (tf.summary.create_file_writer(os.path.join(run_dir, stage.LOGS_FOLDER))
               if writes else tf.summary.create_noop_writer())
  with summaries.as_default():  # TensorBoard's HParams dashboard: this run's configuration
    # One row per run: the run folder's name (the stage key), not the values' hash, which
    # runs of one configuration with other seeds or data would share.
    hparams_api.hparams(hyperparameters(config, settings.seed),
                        trial_id=os.path.basename(os.path.normpath(run_dir)))
  validation = None
  for epoch in range(start, config.epochs):
    print("Epoch %d/%d" % (epoch + 1, config.epochs), file=sys.stderr, flush=True)
    epoch_batches = batches.training_batches(splits_dir, settings.seed, epoch, config.batch_size,
                                             steps_per_epoch, augment=config.augment, rows=rows)
    loss, iou = train_epoch(train_step, epoch_batches, steps_per_epoch, info["num_classes"],
                            epoch + 1, config.learning_rate)
    # Before the checkpoint below: a diverged state is never kept.
    check_finite([("variable " + v.path, v.numpy()) for v in model.variables], epoch + 1,
                 steps_per_epoch, config.learning_rate)
    validation = validate(validation_step, splits_dir, config.eval_batch_size, info)
    check_finite([("the validation loss", validation["loss"])], epoch + 1,
                 steps_per_epoch, config.learning_rate)
    history.append({"epoch": epoch + 1, "loss": loss, "iou": iou,
                    "val_loss": validation["loss"], "val_iou": validation["iou"]})
    print("  validation loss %.4f, IoU %.4f" % (validation["loss"], validation["iou"]),
          file=sys.stderr, flush=True)
    _summarize(summaries, history[-1])
    if writes:
      checkpoints.save(epoch + 1, history)
    stopping.check()  # a stop signal whose exception was swallowed ends the run here
    if stop_after_epochs and epoch + 1 == stop_after_epochs and epoch + 1 < config.epochs:
      raise StoppedAfterEpochs("stopped after epoch %d as --stop_after_epochs asked; run "
                               "again to resume" % (epoch + 1))
  if validation is None:  # every epoch came from the checkpoint
    validation = validate(validation_step, splits_dir, config.eval_batch_size, info)
  return write_outputs(out_dir, model, history, validation, steps_per_epoch * config.epochs)


def _steps_per_epoch(config, info):
  steps_per_epoch = config.steps_per_epoch or info["counts"]["training"] // config.batch_size
  if steps_per_epoch < 1:
    raise errors.Error("the training split has %d examples, fewer than batch_size=%d"
                       % (info["counts"]["training"], config.batch_size))
  return steps_per_epoch


def check_finite(named_values, epoch, step, learning_rate):
  """Raises errors.Diverged if a value holds NaN or ±Infinity: training diverged.

  named_values: [(name, number or array)], checked in order; the message names the first
  non-finite one, the epoch and step (both counted from 1) and the learning rate in force.
  """
  for name, value in named_values:
    if not np.isfinite(value).all():
      raise errors.Diverged(
          "training diverged at epoch %d, step %d: %s is not finite (NaN or infinite), so "
          "nothing is stored. The learning rate %r is too high for this run: train again with "
          "a lower --learning_rate" % (epoch, step, name, learning_rate))


def train_epoch(train_step, epoch_batches, steps_per_epoch, num_classes, epoch, learning_rate):
  """Runs one epoch's update steps with a progress bar; returns its (mean loss, mean IoU).

  epoch: counted from 1. Raises errors.Error (check_finite) at the first step whose loss is
  NaN or infinite.
  """
  total, matrix = 0.0, np.zeros((num_classes, num_classes), np.int64)
  # Progress on stderr (Keras' bar writes to sys.stdout): a live bar on a terminal, one line
  # per epoch in a log.
  with contextlib.redirect_stdout(sys.stderr):
    progress = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "iou"],
                                   verbose=1 if sys.stderr.isatty() else 2)
    for step, (images, masks) in enumerate(epoch_batches, 1):
      loss, cm = train_step(images, masks)
      loss = float(loss)
      check_finite([("the loss", loss)], epoch, step, learning_rate)
      total += loss
      matrix += cm.numpy()
      progress.update(step, [("loss", total / step), ("iou", metrics.iou(matrix)[1])])
  return total / steps_per_epoch, metrics.iou(matrix)[1]


def validate(validation_step, splits_dir, batch_size, info):
  """The validation pass: mean pixel loss, mean and per-class IoU of the whole validation
  split."""
  num_classes, image_size = info["num_classes"], info["image_size"]
  ordered, count = split_reader.ordered_batches(splits_dir, "validation", batch_size)
  total, matrix = 0.0, np.zeros((num_classes, num_classes), np.int64)
  for images, masks in ordered:
    loss_sum, cm = validation_step(images, masks)
    total += float(loss_sum)
    matrix += cm.numpy()
  per_class, mean = metrics.iou(matrix)
  return {"loss": total / max(1, count * image_size * image_size), "iou": mean,
          "iou_per_class": dict(zip(info["class_names"], per_class)), "examples": count}


def hyperparameters(config, seed):
  """{name: value} of a TrainConfig under the flags' flat names, and the seed; None values
  left out (the HParams dashboard takes booleans, numbers and strings)."""
  flat = dict(config.flat_record(), seed=seed)
  return {name: value for name, value in flat.items() if value is not None}


def _summarize(summaries, record):
  with summaries.as_default(step=record["epoch"]):
    for name, value in record.items():
      if name != "epoch":
        tf.summary.scalar(name, value)
  summaries.flush()


class Checkpoints:
  """The newest epoch's model and optimizer variables and history, in a run folder."""

  def __init__(self, folder, model, optimizer):
    self.folder, self.model, self.optimizer = folder, model, optimizer

  def newest(self, epochs):
    """The epoch of the newest checkpoint within `epochs`, else 0."""
    names = os.listdir(self.folder) if os.path.isdir(self.folder) else []
    return max([int(m.group(1)) for m in map(_CHECKPOINT.match, names)
                if m and int(m.group(1)) <= epochs], default=0)

  def restore(self, epoch):
    """The history of epoch's checkpoint, its variables assigned; [] for epoch 0."""
    if not epoch:
      return []
    path = os.path.join(self.folder, "epoch-%03d" % epoch)
    named = arrays.load(path + ".arrays")
    source = ("the checkpoint %s.arrays (of another model: delete the run folder's checkpoints)"
              % path)
    factory.assign(self.model.variables, named, "model", source)
    factory.assign(self.optimizer.variables, named, "optimizer", source)
    with open(path + ".history.json") as f:
      history = json.load(f)
    logging.info("train: resuming after epoch %d from %s", epoch, self.folder)
    return history

  def save(self, epoch, history):
    os.makedirs(self.folder, exist_ok=True)
    path = os.path.join(self.folder, "epoch-%03d" % epoch)
    with open(path + ".history.json.tmp", "w") as f:
      json.dump(history, f)
    os.replace(path + ".history.json.tmp", path + ".history.json")
    arrays.save(path + ".arrays", factory.named_variables(self.model.variables, "model") +
                factory.named_variables(self.optimizer.variables, "optimizer"))
    for old in os.listdir(self.folder):  # keep only the newest
      if not old.startswith("epoch-%03d." % epoch):
        os.unlink(os.path.join(self.folder, old))


def write_outputs(out_dir, model, history, validation, training_steps):
  """weights.arrays, fingerprint.json, history.json and metrics.json; returns the metrics."""
  weights = factory.save(model, out_dir)
  fingerprint = arrays.fingerprint(weights)
  result = {"validation": validation, "training_steps": training_steps,
            "weights_digest": fingerprint["digest"]}
  for name, value in (("fingerprint.json", fingerprint), ("history.json", history),
                      ("metrics.json", result)):
    files.write_json(os.path.join(out_dir, name), value)
  logging.info("train: validation IoU %.4f, weights digest %s", validation["iou"],
               fingerprint["digest"])
  return result
