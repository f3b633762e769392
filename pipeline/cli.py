"""What every stage's main shares: the --store flags and plain error reports."""

import os
import sys

from absl import app
from absl import flags

from pipeline import errors
from pipeline import stage
from pipeline import store as storelib

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "store", None,
    "Root of the content-addressed store. Default: $REPROSEG_STORE, else "
    "$XDG_CACHE_HOME/reproseg/store, else ~/.cache/reproseg/store; the same under `bazel run` "
    "and in a shell. Its location is not part of any stage key.")
flags.DEFINE_bool(
    "verify_store", False,
    "On a cache hit, recompute the stored output's digest and fail if its bytes changed.")


def open_store():
  return storelib.Store(FLAGS.store, verify_on_hit=FLAGS.verify_store)


def run(function):
  """app.run(main) for a stage: main takes no positional arguments, calls function(), prints
  each stage result it returns, and reports errors.Error as one line, exit status 1."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError("unexpected arguments %s: every input is a --flag (see --help)"
                           % " ".join(argv[1:]))
    try:
      results = function()
    except errors.Error as e:
      print("error: %s" % e, file=sys.stderr)
      sys.exit(1)
    for result in results:
      stage.report(result)

  chdir_to_working_directory()
  app.run(main)


def chdir_to_working_directory():
  """`bazel run` starts binaries in their runfiles tree; relative paths in flags (--source,
  --store, --flagfile, ...) mean the folder the user ran it from."""
  if os.environ.get("BUILD_WORKING_DIRECTORY"):
    os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
