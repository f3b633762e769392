"""Rewrites tests/golden/tiny_pipeline.json from a fresh run of the tiny pipeline.

  ./dev bazel run //tests:regenerate_golden

A deliberate reproducibility break: say why in CHANGELOG.md, in the same commit.
"""

import json
import os
import sys
import tempfile

from pipeline import determinism
from tests import tiny_pipeline as tiny


def main():
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  if not workspace:
    sys.exit("run me with: ./dev bazel run //tests:regenerate_golden")
  with tempfile.TemporaryDirectory() as store:
    result = tiny.run("seg/train", tiny.TINY + ["--store=" + store])
  if result.returncode:
    sys.exit(result.stderr)
  outputs = tiny.outputs(result.stdout)
  if sorted(outputs) != sorted(tiny.STAGES):
    sys.exit("expected a line per stage, got:\n" + result.stdout)
  golden = {"flags": tiny.TINY, "outputs": outputs, "written_on": determinism.cpu_model()}
  path = os.path.join(workspace, "tests", "golden", "tiny_pipeline.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(golden, f, indent=2, sort_keys=True)
    f.write("\n")
  print("wrote %s:\n%s" % (path, json.dumps(outputs, indent=2)))


if __name__ == "__main__":
  main()
