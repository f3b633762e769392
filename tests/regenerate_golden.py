"""Writes tests/golden/ from fresh native runs: the tiny pipeline's stage digests and export
digest (tiny_pipeline.json), after checking that two workers train the same bits as one
process; the real-shape training steps' digests (step_digests.json); and the tiny search's
tune output and the sampler's digest (tune.json). Portable bits are one set for every x86-64
CPU with AVX2 and FMA, so any such CPU writes them. (The kernels' own digests,
fixed_order.json: ./dev bazel run //tests:fixed_order_test -- --write_golden.)

  ./dev bazel run //tests:regenerate_golden

A deliberate reproducibility break: say why in CHANGELOG.md, in the same commit.
"""

import json
import os
import sys
import tempfile

from pipeline import determinism
from seg.training import step_digests
from tests import synthetic_search as synthetic
from tests import tiny_pipeline as tiny


def write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")
  print("wrote", path)


def pipeline_outputs():
  """({stage: output digest}, export digest) of the tiny pipeline in a fresh store."""
  with tempfile.TemporaryDirectory() as store:
    result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store])
    exported = tiny.run("seg/export", tiny.TINY + ["--store=" + store])
  if result.returncode or exported.returncode:
    sys.exit(result.stderr + exported.stderr)
  outputs = tiny.outputs(result.stdout)
  if sorted(outputs) != sorted(tiny.STAGES):
    sys.exit("expected a line per stage, got:\n" + result.stdout)
  return outputs, tiny.outputs(exported.stdout)["export"]


def main():
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  if not workspace:
    sys.exit("run me with: ./dev bazel run //tests:regenerate_golden")
  outputs, export = pipeline_outputs()
  with tempfile.TemporaryDirectory() as store:
    workers = tiny.run_workers(tiny.TINY + ["--store=" + store])
  if any(status for status, _, _ in workers):
    sys.exit("the two-worker run failed:\n" + "\n".join(err for _, _, err in workers))
  if tiny.outputs(workers[0][1])["train"] != outputs["train"]:
    sys.exit("two workers trained other bits than one process: nothing written")
  folder = os.path.join(workspace, "tests", "golden")
  os.makedirs(folder, exist_ok=True)
  written_on = determinism.cpu_model()
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN)),
             {"flags": tiny.TINY, "written_on": written_on, "outputs": outputs,
              "export": export})
  with tempfile.TemporaryDirectory() as scratch:
    search = tiny.tune_digests(os.path.join(scratch, "store"))
    sampler = synthetic.digest(synthetic.run(synthetic.space(scratch)))
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN_TUNE)),
             {"written_on": written_on, "sampler": sampler, "tiny_search": search})
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN_STEPS)),
             {"written_on": written_on,
              "real_shapes": tiny.step_digests(step_digests.REAL_SHAPES),
              "emulated": tiny.step_digests(step_digests.EMULATED)})


if __name__ == "__main__":
  main()
