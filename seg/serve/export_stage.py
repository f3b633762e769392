"""The export stage: its key's parameters and inputs, the layout of its output, and a build
that exports with seg.serve.export, imported only when it builds. Free of TensorFlow, so that
a dry run (pipeline.planning) plans it without starting TensorFlow.
"""

from pipeline import stage

SAVED_MODEL = "saved_model"  # the output's folders and files
KERAS_FILE = "model.keras"


def export_stage(store, splits, train, calibrated, model_config, settings):
  """The export stage on partition, train and calibrate Results (or Planned, in a dry run);
  model_config: the seg.configs.config.ModelConfig the train stage ran with."""

  def build(out, unused_run_dir):
    from seg.serve import export  # pylint: disable=g-import-not-at-top
    return export.build(out, splits, train, calibrated, model_config, settings)

  inputs = {"splits": splits, "train": train, "calibrate": calibrated}
  return stage.run(store, "export", {"model": model_config.record()}, inputs, settings.record(),
                   build)
