"""The train stage: training and validation of the U-Net. train_and_evaluate builds the model
and its update step, runs train_epoch and evaluate per epoch with Checkpoints, and ends in
write_outputs; train_stage runs it through the store. With a seg.distribute.Distribution it
trains as one of several workers.

Every epoch is a pure function of (seed, epoch) and the state after the previous epoch, and
that state (model and optimizer variables, the step count that keys dropout included) is
checkpointed
after each epoch in the run folder; a run stopped after epoch k and started again resumes
from there and ends with the same bits as one that was never stopped.
"""

import json
import os
import re
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data_tools import partition
from pipeline import arrays
from pipeline import digest
from pipeline import errors
from pipeline import stage
from pipeline import store as storelib
from seg import input_pipeline
from seg import metrics
from seg import micro_batch_layers
from seg import unet

WEIGHTS_FILE = "weights.arrays"
_CHECKPOINT = re.compile(r"^epoch-(\d{3})\.arrays$")


class Stopped(errors.Error):
  """Raised by --stop_after_epochs: the run stopped early on purpose, checkpoint kept."""


def named_variables(variables, prefix):
  return [("%s/%04d/%s" % (prefix, i, v.path), v.numpy()) for i, v in enumerate(variables)]


def _assign(variables, named, prefix):
  mine = [n for n in named if n[0].startswith(prefix + "/")]
  if len(mine) != len(variables):
    raise errors.Error("checkpoint holds %d %s variables, the model has %d: delete the run "
                       "folder's checkpoints" % (len(mine), prefix, len(variables)))
  for variable, (_, value) in zip(variables, mine):
    variable.assign(value)


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
  dropout masks keyed by (step, micro-batch): seg.micro_batch_layers). The update uses the
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
    [micro_batches, ...] tensors of every worker, in worker order (seg.distribute)."""
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
  """(train_step, eval_step): a TrainStep (see there for part and all_gather), and a
  tf.function of (float images, int masks) returning (summed pixel loss, confusion matrix)."""

  @tf.function
  def eval_step(images, masks):
    logits = model(images, training=False)
    return tf.reduce_sum(_pixel_losses(masks, logits)), _confusion(masks, logits, num_classes)

  return (TrainStep(model, optimizer, num_classes, micro_batches, part, all_gather),
          eval_step)


def build_model(config, info, settings, backbone_weights=None, stock=False):
  """The U-Net of a training config for a partition's splits.json info; exact layers as the
  settings say; stock: Keras' own layers, for inference only (seg.export)."""
  return unet.build(config.model_arch, info["image_size"], info["num_classes"], settings.seed,
                    dropout_rate=config.dropout_rate, dropout_blocks=config.dropout_blocks,
                    backbone_weights=backbone_weights,
                    freeze_backbone=config.freeze_backbone,
                    seeded_dropout=config.seeded_dropout,
                    batchnorm_momentum=config.batchnorm_momentum,
                    exact=settings.exact_layers, stock=stock)


def train_and_evaluate(config, splits_dir, out_dir, run_dir, settings, backbone_weights=None,
                       stop_after_epochs=0, distribution=None):
  """Trains on the training split, validates each epoch, and writes to out_dir:
  weights.arrays (all model variables), fingerprint.json, history.json, metrics.json.

  run_dir keeps checkpoints/ (resumable state) and tensorboard/ (logs); neither is a result.
  settings: the pipeline.determinism.Settings in force (its seed, and exact_layers).
  distribution: a seg.distribute.Distribution to train as one of several workers (each
  computes its share of every batch's micro-batches; no resuming), or None.
  Returns the final metrics for the manifest.
  """
  info = input_pipeline.split_info(splits_dir)
  steps = _steps_per_epoch(config, info)
  part = distribution.part(config.micro_batches) if distribution else None
  size = config.batch_size // config.micro_batches
  rows = (part[0] * size, (part[0] + part[1]) * size) if part else None
  model = build_model(config, info, settings, backbone_weights)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(model.trainable_variables)
  train_step, eval_step = make_steps(model, optimizer, info["num_classes"],
                                     config.micro_batches, part,
                                     distribution.all_gather if distribution else None)
  checkpoints = Checkpoints(os.path.join(run_dir, "checkpoints"), model, optimizer)
  start, history = (0, []) if distribution else checkpoints.restore(config.epochs)
  summaries = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
  validation = None
  for epoch in range(start, config.epochs):
    print("Epoch %d/%d" % (epoch + 1, config.epochs), flush=True)
    batches = input_pipeline.training_batches(splits_dir, settings.seed, epoch,
                                              config.batch_size, steps, augment=config.augment,
                                              rows=rows)
    loss, iou = train_epoch(train_step, batches, steps, info["num_classes"], epoch + 1,
                            config.learning_rate)
    # Before the checkpoint below: a diverged state is never kept.
    check_finite([("variable " + v.path, v.numpy()) for v in model.variables], epoch + 1,
                 steps, config.learning_rate)
    validation = evaluate(eval_step, splits_dir, "validation", config.eval_batch_size, info)
    check_finite([("the validation loss", validation["loss"])], epoch + 1, steps,
                 config.learning_rate)
    history.append({"epoch": epoch + 1, "loss": loss, "iou": iou,
                    "val_loss": validation["loss"], "val_iou": validation["iou"]})
    print("  validation loss %.4f, IoU %.4f" % (validation["loss"], validation["iou"]),
          flush=True)
    _summarize(summaries, history[-1])
    if not distribution:
      checkpoints.save(epoch + 1, history)
    if stop_after_epochs and epoch + 1 == stop_after_epochs and epoch + 1 < config.epochs:
      raise Stopped("stopped after epoch %d as --stop_after_epochs asked; run again to resume"
                    % (epoch + 1))
  if validation is None:  # every epoch came from the checkpoint
    validation = evaluate(eval_step, splits_dir, "validation", config.eval_batch_size, info)
  return write_outputs(out_dir, model, history, validation, steps * config.epochs)


