"""Rewrites tests/golden/ from fresh native runs on a CPU with AVX-512: the tiny pipeline's
stage digests and export digest in both instruction-set classes (native, and oneDNN capped at
AVX2; tiny_pipeline.json), after checking that two workers train the same bits as
one process, and the real-shape training steps' digests in both classes (step_digests.json).

  ./dev bazel run //tests:regenerate_golden

A deliberate reproducibility break: say why in CHANGELOG.md, in the same commit.
"""

import json
import os
import sys
import tempfile

from pipeline import determinism
from seg import step_digests
from tests import tiny_pipeline as tiny


def write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")
  print("wrote", path)


def pipeline_outputs(extra=()):
  """({stage: output digest}, export digest) of the tiny pipeline in a fresh store."""
  with tempfile.TemporaryDirectory() as store:
    result = tiny.run(tiny.PIPELINE, tiny.TINY + list(extra) + ["--store=" + store])
    exported = tiny.run("seg/export", tiny.TINY + list(extra) + ["--store=" + store])
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
  if tiny.isa_class() != "AVX-512":
    sys.exit("the golden digests of both instruction-set classes need a CPU with AVX-512")
  outputs, export = pipeline_outputs(tiny.CLASS_FLAGS["AVX-512"])
  avx2_outputs, avx2_export = pipeline_outputs(tiny.CLASS_FLAGS["AVX2"])
  with tempfile.TemporaryDirectory() as store:
    workers = tiny.run_workers(tiny.TINY + ["--store=" + store])
  if any(status for status, _, _ in workers):
    sys.exit("the two-worker run failed:\n" + "\n".join(err for _, _, err in workers))
  if tiny.outputs(workers[0][1])["train"] != outputs["train"]:
    sys.exit("two workers trained other bits than one process: nothing written")
  folder = os.path.join(workspace, "tests", "golden")
  os.makedirs(folder, exist_ok=True)
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN)),
             {"flags": tiny.TINY, "written_on": determinism.cpu_model(),
              "outputs_by_isa_class": {"AVX-512": outputs, "AVX2": avx2_outputs},
              "export_by_isa_class": {"AVX-512": export, "AVX2": avx2_export}})
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN_STEPS)),
             {name: {"real_shapes": tiny.step_digests(step_digests.REAL_SHAPES, extra=extra),
                     "emulated": tiny.step_digests(step_digests.EMULATED, extra=extra)}
              for name, extra in tiny.CLASS_FLAGS.items()})


if __name__ == "__main__":
  main()
