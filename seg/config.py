"""Training configuration: a JSON file per dataset, the seed's hyperparameter file, flags.

Precedence, lowest first: seg/configs/<dataset>.json (or --config), then the file named by
--hyperparam_fn_path in the seed's format (batch_size, epochs, iterations, learning_rate,
model_arch, steps_per_epoch), then any flag given on the command line or in a --flagfile.
"""

import dataclasses
import json
import os

from absl import flags
from absl import logging

from pipeline import errors

FLAGS = flags.FLAGS
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
ARCHS = ("mobilenetv2", "vgg19")
SEED_FORMAT_KEYS = ("batch_size", "epochs", "iterations", "learning_rate", "model_arch",
                    "steps_per_epoch")

flags.DEFINE_string("config", None, "A training config JSON file. Default: "
                    "seg/configs/<--dataset>.json.")
flags.DEFINE_string("hyperparam_fn_path", None,
                    "A JSON file of hyperparameters in the seed's format: " +
                    ", ".join(SEED_FORMAT_KEYS) + ". Overrides the config file.")
flags.DEFINE_enum("model_arch", None, list(ARCHS), "U-Net encoder. Default: from the config.")
flags.DEFINE_string("backbone_weights", None,
                    "Encoder weights: imagenet (keras.applications' file, fetched once), none "
                    "(random, seeded), or the path of a weights file. Default: from the config.")
flags.DEFINE_bool("freeze_backbone", None, "Keep the encoder's weights fixed. Default: config.")
flags.DEFINE_integer("batch_size", None, "Examples per training step. Default: config.")
flags.DEFINE_integer("epochs", None, "Training epochs. Default: config.")
flags.DEFINE_integer("steps_per_epoch", None,
                     "Training steps per epoch; 0 means one pass over the training split. "
                     "Default: config.")
flags.DEFINE_float("learning_rate", None, "Adam's learning rate. Default: config.")
flags.DEFINE_float("dropout_rate", None, "Dropout rate in the decoder. Default: config.")
flags.DEFINE_integer("dropout_blocks", None,
                     "Decoder blocks with dropout, from the first: 1 (reproseg's default) to 4 "
                     "(the seed's U-Net). Default: config.")
flags.DEFINE_bool("augment", None, "Random left-right flips (stateless, seeded). Default: config.")
flags.DEFINE_float("batchnorm_momentum", None,
                   "Momentum of every BatchNormalization layer's moving statistics; unset keeps "
                   "each layer's own (0.999 in the encoder). Default: config.")
flags.DEFINE_bool("seeded_dropout", None,
                  "Seed the dropout layers. --noseeded_dropout is the seed's Figure 9 "
                  "experiment: results no longer repeat. Default: config (on).")
flags.DEFINE_integer("eval_batch_size", None,
                     "Batch size for validation and test evaluation. Default: config (32).")
flags.DEFINE_integer("stop_after_epochs", 0,
                     "Stop (and fail) after this many epochs, leaving the checkpoint to resume "
                     "from; 0 runs to the end. For testing resumption.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  model_arch: str = "mobilenetv2"
  backbone_weights: str = "none"
  freeze_backbone: bool = False
  batch_size: int = 16
  epochs: int = 6
  steps_per_epoch: int = 18
  learning_rate: float = 0.001
  dropout_rate: float = 0.5
  dropout_blocks: int = 1
  augment: bool = True
  batchnorm_momentum: float = None  # None keeps each layer's own
  seeded_dropout: bool = True
  eval_batch_size: int = 32
  iterations: int = None  # the seed's file carries it; training does not use it

  def __post_init__(self):
    if self.model_arch not in ARCHS:
      raise errors.Error("model_arch %r: use one of %s" % (self.model_arch, ", ".join(ARCHS)))
    for name in ("batch_size", "epochs", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise errors.Error("%s=%s: must be at least 1" % (name, getattr(self, name)))
    if self.steps_per_epoch < 0:
      raise errors.Error("steps_per_epoch=%s: use 0 (one pass) or more" % self.steps_per_epoch)
    if not self.learning_rate > 0:
      raise errors.Error("learning_rate=%s: must be positive" % self.learning_rate)
    if not 0 <= self.dropout_rate < 1:
      raise errors.Error("dropout_rate=%s: must be in [0, 1)" % self.dropout_rate)
    if not 0 <= self.dropout_blocks <= 4:
      raise errors.Error("dropout_blocks=%s: the decoder has 4 blocks; use 0 to 4"
                         % self.dropout_blocks)
    if self.batchnorm_momentum is not None and not 0 <= self.batchnorm_momentum < 1:
      raise errors.Error("batchnorm_momentum=%s: must be in [0, 1)" % self.batchnorm_momentum)
    if self.backbone_weights not in ("imagenet", "none") and not os.path.isfile(
        self.backbone_weights):
      raise errors.Error("backbone_weights=%s: use imagenet, none, or the path of an existing "
                         "weights file" % self.backbone_weights)

  def record(self):
    return dataclasses.asdict(self)


def _read_json(path, what):
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.Error("cannot read %s %s: %s" % (what, path, e)) from e
  if not isinstance(values, dict):
    raise errors.Error("%s %s must hold a JSON object" % (what, path))
  return values


def resolve(dataset, config_path=None, hyperparam_path=None, overrides=None):
  """The TrainConfig from the three layers. Unknown keys in a config file are errors; in the
  seed's hyperparameter file they are named in a warning and ignored."""
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  path = config_path or os.path.join(CONFIG_DIR, dataset + ".json")
  values = _read_json(path, "config")
  unknown = set(values) - fields
  if unknown:
    raise errors.Error("config %s has unknown keys %s (known: %s)"
                       % (path, sorted(unknown), sorted(fields)))
  if hyperparam_path:
    seed_values = _read_json(hyperparam_path, "hyperparameter file")
    unknown = sorted(set(seed_values) - set(SEED_FORMAT_KEYS))
    if unknown:  # the seed's tuner writes its own keys (rays_ckpt) into these files
      logging.warning("hyperparameter file %s: ignoring %s, which are not hyperparameters (the "
                      "seed's format has %s)", hyperparam_path, ", ".join(unknown),
                      ", ".join(SEED_FORMAT_KEYS))
      seed_values = {k: v for k, v in seed_values.items() if k in SEED_FORMAT_KEYS}
    if "model_arch" in seed_values:
      seed_values["model_arch"] = str(seed_values["model_arch"]).lower()
    values.update(seed_values)
  values.update({k: v for k, v in (overrides or {}).items() if v is not None})
  if values.get("iterations") is not None:
    logging.warning("'iterations' (%s) is recorded but not used: training runs epochs x "
                    "steps_per_epoch steps", values["iterations"])
  try:
    return TrainConfig(**values)
  except TypeError as e:
    raise errors.Error("bad training config: %s" % e) from e


OVERRIDE_FLAGS = ("model_arch", "backbone_weights", "freeze_backbone", "batch_size", "epochs",
                  "steps_per_epoch", "learning_rate", "dropout_rate", "dropout_blocks", "augment",
                  "batchnorm_momentum", "seeded_dropout", "eval_batch_size")


def from_flags():
  """The TrainConfig; only flags given on the command line or in a --flagfile override."""
  overrides = {name: FLAGS[name].value for name in OVERRIDE_FLAGS if FLAGS[name].present}
  return resolve(FLAGS.dataset, FLAGS.config, FLAGS.hyperparam_fn_path, overrides)
