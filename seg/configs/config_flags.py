"""The training config's flags, flat: one per TrainConfig and ModelConfig value
(seg.configs.config), which override the config files when given, plus --config,
--hyperparam_fn_path and --stop_after_epochs. The mains read them through from_flags, and
nothing else does.
"""

from absl import flags

from pipeline import user_input
from seg.configs import config
from seg.configs import hyperparam_file

FLAGS = flags.FLAGS

user_input.define_path("config", None, "A training config JSON file. Default: "
                       "seg/configs/<--dataset>.json.")
user_input.define_path("hyperparam_fn_path", None,
                       "A JSON file of hyperparameters in the seed's format: " +
                       ", ".join(hyperparam_file.KEYS) + ". Overrides the config file.")
flags.DEFINE_enum("model_arch", None, list(config.ARCHS),
                  "U-Net encoder (seg/model/backbones.py). Default: from the config.")
user_input.define_path("backbone_weights", None,
                       "Encoder weights: imagenet (keras.applications' file, fetched once), "
                       "none (random, seeded: train it with --nofreeze_backbone), or the path "
                       "of a weights file. Default: from the config.")
flags.DEFINE_bool("freeze_backbone", None, "Keep the encoder's weights fixed. Default: config.")
flags.DEFINE_integer("batch_size", None, "Examples per training step. Default: config.")
flags.DEFINE_integer("micro_batches", None,
                     "Equal micro-batches each training step's batch is split into; it must "
                     "divide --batch_size. Each has its own forward and backward pass and "
                     "batch-norm statistics; the step's gradient is their mean, summed in "
                     "micro-batch order. It fixes the bits whatever the number of workers: "
                     "one process or any worker count that divides it train the same output. "
                     "Default: config (2).")
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


# The flags that override a config value of the same name: all but iterations, which only the
# seed's hyperparameter file carries.
OVERRIDE_FLAGS = tuple(name for name in config.MODEL_FIELDS + config.TRAIN_FIELDS
                       if name != "iterations")


def from_flags(dataset, values=None):
  """The TrainConfig of a dataset (its name, e.g. "synthetic"); only flags given on the command
  line or in a --flagfile override, and values ({flag name: value}) as if given so."""
  overrides = {name: FLAGS[name].value for name in OVERRIDE_FLAGS if FLAGS[name].present}
  overrides.update(values or {})
  return config.resolve(dataset, FLAGS.config, FLAGS.hyperparam_fn_path, overrides)
