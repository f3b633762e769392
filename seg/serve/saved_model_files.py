"""SavedModel files with reproducible bytes: what tf.saved_model.save writes, with what would
change from run to run, or with what the process did before, made fixed.

saved_model.pb names each traced function with a process-wide counter (`__inference_serve_6625`:
renamed to its rank among the traced functions), each control-flow function with its op's
process-wide id (`map_while_body_28393`, a tf.map_fn's loop body: renamed to its rank among
those, here and inside the names derived from it), and each captured tensor's placeholder
with its process-wide id (renumbered by rank); each function call's `config_proto` holds the
exporting process's thread-pool sizes (--intra_op_threads, --inter_op_threads: cleared, as a
process with TensorFlow's own pools writes them, since a server sizes its own); fingerprint.pb
carries a random uuid (set here from the file's own hashes) and hashes of saved_model.pb
(recomputed after the renaming).
"""

import contextlib
import hashlib
import os
import re

from absl import logging
import tensorflow as tf
from google.protobuf import descriptor
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting


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
# Any other library function named with a number: a control-flow function's op name and id.
_COUNTED_NAME = re.compile(r"^(.+)_(\d+)$")


def _ranked_names(function_names, pattern):
  """{name: name with its number replaced by its rank (1, 2, ...) among function_names that
  match pattern}: the numbers count what the process made before, their order does not."""
  counted = sorted((int(m.group(2)), m.group(1), m.group(0)) for m in
                   map(pattern.match, function_names) if m)
  return {name: "%s_%d" % (base, rank) for rank, (_, base, name) in enumerate(counted, 1)}


def _renamer(names):
  """A function that replaces, in a str, each key of names, wherever it occurs not followed
  by a digit (`map_while_map_while_cond_28392___redundant_placeholder0`), by its value; it
  returns any other value (a map's integer key) as it is."""
  found = re.compile("(%s)(?!\\d)" % "|".join(
      re.escape(n) for n in sorted(names, key=len, reverse=True)))
  return lambda value: (found.sub(lambda m: names[m.group(1)], value)
                        if names and isinstance(value, str) else value)


def _rename_strings(message, rename):
  """Replaces, in place, every string field, repeated string and map key or value of a
  protobuf message tree by rename(it)."""
  for field, value in message.ListFields():
    if field.message_type and field.message_type.GetOptions().map_entry:
      message_values = field.message_type.fields_by_name["value"].message_type is not None
      entries = []  # copied out, then put back: a new key may be another entry's old one
      for key in list(value):
        entry = value[key]
        if message_values:
          entry = type(entry)()
          entry.CopyFrom(value[key])
          _rename_strings(entry, rename)
        entries.append((rename(key), entry))
      value.clear()
      for key, entry in entries:
        if message_values:
          value[key].CopyFrom(entry)
        else:
          value[key] = rename(entry)
    elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
      for item in (value if field.is_repeated else [value]):
        _rename_strings(item, rename)
    elif field.type == descriptor.FieldDescriptor.TYPE_STRING:
      if field.is_repeated:
        value[:] = [rename(v) for v in value]
      else:
        setattr(message, field.name, rename(value))


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


def _clear_thread_pools(graph_def):
  """Clears, in place, the pool sizes in every function call's `config_proto` attribute (a
  serialized ConfigProto of the exporting process); a config without them is left as it is."""
  for attrs in _attr_maps(graph_def):
    if "config_proto" not in attrs:
      continue
    config = config_pb2.ConfigProto.FromString(attrs["config_proto"].s)
    if config.intra_op_parallelism_threads or config.inter_op_parallelism_threads:
      config.ClearField("intra_op_parallelism_threads")
      config.ClearField("inter_op_parallelism_threads")
      attrs["config_proto"].s = config.SerializeToString(deterministic=True)


def _rename_functions(saved_model_dir):
  """saved_model.pb with each traced function named by its rank among the saved ones, in
  tracing order (`__inference_serve_6625` → `__inference_serve_2`), each other numbered
  function by its rank among those (`map_while_body_28393` → `map_while_body_2`), the library
  sorted by name, captured tensors' ids renumbered (_renumber_captures) and the pool sizes
  cleared (_clear_thread_pools): the file no longer counts what the process traced before,
  nor names its pools."""
  path = os.path.join(saved_model_dir, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  library = saved_model.meta_graphs[0].graph_def.library
  traced = _ranked_names([f.signature.name for f in library.function], _TRACED_NAME)
  counted = _ranked_names([f.signature.name for f in library.function
                           if f.signature.name not in traced], _COUNTED_NAME)
  _rename_strings(saved_model, _renamer({**traced, **counted}))
  functions = sorted(library.function, key=lambda f: f.signature.name)
  del library.function[:]
  library.function.extend(functions)
  _renumber_captures(saved_model.meta_graphs[0].graph_def)
  _clear_thread_pools(saved_model.meta_graphs[0].graph_def)
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


def write(module, path, signatures):
  """tf.saved_model.save(module, path, signatures), then the files made reproducible.

  signatures: {signature name: tf.function with an input_signature, or its concrete function}.
  """
  with _info_lines_hidden():
    tf.saved_model.save(module, path, signatures=signatures)
  _rename_functions(path)
  _write_fingerprint(path)
