"""The runtime record that goes into every stage key: what, besides code, flags and
inputs, can change a stage's bytes."""

import importlib.metadata
import os
import platform
import zlib

from pipeline import code
from pipeline import digest

LOCK_FILE = os.path.join(code.ROOT, "requirements.lock")
PACKAGES = ("tensorflow", "keras", "numpy", "pillow", "absl-py", "framework-reproducibility")


def lock_digest():
  try:
    return digest.file_digest(LOCK_FILE)
  except FileNotFoundError:
    return None


def runtime_record(determinism_record):
  """A JSON-able record of the interpreter, packages and determinism switches in force."""
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
      "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
      "machine": platform.machine(),
      "packages": versions,
      "requirements_lock": lock_digest(),
      # Python's gzip output depends on the zlib it runs with.
      "zlib": zlib.ZLIB_RUNTIME_VERSION,
      "determinism": determinism_record,
  }
