"""The export stage's build (seg.serve.export_stage runs it through the store): the trained,
calibrated model in files that stock TensorFlow and Keras load with no reproseg code, with
reproducible bytes.

- saved_model/: a SavedModel whose serving signature takes a uint8 image batch of any size
  ([n, h, w, 3]) and returns "class_ids" (int32 [n, h, w]) and "probabilities" (float32
  [n, h, w, classes], calibrated: the temperature is baked in). The graph is the exact one the
  pipeline runs (seg.model.exact_layers' ops are traced into it), so its masks are predict's, but
  for the fixed-order kernels: a SavedModel holds TensorFlow's own convolutions, so that TF
  Serving and KServe load it without reproseg's op library (serving_settings).
- model.keras: the same weights in Keras' stock layers, [n, size, size, 3] floats in 0..255 →
  calibrated probabilities. Stock layers use the approximate rsqrt of batch norm, so its
  probabilities may differ from the SavedModel's in the last bits.

What would change the bytes from run to run, or with what the process did before, and what is
done about it: for the SavedModel, see seg.serve.saved_model_files; a .keras file carries the save
time (zip entry times and metadata.json's date_saved: dropped) and Python object ids
(config.json's shared_object_id: renumbered in order of appearance). Keras' automatic layer
names (`input_layer_3`) count the layers built before in the process: seg.model.unet names the one
layer Keras named (the encoder's input).
"""

import dataclasses
import json
import os
import zipfile

import keras
import tensorflow as tf

from data_tools import split_reader
from seg.model import factory
from seg.model import temperature
from seg.serve import export_stage
from seg.serve import saved_model_files


# --- The serving function -----------------------------------------------------------------------
class Segmenter(tf.Module):
  """images (uint8, any size) → class ids and calibrated probabilities at that size."""

  def __init__(self, model, scale, image_size):
    super().__init__()
    self.model = model
    self._temperature = float(scale)
    self._image_size = int(image_size)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  def serve(self, images):
    size = tf.shape(images)[1:3]
    # Antialiased bilinear, as close as TensorFlow gets to the partition stage's PIL resize.
    x = tf.image.resize(tf.cast(images, tf.float32), [self._image_size] * 2, antialias=True)
    logits = self.model(x, training=False)
    probabilities = tf.image.resize(tf.nn.softmax(logits / self._temperature, -1), size)
    return {"class_ids": tf.argmax(probabilities, -1, output_type=tf.int32),
            "probabilities": probabilities}


# --- The .keras file with reproducible bytes -----------------------------------------------------
def _renumber_shared_objects(config):
  """config with every shared_object_id (a Python id()) replaced by 1, 2, ... in order."""
  numbers = {}

  def walk(value):
    if isinstance(value, dict):
      return {k: (numbers.setdefault(v, len(numbers) + 1) if k == "shared_object_id" else walk(v))
              for k, v in value.items()}
    if isinstance(value, list):
      return [walk(v) for v in value]
    return value

  return walk(config)


def write_keras(model, path, scratch_path):
  """model.save(), then the zip rewritten without times or object ids."""
  model.save(scratch_path)
  with zipfile.ZipFile(scratch_path) as source, zipfile.ZipFile(path, "w") as target:
    for info in source.infolist():
      data = source.read(info)
      if info.filename == "metadata.json":
        metadata = json.loads(data)
        metadata.pop("date_saved", None)
        data = json.dumps(metadata, sort_keys=True).encode()
      elif info.filename == "config.json":
        data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
      entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
      entry.external_attr = 0o644 << 16
      target.writestr(entry, data, compress_type=info.compress_type)
  os.unlink(scratch_path)


# --- The models ---------------------------------------------------------------------------------
def stock_keras_model(model, model_config, info, settings, scale):
  """The U-Net in Keras' own layers with model's weights, ending in calibrated softmax."""
  stock = factory.for_splits(model_config, info, settings, stock=True)
  stock.set_weights(model.get_weights())
  scaled = keras.layers.Rescaling(1.0 / scale, name="temperature")(stock.output)
  probabilities = keras.layers.Softmax(name="probabilities")(scaled)
  return keras.Model(stock.input, probabilities, name=stock.name + "_calibrated")


def export(model, model_config, info, settings, scale, out_dir):
  """Writes the SavedModel and the .keras file of model into out_dir; scale: the calibrate
  stage's temperature T, which divides the logits."""
  segmenter = Segmenter(model, scale, info["image_size"])
  saved_model_files.write(segmenter, os.path.join(out_dir, export_stage.SAVED_MODEL),
                          {"serving_default": segmenter.serve})
  write_keras(stock_keras_model(model, model_config, info, settings, scale),
              os.path.join(out_dir, export_stage.KERAS_FILE),
              os.path.join(out_dir, "unfixed.keras"))


def serving_settings(settings):
  """The pipeline.determinism.Settings the exported model is built with: settings without the
  fixed-order kernels, whose ops stock TensorFlow does not have (so not portable: they build
  the model only, and the stage key holds the stage's own settings). A served model's
  convolutions are then TensorFlow's (oneDNN's), whose bits follow the server's CPU; its
  weights are the trained ones, bit for bit."""
  return dataclasses.replace(settings, portable=False, fixed_order_kernels=False)


def build(out_dir, splits, train, calibrated, model_config, settings):
  """Writes the export stage's output to out_dir, for partition, train and calibrate Results;
  model_config: the seg.configs.config.ModelConfig the train stage ran with. Returns the
  manifest's details."""
  info = split_reader.split_info(splits.path)
  model = factory.load(train.path, model_config, info, serving_settings(settings))
  fitted = temperature.load(calibrated.path)
  export(model, model_config, info, settings, fitted, out_dir)
  return {"temperature": fitted, "image_size": info["image_size"],
          "classes": info["class_names"]}
