"""How a user runs a reproseg binary, for the lines that name one (the summary's `next:`, the
fix of a damaged output): `./dev bazel run TARGET -- ARGS` (`bazel run` in a Nix shell), or,
from the flake's packages, whose wrappers set REPROSEG_PACKAGED=1, the command on PATH.

PACKAGED_NAMES is the one map of a Bazel target to its packaged command; flake.nix's
stageScripts makes the same wrappers (tests/nix_test.py checks both). No stage key holds this
module: what a line suggests changes no output.
"""

import os

PACKAGED_NAMES = {
    "//seg:train": "reproseg-train",
    "//seg:calibrate": "reproseg-calibrate",
    "//seg:evaluate": "reproseg-evaluate",
    "//seg:export": "reproseg-export",
    "//seg:predict": "reproseg-predict",
    "//seg:release": "reproseg-release",
    "//seg:tune": "reproseg-tune",
    "//data_tools:download": "reproseg-download",
    "//data_tools:partition": "reproseg-partition",
    "//pipeline:store": "reproseg-store",
}
PACKAGED_VARIABLE = "REPROSEG_PACKAGED"


def packaged():
  """Whether this process runs from the flake's packages (a wrapper set REPROSEG_PACKAGED=1)."""
  return os.environ.get(PACKAGED_VARIABLE) == "1"


def command(target, arguments=""):
  """The command line that runs a Bazel target with arguments (one string, quoted already):
  "reproseg-NAME ARGS" from the packages, else "./dev bazel run TARGET -- ARGS" ("bazel run"
  in a Nix shell)."""
  if packaged():
    return PACKAGED_NAMES[target] + (" " + arguments if arguments else "")
  bazel = "bazel" if os.environ.get("IN_NIX_SHELL") else "./dev bazel"
  return "%s run %s%s" % (bazel, target, " -- " + arguments if arguments else "")
