"""A deterministic file of named arrays, for weights and checkpoints.

Layout: the line "reproseg-arrays 1", a line of canonical JSON listing each array's name,
dtype (little-endian numpy code), shape, offset and size, then the raw little-endian bytes
in that order. Nothing else (no time, no path, no library version) goes into the bytes, so
equal arrays give equal files: unlike HDF5 or zip files, whose metadata varies.
"""

import hashlib
import json

import numpy as np

from pipeline import digest
from pipeline import errors
from pipeline import files

MAGIC = b"reproseg-arrays 1\n"


def _little_endian(array):
  array = np.asarray(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
  return array.astype(array.dtype.newbyteorder("<"), copy=False)


def encode(named_arrays):
  """Bytes of [(name, array)] in the format above."""
  header, blobs, offset = [], [], 0
  for name, array in named_arrays:
    array = _little_endian(array)
    data = array.tobytes()
    header.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                   "offset": offset, "nbytes": len(data)})
    blobs.append(data)
    offset += len(data)
  return MAGIC + digest.canonical_json(header) + b"\n" + b"".join(blobs)


def save(path, named_arrays):
  files.write_atomically(path, encode(named_arrays))


def load(path):
  """[(name, array)] from a file written by save()."""
  with open(path, "rb") as f:
    data = f.read()
  if not data.startswith(MAGIC):
    raise errors.Error("%s is not a reproseg arrays file" % path)
  line_end = data.index(b"\n", len(MAGIC))
  header = json.loads(data[len(MAGIC):line_end])
  body = memoryview(data)[line_end + 1:]
  out = []
  for entry in header:
    raw = body[entry["offset"]:entry["offset"] + entry["nbytes"]]
    out.append((entry["name"], np.frombuffer(raw, dtype=np.dtype(entry["dtype"]))
                .reshape(entry["shape"]).copy()))
  return out


def fingerprint(named_arrays):
  """{"variables": {name: sha256}, "digest": sha256 of all}: names, dtypes, shapes, bytes."""
  per = {}
  total = hashlib.sha256()
  for name, array in named_arrays:
    array = _little_endian(array)
    h = hashlib.sha256(digest.canonical_json([name, array.dtype.str, list(array.shape)]))
    h.update(array.tobytes())
    per[name] = h.hexdigest()
    total.update(bytes.fromhex(per[name]))
  return {"digest": total.hexdigest(), "variables": per}
