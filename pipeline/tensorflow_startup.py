"""TensorFlow's C++ start-up lines (the oneDNN and CPU-feature notices, CUDA probing on a
machine without a GPU), kept off the terminal unless asked for.

They are written by native code straight to file descriptor 2, before TensorFlow reads
TF_CPP_MIN_LOG_LEVEL (in TF 2.21 that variable does not silence them), so quiet() captures the
descriptor itself while TensorFlow starts and then replays every line that is not one of the
known notices: a real error still shows. It also sets TF_CPP_MIN_LOG_LEVEL=1 for the rest of
the run, which hides TensorFlow's later INFO lines (e.g. TFRecordDataset's buffer size) and
keeps its warnings and errors.
"""

import contextlib
import os
import re
import sys
import tempfile

from absl import flags

flags.DEFINE_bool(
    "tensorflow_startup_log", False,
    "Show TensorFlow's C++ start-up lines (oneDNN and CPU-feature notices, CUDA probing). "
    "Hidden by default, and shown whenever TF_CPP_MIN_LOG_LEVEL is set; other lines always "
    "show.")

# The notices TensorFlow 2.21 prints on every start; nothing else is dropped.
NOTICES = re.compile(
    r"port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions:"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|^WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|^fwr13y\.d9m\.tensorflow\.enable_determinism .* has been applied")


# The user's own setting, read before quiet() sets one.
_USER_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def shown():
  return (_USER_LEVEL is not None or
          (flags.FLAGS.is_parsed() and flags.FLAGS.tensorflow_startup_log))


@contextlib.contextmanager
def quiet():
  """Runs the block with fd 2 captured; then writes its lines back, the notices left out."""
  if shown():
    yield
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"  # INFO off, warnings and errors on
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
              if not NOTICES.search(line)]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()
