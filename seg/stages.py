"""The train stage and the pipeline that leads to it: data stages first, then training."""

import os

from data_tools import dataset
from pipeline import digest
from pipeline import errors
from pipeline import stage
from seg import unet


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
                       "--image_size or use --backbone_weights=none"
                       % (unet.MOBILENETV2_IMAGENET_SIZES, image_size))
  import keras  # pylint: disable=g-import-not-at-top
  name, url = unet.IMAGENET_WEIGHTS[config.model_arch](image_size)
  try:
    return keras.utils.get_file(name, url, cache_subdir="models")
  except Exception as e:  # get_file raises several types for a failed download
    raise errors.Error(
        "could not fetch the ImageNet weights %s (%s). Offline, copy that file into "
        "~/.keras/models/, pass --backbone_weights=PATH, or train from scratch with "
        "--backbone_weights=none (the synthetic dataset's default)" % (name, e)) from e


def train_stage(store, splits, config, settings, stop_after_epochs=0):
  """The train stage on a partition Result."""
  from seg import training  # pylint: disable=g-import-not-at-top
  image_size = int(splits.manifest["key_record"]["params"]["image_size"])
  weights = backbone_weights_file(config, image_size)
  inputs = {"splits": splits.digest,
            "backbone_weights": digest.file_digest(weights) if weights else None}

  def build(out, run_dir):
    return training.train_and_evaluate(config, splits.path, out, run_dir, settings.seed,
                                       backbone_weights=weights,
                                       stop_after_epochs=stop_after_epochs)

  params = config.record()
  if not config.seeded_dropout:
    # Not repeatable by design (the seed's Figure 9): never a cache hit.
    params["unrepeatable_run"] = os.urandom(16).hex()
  return stage.run(store, "train", ("seg.training",), params, inputs, settings.record(), build)


def run_pipeline(store, data_config, train_config, settings, stop_after_epochs=0):
  """download (and synthetic) → partition → train; returns every stage's Result."""
  results = dataset.prepare(store, data_config, settings)
  return results + [train_stage(store, results[-1], train_config, settings, stop_after_epochs)]