def _steps_per_epoch(config, info):
  steps = config.steps_per_epoch or info["counts"]["training"] // config.batch_size
  if steps < 1:
    raise errors.Error("the training split has %d examples, fewer than batch_size=%d"
                       % (info["counts"]["training"], config.batch_size))
  return steps


def check_finite(named_values, epoch, step, learning_rate):
  """Raises errors.Error if a value holds NaN or ±Infinity: training diverged.

  named_values: [(name, number or array)], checked in order; the message names the first
  non-finite one, the epoch and step (both counted from 1) and the learning rate in force.
  """
  for name, value in named_values:
    if not np.isfinite(value).all():
      raise errors.Error(
          "training diverged at epoch %d, step %d: %s is not finite (NaN or infinite), so "
          "nothing is stored. The learning rate %r is too high for this run: train again "
          "with a lower --learning_rate" % (epoch, step, name, learning_rate))


def train_epoch(train_step, batches, steps, num_classes, epoch, learning_rate):
  """Runs one epoch's update steps with a progress bar; returns its (mean loss, mean IoU).

  epoch: counted from 1. Raises errors.Error (check_finite) at the first step whose loss is
  NaN or infinite.
  """
  # A live bar on a terminal; one line per epoch in a log.
  progress = keras.utils.Progbar(steps, stateful_metrics=["loss", "iou"],
                                 verbose=1 if sys.stdout.isatty() else 2)
  total, matrix = 0.0, np.zeros((num_classes, num_classes), np.int64)
  for step, (images, masks) in enumerate(batches, 1):
    loss, cm = train_step(images, masks)
    loss = float(loss)
    check_finite([("the loss", loss)], epoch, step, learning_rate)
    total += loss
    matrix += cm.numpy()
    progress.update(step, [("loss", total / step), ("iou", metrics.iou(matrix)[1])])
  return total / steps, metrics.iou(matrix)[1]


def evaluate(eval_step, splits_dir, split, batch_size, info):
  """Mean pixel loss, mean and per-class IoU of a whole split."""
  num_classes, image_size = info["num_classes"], info["image_size"]
  batches, count = input_pipeline.evaluation_batches(splits_dir, split, batch_size)
  total, matrix = 0.0, np.zeros((num_classes, num_classes), np.int64)
  for images, masks in batches:
    loss_sum, cm = eval_step(images, masks)
    total += float(loss_sum)
    matrix += cm.numpy()
  per_class, mean = metrics.iou(matrix)
  return {"loss": total / max(1, count * image_size * image_size), "iou": mean,
          "iou_per_class": dict(zip(partition.CLASS_NAMES, per_class)), "examples": count}


def _summarize(summaries, record):
  with summaries.as_default(step=record["epoch"]):
    for name, value in record.items():
      if name != "epoch":
        tf.summary.scalar(name, value)
  summaries.flush()


