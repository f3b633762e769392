"""The train stage: training and validation of the U-Net. train_and_evaluate builds the model
and its update step, runs train_epoch and evaluate per epoch with Checkpoints, and ends in
write_outputs; train_stage runs it through the store. With a seg.distribute.Distribution it
trains as one of several workers.

Every epoch is a pure function of (seed, epoch) and the state after the previous epoch, and
that state (model and optimizer variables, seed-generator states included) is checkpointed
after each epoch in the run folder; a run stopped after epoch k and started again resumes
from there and ends with the same bits as one that was never stopped.
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

from data_tools import partition
from pipeline import arrays
from pipeline import digest
from pipeline import errors
from pipeline import stage
from pipeline import store as storelib
from seg import distribute
from seg import input_pipeline
from seg import metrics
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


def loss_and_gradients(model, images, masks, replicas=1):
  """(logits, mean pixel loss, gradients of model.trainable_variables) of one batch.

  With several replicas, each holding an equal slice of the batch, the gradients are of
  loss / replicas: the optimizer sums them across replicas into the whole batch's.
  """
  with tf.GradientTape() as tape:
    logits = model(images, training=True)
    loss = tf.reduce_mean(_pixel_losses(masks, logits))
    scaled = loss / replicas if replicas > 1 else loss
  return logits, loss, tape.gradient(scaled, model.trainable_variables)


def make_steps(model, optimizer, num_classes, strategy=None):
  """(train_step, eval_step) as tf.functions of (float images, int masks).

  train_step applies one Adam update and returns (mean loss, confusion matrix) of the whole
  batch; eval_step returns (summed pixel loss, confusion matrix). Under a tf.distribute
  strategy (seg.distribute), train_step takes this worker's slice of the batch and the
  update and its results are the whole batch's.
  """
  replicas = strategy.num_replicas_in_sync if strategy else 1

  def replica_step(images, masks):
    logits, loss, gradients = loss_and_gradients(model, images, masks, replicas)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, _confusion(masks, logits, num_classes)

  @tf.function
  def train_step(images, masks):
    if strategy is None:
      return replica_step(images, masks)
    loss, confusion = strategy.run(replica_step, args=(images, masks))
    total = lambda value: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
    return total(loss) / replicas, total(confusion)

  @tf.function
  def eval_step(images, masks):
    logits = model(images, training=False)
    return tf.reduce_sum(_pixel_losses(masks, logits)), _confusion(masks, logits, num_classes)

  return train_step, eval_step


def build_model(config, info, settings, backbone_weights=None, exact=None):
  """The U-Net of a training config for a partition's splits.json info; exact layers as the
  settings say unless exact is given (export builds Keras' stock layers too)."""
  return unet.build(config.model_arch, info["image_size"], info["num_classes"], settings.seed,
                    dropout_rate=config.dropout_rate, dropout_blocks=config.dropout_blocks,
                    backbone_weights=backbone_weights,
                    freeze_backbone=config.freeze_backbone,
                    seeded_dropout=config.seeded_dropout,
                    batchnorm_momentum=config.batchnorm_momentum,
                    exact=settings.exact_layers if exact is None else exact)


def train_and_evaluate(config, splits_dir, out_dir, run_dir, settings, backbone_weights=None,
                       stop_after_epochs=0, distribution=None):
  """Trains on the training split, validates each epoch, and writes to out_dir:
  weights.arrays (all model variables), fingerprint.json, history.json, metrics.json.

  run_dir keeps checkpoints/ (resumable state) and tensorboard/ (logs); neither is a result.
  settings: the pipeline.determinism.Settings in force (its seed, and exact_layers).
  distribution: a seg.distribute.Distribution to train as one of several workers (each takes
  its slice of every batch; batch statistics are synchronized; no resuming), or None.
  Returns the final metrics for the manifest.
  """
  info = input_pipeline.split_info(splits_dir)
  steps = _steps_per_epoch(config, info)
  rows = distribute.shard(config.batch_size, distribution.cluster) if distribution else None
  strategy = distribution.strategy if distribution else None
  with strategy.scope() if strategy else contextlib.nullcontext():
    model = build_model(config, info, settings, backbone_weights)
    if distribution:
      synchronize_batchnorm(model)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
  train_step, eval_step = make_steps(model, optimizer, info["num_classes"], strategy)
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


def synchronize_batchnorm(model):
  """Batch statistics over the whole batch (all workers' slices), as in one process: every
  worker then holds the same moving statistics. Costs all-reduces in every step."""
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.synchronized = True


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
    raise errors.Error("--stop_after_epochs needs --distribute=none: a multi-worker run "
                       "does not resume from checkpoints")

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
  params["distribute"] = distribution.record()
  return distribution.run_stage(store, "train", params, inputs, settings.record(), build)
