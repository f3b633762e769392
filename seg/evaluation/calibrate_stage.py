"""The calibrate stage: its key's parameters and inputs, and a build that fits the temperature
with seg.evaluation.calibrate, imported only when it builds. Free of TensorFlow, so that a dry
run (pipeline.planning) plans it without starting TensorFlow.
"""

from pipeline import stage
from seg.model import calibration_error

# The golden-section search for T, on log T: its bounds and steps
# (seg.model.metrics.fit_temperature).
SEARCH = {"low": 0.05, "high": 20.0, "iterations": 48}


def calibrate_stage(store, splits, train, model_config, eval_batch_size, settings):
  """The calibrate stage on partition and train Results (or Planned, in a dry run): the model
  of a seg.configs.config.ModelConfig run over the calibration split in batches of
  eval_batch_size examples."""

  def build(out, unused_run_dir):
    from seg.evaluation import calibrate  # pylint: disable=g-import-not-at-top
    return calibrate.build(out, splits, train, model_config, eval_batch_size, settings, SEARCH)

  params = {"model": model_config.record(), "eval_batch_size": eval_batch_size,
            "method": "temperature", "ece_bins": calibration_error.BINS, "search": SEARCH}
  return stage.run(store, "calibrate", params, {"splits": splits, "train": train},
                   settings.record(), build)
