"""The export stage: the trained, calibrated model in files that stock TensorFlow and Keras
load with no reproseg code, with reproducible bytes.

- saved_model/: a SavedModel whose serving signature takes a uint8 image batch of any size
  ([n, h, w, 3]) and returns "class_ids" (int32 [n, h, w]) and "probabilities" (float32
  [n, h, w, classes], calibrated: the temperature is baked in). The graph is the exact one the
  pipeline runs (seg.exact_layers' ops are traced into it), so its masks are predict's.
- model.keras: the same weights in Keras' stock layers, [n, size, size, 3] floats in 0..255 →
  calibrated probabilities. Stock layers use the approximate rsqrt of batch norm, so its
  probabilities may differ from the SavedModel's in the last bits.

What would change the bytes from run to run, or with what the process did before, and what is
done about it: saved_model.pb names each traced function with a process-wide counter
(`__inference_serve_6625`: renamed to its rank among the saved functions) and each captured
tensor's placeholder with its process-wide id (renumbered by rank); fingerprint.pb
carries a random uuid (set here from the file's own hashes) and hashes of saved_model.pb
(recomputed after the renaming); a .keras file carries the save time (zip entry times and
metadata.json's date_saved: dropped) and Python object ids (config.json's shared_object_id:
renumbered in order of appearance). Keras' automatic layer names (`input_layer_3`) count the
layers built before in the process: seg.unet names the one layer Keras named (the encoder's
input).
"""

import contextlib
import hashlib
import json
import os
import re
import zipfile

from absl import logging
import keras
import tensorflow as tf
from google.protobuf import descriptor
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

from pipeline import stage
from seg import calibration
from seg import input_pipeline
from seg import models

SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"


# --- The serving function -----------------------------------------------------------------------
class Segmenter(tf.Module):
  """images (uint8, any size) → class ids and calibrated probabilities at that size."""

  def __init__(self, model, temperature, image_size):
    super().__init__()
    self.model = model
    self._temperature = float(temperature)
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


# --- Files with reproducible bytes --------------------------------------------------------------
def _write_fingerprint(saved_model_dir):
  """fingerprint.pb anew from saved_model.pb (TensorFlow's own hashes of it), its uuid (random
  by design) replaced by a digest of the file's other fields."""
  fingerprint = fingerprint_pb2.FingerprintDef()
  fingerprint.ParseFromString(fingerprinting.CreateFingerprintDef(saved_model_dir))
  fingerprint.ClearField("uuid")
  content = fingerprint.SerializeToString(deterministic=True)
  fingerprint.uuid = str(int.from_bytes(hashlib.sha256(content).digest()[:16], "big"))
  with open(os.path.join(saved_model_dir, "fingerprint.pb"), "wb") as f:
    f.write(fingerprint.SerializeToString(deterministic=True))


# A traced function's name: its Python name and tf.function's process-wide counter.
_TRACED_NAME = re.compile(r"^(__inference_.+)_(\d+)$")


def _rename_strings(message, names):
  """Replaces, in place, every string field, repeated string and map key or value of a
  protobuf message tree that is a key of `names` by its value."""
  for field, value in message.ListFields():
    if field.message_type and field.message_type.GetOptions().map_entry:
      message_values = field.message_type.fields_by_name["value"].message_type is not None
      entries = []  # copied out, then put back: a new key may be another entry's old one
      for key in list(value):
        entry = value[key]
        if message_values:
          entry = type(entry)()
          entry.CopyFrom(value[key])
          _rename_strings(entry, names)
        entries.append((names.get(key, key), entry))
      value.clear()
      for key, entry in entries:
        if message_values:
          value[key].CopyFrom(entry)
        else:
          value[key] = names.get(entry, entry)
    elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
      for item in (value if field.is_repeated else [value]):
        _rename_strings(item, names)
    elif field.type == descriptor.FieldDescriptor.TYPE_STRING:
      if field.is_repeated:
        value[:] = [names.get(v, v) for v in value]
      elif value in names:
        setattr(message, field.name, names[value])


