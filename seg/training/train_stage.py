"""The train stage: its key's parameters and inputs, and a build that trains with
seg.training.train, imported only when it builds. Free of TensorFlow, so that a dry run
(pipeline.planning) plans it without starting TensorFlow.
"""

from pipeline import digest
from pipeline import stage
from seg.model import backbones


def train_stage(store, splits, config, settings, stop_after_epochs=0, distribution=None):
  """The train stage on a partition Result (or Planned, in a dry run).

  As one of several workers (distribution), the chief runs it through the store and returns
  its Result; the other workers train alongside, store nothing and return None. What several
  workers cannot train, //seg:train refuses first (seg.configs.config.refuse_several).
  """
  image_size = int(splits.manifest["key_record"]["params"]["image_size"])
  weights_file = backbones.weights_file(config.model, image_size, fetch=not store.planning)
  inputs = {"splits": splits,
            "backbone_weights": digest.file_digest(weights_file) if weights_file else None}

  def build(out, run_dir):
    from seg.training import train  # pylint: disable=g-import-not-at-top
    details = train.train_and_validate(config, splits.path, out, run_dir, settings,
                                       backbone_weights_file=weights_file,
                                       stop_after_epochs=stop_after_epochs,
                                       distribution=distribution)
    validation = details["validation"]
    return dict(details, headline="validation IoU %.4f" % validation["iou"],
                metrics={"validation_iou": validation["iou"],
                         "validation_loss": validation["loss"]})

  params = config.record()
  if distribution is None:
    return stage.run(store, "train", params, inputs, settings.record(), build,
                     repeatable=config.model.repeatable)
  return distribution.run_stage(store, "train", params, inputs, settings.record(), build)