class Checkpoints:
  """The newest epoch's model and optimizer variables and history, in a run folder."""

  def __init__(self, folder, model, optimizer):
    os.makedirs(folder, exist_ok=True)
    self.folder, self.model, self.optimizer = folder, model, optimizer

  def restore(self, epochs):
    """(epochs done, history) from the newest checkpoint within `epochs`, else (0, [])."""
    found = sorted(int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(self.folder))
                   if m and int(m.group(1)) <= epochs)
    if not found:
      return 0, []
    path = os.path.join(self.folder, "epoch-%03d" % found[-1])
    named = arrays.load(path + ".arrays")
    _assign(self.model.variables, named, "model")
    _assign(self.optimizer.variables, named, "optimizer")
    with open(path + ".history.json") as f:
      history = json.load(f)
    logging.info("train: resuming after epoch %d from %s", found[-1], self.folder)
    return found[-1], history

  def save(self, epoch, history):
    path = os.path.join(self.folder, "epoch-%03d" % epoch)
    with open(path + ".history.json.tmp", "w") as f:
      json.dump(history, f)
    os.replace(path + ".history.json.tmp", path + ".history.json")
    arrays.save(path + ".arrays", named_variables(self.model.variables, "model") +
                named_variables(self.optimizer.variables, "optimizer"))
    for old in os.listdir(self.folder):  # keep only the newest
      if not old.startswith("epoch-%03d." % epoch):
        os.unlink(os.path.join(self.folder, old))


def write_outputs(out_dir, model, history, validation, training_steps):
  """weights.arrays, fingerprint.json, history.json and metrics.json; returns the metrics."""
  weights = named_variables(model.variables, "model")
  arrays.save(os.path.join(out_dir, WEIGHTS_FILE), weights)
  fingerprint = arrays.fingerprint(weights)
  result = {"validation": validation, "training_steps": training_steps,
            "weights_digest": fingerprint["digest"]}
  for name, value in (("fingerprint.json", fingerprint), ("history.json", history),
                      ("metrics.json", result)):
    storelib.write_json(os.path.join(out_dir, name), value)
  logging.info("train: validation IoU %.4f, weights digest %s", validation["iou"],
               fingerprint["digest"])
  return result


def load_weights(model, out_dir):
  """Loads a train output's weights.arrays into a model built with the same config."""
  _assign(model.variables, arrays.load(os.path.join(out_dir, WEIGHTS_FILE)), "model")


# --- The stage -------------------------------------------------------------------------------
def backbone_weights_file(config, image_size):
  """The encoder's weights file for config.backbone_weights, or None for 'none'.

  'imagenet' is keras.applications' file, fetched once into ~/.keras/models.
  """
  if config.backbone_weights == "none":
    return None
  if config.backbone_weights != "imagenet":
    return config.backbone_weights
  if config.model_arch == "mobilenetv2" and image_size not in unet.MOBILENETV2_IMAGENET_SIZES:
    raise errors.Error("MobileNetV2 has ImageNet weights for image sizes %s, not %d: change "
                       "--image_size, or train the encoder from scratch with "
                       "--backbone_weights=none --nofreeze_backbone"
                       % (unet.MOBILENETV2_IMAGENET_SIZES, image_size))
  name, url = unet.IMAGENET_WEIGHTS[config.model_arch](image_size)
  try:
    return keras.utils.get_file(name, url, cache_subdir="models")
  except Exception as e:  # get_file raises several types for a failed download
    raise errors.Error(
        "could not fetch the ImageNet weights %s (%s). Offline, copy that file into "
        "~/.keras/models/, pass --backbone_weights=PATH, or train the encoder from scratch "
        "with --backbone_weights=none --nofreeze_backbone (the synthetic dataset's default)"
        % (name, e)) from e


def train_stage(store, splits, config, settings, stop_after_epochs=0, distribution=None):
  """The train stage on a partition Result.

  As one of several workers (distribution), the chief runs it through the store and returns
  its Result; the other workers train alongside, store nothing and return None.
  """
  image_size = int(splits.manifest["key_record"]["params"]["image_size"])
  weights = backbone_weights_file(config, image_size)
  inputs = {"splits": splits,
            "backbone_weights": digest.file_digest(weights) if weights else None}
  if distribution and stop_after_epochs:
    raise errors.Error("--stop_after_epochs needs one process: workers (--distribute or "
                       "--workers) do not resume from checkpoints")
  if distribution and not config.seeded_dropout:
    raise errors.Error("--noseeded_dropout needs one process: each worker would draw its own "
                       "unrepeatable seed, and the workers' keys would differ")

  def build(out, run_dir):
    details = train_and_evaluate(config, splits.path, out, run_dir, settings,
                                 backbone_weights=weights, stop_after_epochs=stop_after_epochs,
                                 distribution=distribution)
    return dict(details, headline="validation IoU %.4f" % details["validation"]["iou"])

  params = config.record()
  if not config.seeded_dropout:
    # Not repeatable by design (the seed's Figure 9): never a cache hit.
    params["unrepeatable_run"] = os.urandom(16).hex()
  if distribution is None:
    return stage.run(store, "train", params, inputs, settings.record(), build)
  return distribution.run_stage(store, "train", params, inputs, settings.record(), build)