def _attr_maps(graph_def):
  """Every node's (and function argument's) attr map in a GraphDef and its library."""
  for node in graph_def.node:
    yield node.attr
  for function in graph_def.library.function:
    for node in function.node_def:
      yield node.attr
    for argument in function.arg_attr.values():
      yield argument.attr


def _renumber_captures(graph_def):
  """A captured tensor's placeholder carries the tensor's process-wide id as its
  `_user_specified_name` ("6629"): renumber those ids by rank, in place."""
  holders = [attrs["_user_specified_name"] for attrs in _attr_maps(graph_def)
             if "_user_specified_name" in attrs and attrs["_user_specified_name"].s.isdigit()]
  ranks = {uid: rank for rank, uid in enumerate(sorted({int(h.s) for h in holders}), 1)}
  for holder in holders:
    holder.s = b"%d" % ranks[int(holder.s)]


def _rename_traced_functions(saved_model_dir):
  """saved_model.pb with each traced function named by its rank among the saved ones, in
  tracing order (`__inference_serve_6625` → `__inference_serve_2`), the library sorted by
  name, and captured tensors' ids renumbered (_renumber_captures): the file no longer counts
  what the process traced before."""
  path = os.path.join(saved_model_dir, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  library = saved_model.meta_graphs[0].graph_def.library
  traced = sorted((int(m.group(2)), m.group(1), m.group(0)) for m in
                  (_TRACED_NAME.match(f.signature.name) for f in library.function) if m)
  names = {name: "%s_%d" % (base, rank) for rank, (_, base, name) in enumerate(traced, 1)}
  _rename_strings(saved_model, names)
  functions = sorted(library.function, key=lambda f: f.signature.name)
  del library.function[:]
  library.function.extend(functions)
  _renumber_captures(saved_model.meta_graphs[0].graph_def)
  with open(path, "wb") as f:
    f.write(saved_model.SerializeToString(deterministic=True))


@contextlib.contextmanager
def _info_lines_hidden():
  """absl's INFO lines off: tf.saved_model.save logs shard timings and staging paths there."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def write_saved_model(segmenter, path):
  with _info_lines_hidden():
    tf.saved_model.save(segmenter, path, signatures={"serving_default": segmenter.serve})
  _rename_traced_functions(path)
  _write_fingerprint(path)


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
def stock_keras_model(model, model_config, info, settings, temperature):
  """The U-Net in Keras' own layers with model's weights, ending in calibrated softmax."""
  stock = models.for_splits(model_config, info, settings, stock=True)
  stock.set_weights(model.get_weights())
  scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(stock.output)
  probabilities = keras.layers.Softmax(name="probabilities")(scaled)
  return keras.Model(stock.input, probabilities, name=stock.name + "_calibrated")


def export(model, model_config, info, settings, temperature, out_dir):
  write_saved_model(Segmenter(model, temperature, info["image_size"]),
                    os.path.join(out_dir, SAVED_MODEL))
  write_keras(stock_keras_model(model, model_config, info, settings, temperature),
              os.path.join(out_dir, KERAS_FILE), os.path.join(out_dir, "unfixed.keras"))


def export_stage(store, splits, train, calibrated, model_config, settings):
  """The export stage on partition, train and calibrate Results; model_config: the
  seg.config.ModelConfig the train stage ran with."""

  def build(out, unused_run_dir):
    info = input_pipeline.split_info(splits.path)
    model = models.load(train.path, model_config, info, settings)
    temperature = calibration.load_temperature(calibrated.path)
    export(model, model_config, info, settings, temperature, out)
    return {"temperature": temperature, "image_size": info["image_size"],
            "classes": info["class_names"]}

  inputs = {"splits": splits, "train": train, "calibrate": calibrated}
  return stage.run(store, "export", {"model": model_config.record()}, inputs, settings.record(),
                   build)
