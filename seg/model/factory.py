"""The one model factory of the stages: the U-Net of a ModelConfig for a partition's splits, and a
train output's weights saved and loaded (the encoder's weights file: seg.model.backbones).
seg.training.train makes and saves models with it; seg.evaluation.calibrate,
seg.evaluation.evaluate and seg.serve.export load them, so that none of them imports
seg.training.train.
"""

import os

from pipeline import arrays
from pipeline import errors
from seg.model import unet

WEIGHTS_FILE = "weights.arrays"  # in a train output: every model variable, by name


def for_splits(model_config, info, settings, backbone_weights_file=None, stock=False):
  """The U-Net (seg.model.unet.create) of a seg.configs.config.ModelConfig for a partition's
  splits.json info (image_size, num_classes), with exact layers and fixed-order kernels as the
  pipeline.determinism.Settings say; backbone_weights_file: the encoder's weights file or None;
  stock: Keras' own layers, for inference only (seg.serve.export)."""
  return unet.create(model_config, info["image_size"], info["num_classes"], settings.seed,
                     backbone_weights_file=backbone_weights_file, exact=settings.exact_layers,
                     fixed_order=settings.fixed_order_kernels, stock=stock)


def named_variables(variables, prefix):
  """[("<prefix>/<index>/<variable path>", value)] of Keras variables, in their order."""
  return [("%s/%04d/%s" % (prefix, i, v.path), v.numpy()) for i, v in enumerate(variables)]


def assign(variables, named, prefix, source):
  """Assigns to variables, in order, the values that named_variables(..., prefix) listed in
  named (arrays.load of a file).

  Raises errors.Error if the counts differ; the message names source (what the file is and
  what to do about it).
  """
  mine = [n for n in named if n[0].startswith(prefix + "/")]
  if len(mine) != len(variables):
    raise errors.Error("%s holds %d %s variables where %d are expected" % (
        source, len(mine), prefix, len(variables)))
  for variable, (_, value) in zip(variables, mine):
    variable.assign(value)


def save(model, out_dir):
  """Writes out_dir/weights.arrays (every model variable); returns its named_variables."""
  weights = named_variables(model.variables, "model")
  arrays.save(os.path.join(out_dir, WEIGHTS_FILE), weights)
  return weights


def load(train_dir, model_config, info, settings):
  """The U-Net of model_config with the weights of a train output (its folder, train_dir).

  Raises errors.Error if the weights do not fit the model: model_config is not the one the
  output was trained with.
  """
  model = for_splits(model_config, info, settings)
  path = os.path.join(train_dir, WEIGHTS_FILE)
  assign(model.variables, arrays.load(path), "model",
         "%s (trained with other model flags than these: pass the ones it was trained with)"
         % path)
  return model
