"""The environment of a Python child process that runs a module of this workspace."""

import os
import sys


def environment(base=None):
  """base (default os.environ) with PYTHONPATH set to this process's module path (sys.path's
  non-empty entries, absolute), so that the child imports what this process does: from the
  runfiles tree under `bazel run`, from the source tree as `PYTHONPATH=. python ...`."""
  path = []
  for entry in sys.path:
    if entry and os.path.abspath(entry) not in path:
      path.append(os.path.abspath(entry))
  return dict(os.environ if base is None else base, PYTHONPATH=os.pathsep.join(path))
