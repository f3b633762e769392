"""Training configuration: a JSON file per dataset, the seed's hyperparameter file, flags
(seg.configs.config_flags). A TrainConfig holds a ModelConfig, the U-Net's own section: the stages
after train record it (and eval_batch_size, where batching matters), not the rest. Files and
flags name every value flat.

Precedence, lowest first: seg/configs/<dataset>.json (or --config), then the file named by
--hyperparam_fn_path in the seed's format (batch_size, epochs, iterations, learning_rate,
model_arch, steps_per_epoch), then any flag given on the command line or in a --flagfile.

Every value used, whichever layer gives it, is checked the same way (TrainConfig and
ModelConfig): its field's type, then its range in RANGES. A bad one is an error naming where
it came from, the key, the value as given and what is expected; nothing is converted but a
JSON integer for a float field (and the seed's model names, VGG19 → vgg19).
A value that a later layer overrides is not used, and not checked.
"""

import dataclasses
import json
import math
import os
import typing

from absl import logging

from pipeline import errors
from pipeline import user_input
from seg.configs import hyperparam_file
from seg.model import backbones

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))  # the JSON files beside this one
ARCHS = tuple(backbones.BACKBONES)

# Where a value came from, for error messages, besides "in config PATH" and
# "in hyperparameter file PATH".
FLAG = "flag"
DEFAULT = "by default"
IN_CODE = "in code (TrainConfig or ModelConfig)"


def _weights_given(value):
  """Whether value names encoder weights: imagenet, none or an existing file."""
  return value in ("imagenet", "none") or os.path.isfile(value)


