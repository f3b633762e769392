"""The temperature of a calibrate output (seg.evaluation.calibrate fits it): the T > 0 that
divides the logits, which evaluate applies and export bakes into the served model."""

import json
import os

CALIBRATION_FILE = "calibration.json"  # in a calibrate output; "temperature" holds T


def load(calibration_dir):
  """T, a float, from the calibrate output at calibration_dir."""
  with open(os.path.join(calibration_dir, CALIBRATION_FILE)) as f:
    return json.load(f)["temperature"]
