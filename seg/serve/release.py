"""The release stage's build (seg.serve.release_stage runs it through the store): a model that
passed the release gate (seg.serve.release_gate), as the files a model server loads from a
numeric version folder (pipeline.names publishes them as releases/<name>/<version>), with its
record.

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

import os

import tensorflow as tf

from pipeline import files
from seg.serve import release_stage
from seg.serve import saved_model_files


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


def write(out_dir, saved_model_dir, record):
  """Writes the release of export's SavedModel (its folder: saved_model_dir) to out_dir, with
  record (JSON-able) as seg.serve.release_stage.RECORD."""
  served = Served(tf.saved_model.load(saved_model_dir))
  saved_model_files.write(served, out_dir, {"serving_default": served.serve,
                                            "encoded": served.serve_encoded})
  os.makedirs(os.path.dirname(os.path.join(out_dir, release_stage.RECORD)))
  files.write_json(os.path.join(out_dir, release_stage.RECORD), record)