# The range of each config value, checked after its type (the field's annotation): the one
# place each is said, as (test, words the user reads). Bool fields have no entry.
RANGES = {
    "model_arch": (lambda v: v in ARCHS, "(%s)" % " or ".join(ARCHS)),
    "backbone_weights": (_weights_given,
                         "(imagenet, none, or the path of an existing weights file)"),
    "batch_size": (lambda v: v >= 1, "≥ 1"),
    "micro_batches": (lambda v: v >= 1, "≥ 1"),
    "epochs": (lambda v: v >= 1, "≥ 1"),
    "steps_per_epoch": (lambda v: v >= 0, "≥ 0 (0: one pass over the training split)"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "dropout_rate": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "dropout_blocks": (lambda v: 0 <= v <= 4, "from 0 to 4 (the decoder has 4 blocks)"),
    "batchnorm_momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eval_batch_size": (lambda v: v >= 1, "≥ 1"),
    "iterations": (lambda v: v >= 0, "≥ 0"),
}
TYPE_WORDS = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


def _check_fields(config, sources):
  """Checks and normalises every field of a frozen config dataclass (_checked); a nested config
  was checked when it was made."""
  for field in dataclasses.fields(config):
    if not dataclasses.is_dataclass(getattr(config, field.name)):
      value = _checked(field, getattr(config, field.name), sources)
      object.__setattr__(config, field.name, value)  # how a frozen dataclass sets its own field


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The U-Net (seg.model.unet.create): its encoder, dropout and batch norm. The model of a train
  output is rebuilt from it to load the weights. Its values are checked as TrainConfig's are;
  whether such a model can learn is TrainConfig's check."""
  model_arch: str = "mobilenetv2"  # a key of seg.model.backbones.BACKBONES
  backbone_weights: str = "none"
  freeze_backbone: bool = False
  dropout_rate: float = 0.5
  dropout_blocks: int = 1
  batchnorm_momentum: typing.Optional[float] = None  # None keeps each layer's own
  seeded_dropout: bool = True
  sources: dataclasses.InitVar[dict] = None

  def __post_init__(self, sources):
    _check_fields(self, sources or {})

  @property
  def repeatable(self):
    """Whether training it repeats its bits: not if a dropout layer draws a fresh seed each
    run (seeded_dropout off, the seed's Figure 9)."""
    return self.seeded_dropout or not (self.dropout_rate and self.dropout_blocks)

  def record(self):
    """Its values by name, for stage keys."""
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What training runs with: the model, and how it is trained; construction checks every
  value (see _checked).

  Each value must have its field's type exactly: 4.0 is not an int, true is not an int, "0.1"
  is not a float. The one exception: an int for a float field (JSON writes 1 for 1.0) is taken
  and stored as a float, so the record and the stage key do not depend on how it was written.
  Only the Optional fields (ModelConfig.batchnorm_momentum, iterations) may be None (JSON
  null).

  sources: {field: where its value came from} for error messages: "in config PATH",
  "in hyperparameter file PATH", FLAG or DEFAULT; fields not in it are named IN_CODE.
  """
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  batch_size: int = 16
  micro_batches: int = 2
  epochs: int = 6
  steps_per_epoch: int = 18
  learning_rate: float = 0.001
  augment: bool = True
  eval_batch_size: int = 32
  iterations: typing.Optional[int] = None  # the seed's file carries it; training does not use it
  sources: dataclasses.InitVar[dict] = None

  def __post_init__(self, sources):
    if not isinstance(self.model, ModelConfig):
      raise errors.Error("TrainConfig(model=%r): expected a ModelConfig" % (self.model,))
    _check_fields(self, sources or {})
    _check_encoder_can_learn(self.model, sources or {})
    _check_micro_batches(self, sources or {})

  def record(self):
    """{"model": ModelConfig.record(), and the other fields}: flat but for the model."""
    return dataclasses.asdict(self)

  def flat_record(self):
    """Every value under its flat name, as files and flags name them."""
    record = self.record()
    return dict(record.pop("model"), **record)


# What keeps a run from being trained as one of several at once (refuse_several), by the flag
# that asks for it, and why, by what the several are.
_ONE_RUN_ONLY = {
    "stop_after_epochs": ("--stop_after_epochs stops one run on purpose", {
        "workers": "workers resume from the chief's checkpoints but do not stop on purpose; "
                   "train in one process (--workers=1, no TF_CONFIG) to stop after an epoch",
        "trials": "a tune's trials run to the end"}),
    "noseeded_dropout": ("--noseeded_dropout draws fresh dropout seeds each run (the seed's "
                         "Figure 9)", {
        "workers": "each worker would draw its own, and the workers' keys would differ; run "
                   "it in one process (--workers=1, no TF_CONFIG)",
        "trials": "neither the trials nor the best could be repeated; search with seeded "
                  "dropout"}),
}


def refuse_several(train_config, stop_after_epochs, several):
  """Raises errors.Error if a run of train_config (stopping after stop_after_epochs epochs, if
  not 0) cannot be trained as several: "workers" (processes training one run together) or
  "trials" (a search's train runs)."""
  for flag, asked in (("stop_after_epochs", stop_after_epochs),
                      ("noseeded_dropout", not train_config.model.repeatable)):
    if asked:
      what, why = _ONE_RUN_ONLY[flag]
      raise errors.Error("%s: %s" % (what, why[several]))


# The flat names of the two configs' values: files and flags name them so, without sections.
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "model")


def _kind(field):
  """(type, whether None is allowed) from a field's annotation, T or Optional[T]."""
  args = [a for a in typing.get_args(field.type) if a is not type(None)]
  return (args[0], True) if args else (field.type, False)


def _given(key, value, sources):
  """key and value as the user gave them: the flag as typed, or the JSON pair and its source."""
  source = sources.get(key, IN_CODE)
  if source != FLAG:
    return "%s: %s %s" % (json.dumps(key), json.dumps(value, default=repr), source)
  if isinstance(value, bool):
    return "--%s%s" % ("" if value else "no", key)
  return "--%s=%s" % (key, value)


def _expected(field, source):
  """What a field's value must be, in words: "an integer ≥ 1" (", or null" where a file may
  say so; a flag cannot)."""
  kind, optional = _kind(field)
  words = TYPE_WORDS[kind]
  if field.name in RANGES:
    words += " " + RANGES[field.name][1]
  return words + (", or null" if optional and source != FLAG else "")


def _checked(field, value, sources):
  """value, checked against field's type and range; an int for a float field as a float."""
  kind, optional = _kind(field)
  if value is None and optional:
    return None
  has_type = (type(value) is kind or (kind is float and type(value) is int)) and not (
      kind is float and not math.isfinite(value))  # not bool; no NaN or inf from a flag
  if not has_type or (field.name in RANGES and not RANGES[field.name][0](value)):
    raise errors.Error("%s: expected %s" % (_given(field.name, value, sources),
                                           _expected(field, sources.get(field.name))))
  return float(value) if kind is float else value


def _check_encoder_can_learn(config, sources):
  """Refuses a frozen encoder with random weights: only the decoder would learn, on features
  that mean nothing (measured at full size on 7,349 synthetic pets: training IoU stayed
  at 0.2463, one class everywhere, for all 12 epochs)."""
  if config.freeze_backbone and config.backbone_weights == "none":
    raise errors.Error(
        "%s with %s: a frozen encoder with random weights cannot learn. Train the encoder from "
        "scratch with --nofreeze_backbone, or give it weights: --backbone_weights=imagenet or "
        "--backbone_weights=PATH" % (_given("freeze_backbone", True, sources),
                                     _given("backbone_weights", "none", sources)))


def _check_micro_batches(config, sources):
  """Refuses a batch that does not split into equal micro-batches."""
  if config.batch_size % config.micro_batches:
    divisors = [d for d in range(1, config.batch_size + 1) if config.batch_size % d == 0]
    raise errors.Error(
        "%s does not split %s into %d equal micro-batches: set micro_batches (--micro_batches, "
        "or in the config) to a divisor of the batch size (%s), or use another batch size"
        % (_given("micro_batches", config.micro_batches, sources),
           _given("batch_size", config.batch_size, sources), config.micro_batches,
           ", ".join(map(str, divisors))))


def _read_seed_file(path):
  """The hyperparameters of a file in the seed's format; other keys are named and ignored."""
  values = user_input.read_json(path, "hyperparameter file")
  unknown = sorted(set(values) - set(hyperparam_file.KEYS))
  if unknown:  # the seed's tuner writes its own keys (rays_ckpt) into these files
    logging.warning("hyperparameter file %s: ignoring keys that are not hyperparameters: %s "
                    "(the seed's format has %s)", path, ", ".join(unknown),
                    ", ".join(hyperparam_file.KEYS))
    values = {k: v for k, v in values.items() if k in hyperparam_file.KEYS}
  if isinstance(values.get("model_arch"), str):  # the seed writes names like VGG19; any other
    values["model_arch"] = values["model_arch"].lower()  # type is left for TrainConfig to refuse
  return values


def resolve(dataset, config_path=None, hyperparam_path=None, overrides=None):
  """The TrainConfig from the three layers; a bad value is named with the layer it came from.

  Unknown keys in a config file are errors; in the seed's hyperparameter file they are named in
  a warning and ignored. overrides: {flag name: value}, None for a flag not given.
  """
  fields = set(MODEL_FIELDS + TRAIN_FIELDS)
  path = config_path or os.path.join(CONFIG_DIR, dataset + ".json")
  values = user_input.read_json(path, "config")
  unknown = set(values) - fields
  if unknown:
    raise errors.Error("config %s has unknown keys %s (known: %s)"
                       % (path, sorted(unknown), sorted(fields)))
  sources = dict.fromkeys(fields, DEFAULT)
  shown = (os.path.join("seg", "configs", os.path.basename(path)) if config_path is None
           else path)  # the shipped file by its name in the source tree, not Bazel's copy
  sources.update(dict.fromkeys(values, "in config " + shown))
  if hyperparam_path:
    seed_values = _read_seed_file(hyperparam_path)
    values.update(seed_values)
    sources.update(dict.fromkeys(seed_values, "in hyperparameter file " + hyperparam_path))
  flag_values = {k: v for k, v in (overrides or {}).items() if v is not None}
  values.update(flag_values)
  sources.update(dict.fromkeys(flag_values, FLAG))
  model = ModelConfig(**{k: v for k, v in values.items() if k in MODEL_FIELDS}, sources=sources)
  train_config = TrainConfig(model, **{k: v for k, v in values.items() if k in TRAIN_FIELDS},
                             sources=sources)
  if train_config.iterations is not None:
    logging.warning("'iterations' (%s) is recorded but not used: training runs epochs x "
                    "steps_per_epoch steps", train_config.iterations)
  return train_config
