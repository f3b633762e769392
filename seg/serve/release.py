"""The release stage: a model that passed the release gate (seg.serve.release_gate), as the files a
model server loads from a numeric version folder (pipeline.names publishes them as
releases/<name>/<version>), with its record.

Output:
- saved_model.pb, variables/, fingerprint.pb: export's SavedModel with two signatures, each
  returning "class_ids" (int32 [n, h, w]) and calibrated "probabilities" (float32
  [n, h, w, classes]) at the images' size:
  "serving_default": images, uint8 [n, h, w, 3] (export's own signature);
  "encoded": image_bytes, string [n]: JPEG, PNG, GIF or BMP files, decoded to RGB (the first
  frame of a GIF), all of one size, so that REST clients can send files as base64.
- assets.extra/release.json (a SavedModel's folder for files that are not the model; the
  servers load around it): the gate's thresholds and checks, evaluate's metrics, and the
  output digest of every stage the release was made from.
"""

import json
import os

import tensorflow as tf

from pipeline import errors
from pipeline import files
from pipeline import stage
from seg.serve import release_gate
from seg.serve import saved_model_files

RECORD = os.path.join("assets.extra", "release.json")


class Served(tf.Module):
  """Export's SavedModel, loaded, with a second signature that decodes image files."""

  def __init__(self, exported):
    super().__init__()
    self.exported = exported

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  def serve(self, images):
    return self.exported.serve(images)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
  def serve_encoded(self, image_bytes):
    with tf.control_dependencies([tf.debugging.assert_positive(
        tf.size(image_bytes), message="a request holds at least one image")]):
      size = tf.shape(_decode(image_bytes[0]))

    def decode_of_size(data):
      image = _decode(data)
      with tf.control_dependencies([tf.debugging.assert_equal(
          tf.shape(image), size, message="the images of one request must have one size: send "
          "images of other sizes in requests of their own")]):
        return tf.identity(image)

    images = tf.map_fn(decode_of_size, image_bytes,
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return self.serve(images)


def _decode(data):
  """An image file's bytes → uint8 [h, w, 3] (RGB; a GIF's first frame)."""
  return tf.io.decode_image(data, channels=3, expand_animations=False)


def passed(evaluated, gate):
  """(metrics.json's content, [release_gate.Check]) of an evaluate Result (test split) that
  passes a release_gate.Gate; raises errors.CheckFailed naming every bound it missed, with the
  numbers, if it does not."""
  with open(os.path.join(evaluated.path, "metrics.json")) as f:
    metrics = json.load(f)
  checks = release_gate.checks(gate, metrics)
  failed = [c.line() for c in checks if not c.passed]
  if failed:
    raise errors.CheckFailed("the release gate refused the model (evaluate output %s, test split): "
                       "%s. No release was written" % (evaluated.digest[:16], "; ".join(failed)))
  return metrics, checks


def release_stage(store, lineage, saved_model, gate, settings):
  """The release stage. lineage: {stage name: Result} of the stages it is made from, with
  "evaluate" (the test split's) and "export" among them; saved_model: the SavedModel's folder
  in export's output (seg.serve.export.SAVED_MODEL); gate: a release_gate.Gate; settings: the
  pipeline.determinism settings.

  Raises errors.CheckFailed (passed()) before anything is stored if the metrics fail the gate.
  """
  exported = lineage["export"]
  metrics, checks = passed(lineage["evaluate"], gate)

  def build(out, unused_run_dir):
    served = Served(tf.saved_model.load(os.path.join(exported.path, saved_model)))
    saved_model_files.write(served, out, {"serving_default": served.serve,
                                          "encoded": served.serve_encoded})
    os.makedirs(os.path.dirname(os.path.join(out, RECORD)))
    files.write_json(os.path.join(out, RECORD), {
        "thresholds": gate.record(), "checks": [c.line() for c in checks], "metrics": metrics,
        "made_from": {name: r.digest for name, r in lineage.items()}})
    return {"checks": [c.line() for c in checks],
            "headline": "gate passed: " + ("; ".join(c.line() for c in checks) or
                                           "no bound was set")}

  params = {"gate": gate.record(), "saved_model": saved_model}
  return stage.run(store, "release", params, lineage, settings.record(), build)
