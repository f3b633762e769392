"""The calibrate stage's build (seg.evaluation.calibrate_stage runs it through the store):
temperature scaling fitted on the calibration split.

One scalar T > 0 divides the logits; it is the T that minimises the calibration split's
per-pixel negative log-likelihood (seg.model.metrics.fit_temperature: a bounded search, no
randomness). Dividing by T keeps every argmax, so masks do not change; only the
probabilities do. Output: calibration.json (T, NLL and ECE before and after, the reliability
bins) and reliability.png.
"""

import os

from absl import logging

from data_tools import split_reader
from pipeline import files
from seg.drawing import canvas
from seg.evaluation import figures
from seg.evaluation import inference
from seg.model import factory
from seg.model import metrics
from seg.model import temperature

def calibrate(outputs, batch_size, search):
  """{temperature, nll, ece, reliability} of inference.SplitOutputs of the calibration split;
  search: metrics.fit_temperature's bounds and steps.

  Raises errors.Error if a logit is not finite (the train output diverged).
  """
  outputs.check_finite("calibrate")
  batches = outputs.batches(batch_size)
  fitted = metrics.fit_temperature(batches, **search)
  before, after = metrics.reliability(batches, 1.0), metrics.reliability(batches, fitted)
  return {"temperature": fitted,
          "nll": {"before": metrics.nll(batches, 1.0), "after": metrics.nll(batches, fitted)},
          "ece": {"before": before["ece"], "after": after["ece"]},
          "reliability": {"before": before, "after": after},
          "examples": len(outputs.pet_ids), "pixels": int(outputs.masks.size)}


def write(report, out_dir):
  files.write_json(os.path.join(out_dir, temperature.CALIBRATION_FILE), report)
  canvas.save(figures.reliability_diagram(
      report["reliability"]["before"], report["reliability"]["after"], report["temperature"],
      "Reliability on the calibration split (%d pets, %d pixels)"
      % (report["examples"], report["pixels"])), os.path.join(out_dir, "reliability.png"))


def build(out_dir, splits, train, model_config, batch_size, settings, search):
  """Writes the calibrate stage's output to out_dir, for partition and train Results: the model
  of a seg.configs.config.ModelConfig run over the calibration split in batches of batch_size
  examples, the temperature fitted by search (seg.evaluation.calibrate_stage.SEARCH); returns
  the manifest's details."""
  info = split_reader.split_info(splits.path)
  model = factory.load(train.path, model_config, info, settings)
  outputs = inference.run_on_split(model, splits.path, "calibration", batch_size)
  report = calibrate(outputs, batch_size, search)
  write(report, out_dir)
  logging.info("calibrate: T = %.4f; ECE %.4f → %.4f; NLL %.4f → %.4f", report["temperature"],
               report["ece"]["before"], report["ece"]["after"], report["nll"]["before"],
               report["nll"]["after"])
  details = {k: report[k] for k in ("temperature", "nll", "ece", "examples")}
  details["headline"] = "T %.3f, ECE %.4f → %.4f" % (
      report["temperature"], report["ece"]["before"], report["ece"]["after"])
  details["metrics"] = {"temperature": report["temperature"],
                        "ece_before": report["ece"]["before"],
                        "ece_after": report["ece"]["after"]}
  return details
