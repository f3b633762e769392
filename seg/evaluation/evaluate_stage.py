"""The evaluate stage: its key's parameters and inputs, and a build that measures the model with
seg.evaluation.evaluate, imported only when it builds. Free of TensorFlow, so that a dry run
(pipeline.planning) plans it without starting TensorFlow.
"""

from pipeline import stage
from seg.evaluation import figures
from seg.model import calibration_error


def evaluate_stage(store, splits, train, calibrated, model_config, eval_batch_size, settings,
                   split="test", gallery_size=figures.GALLERY_SIZE):
  """The evaluate stage on partition, train and calibrate Results (or Planned, in a dry run):
  the model of a seg.configs.config.ModelConfig run over a split in batches of eval_batch_size
  examples. Its test metrics also go to the train run's TensorBoard logs."""

  def build(out, run_dir):
    from seg.evaluation import evaluate  # pylint: disable=g-import-not-at-top
    return evaluate.build(out, run_dir, store.run_dir(train.key), splits, train, calibrated,
                          model_config, eval_batch_size, settings, split, gallery_size)

  params = {"model": model_config.record(), "eval_batch_size": eval_batch_size, "split": split,
            "gallery_size": gallery_size, "ece_bins": calibration_error.BINS}
  inputs = {"splits": splits, "train": train, "calibrate": calibrated}
  return stage.run(store, "evaluate", params, inputs, settings.record(), build)
