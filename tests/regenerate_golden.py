"""Writes tests/golden/ from fresh native runs on a CPU with AVX-512: the tiny pipeline's
stage digests and export digest in this CPU's two instruction-set classes (its own AVX-512
class, and oneDNN capped at AVX2; tiny_pipeline.json), after checking that two workers train
the same bits as one process, the real-shape training steps' digests in both classes
(step_digests.json), and the tiny search's tune output (AVX2 class) and the sampler's digest
(tune.json). Other CPUs' AVX-512 classes in these files are kept: run it on each.

  ./dev bazel run //tests:regenerate_golden

A deliberate reproducibility break: say why in CHANGELOG.md, in the same commit.
"""

import json
import os
import sys
import tempfile

from pipeline import determinism
from seg import step_digests
from tests import synthetic_search as synthetic
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


def _read(path):
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _update(path, entries, keep_others):
  """Updates the JSON object at path (created if missing) with entries, at the top level and
  one level down, so that another CPU's classes are kept if keep_others; writes it."""
  value = _read(path) if keep_others else {}
  for name, entry in entries.items():
    if isinstance(entry, dict) and isinstance(value.get(name), dict):
      value[name].update(entry)
    else:
      value[name] = entry
  write_json(path, value)


def main():
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  if not workspace:
    sys.exit("run me with: ./dev bazel run //tests:regenerate_golden")
  if not tiny.has_avx512():
    sys.exit("the golden digests of both instruction-set classes need a CPU with AVX-512")
  classes = {tiny.isa_class(flags): flags for flags in tiny.CLASS_FLAGS.values()}
  runs = {name: pipeline_outputs(flags) for name, flags in classes.items()}
  with tempfile.TemporaryDirectory() as store:
    workers = tiny.run_workers(tiny.TINY + ["--store=" + store])
  if any(status for status, _, _ in workers):
    sys.exit("the two-worker run failed:\n" + "\n".join(err for _, _, err in workers))
  if tiny.outputs(workers[0][1])["train"] != runs[tiny.isa_class()][0]["train"]:
    sys.exit("two workers trained other bits than one process: nothing written")
  folder = os.path.join(workspace, "tests", "golden")
  os.makedirs(folder, exist_ok=True)
  pipeline_path = os.path.join(folder, os.path.basename(tiny.GOLDEN))
  # The AVX2 class is every CPU's: if its digests change, the code changed the bits, and the
  # other CPUs' AVX-512 digests are stale too.
  keep = _read(pipeline_path).get("outputs_by_isa_class", {}).get("AVX2") == runs["AVX2"][0]
  if not keep:
    print("the AVX2 class's digests are new: other CPUs' AVX-512 classes are dropped; run this "
          "on each of them")
  written_on = {name: determinism.cpu_model() for name in classes}
  _update(pipeline_path, {
      "flags": tiny.TINY, "written_on": written_on,
      "outputs_by_isa_class": {name: outputs for name, (outputs, _) in runs.items()},
      "export_by_isa_class": {name: export for name, (_, export) in runs.items()}}, keep)
  with tempfile.TemporaryDirectory() as scratch:
    search = tiny.tune_digests(os.path.join(scratch, "store"))
    sampler = synthetic.digest(synthetic.run(synthetic.space(scratch)))
  write_json(os.path.join(folder, os.path.basename(tiny.GOLDEN_TUNE)),
             {"written_on": determinism.cpu_model(), "sampler": sampler, "tiny_search": search})
  _update(os.path.join(folder, os.path.basename(tiny.GOLDEN_STEPS)), {
      name: {"real_shapes": tiny.step_digests(step_digests.REAL_SHAPES, extra=flags),
             "emulated": tiny.step_digests(step_digests.EMULATED, extra=flags)}
      for name, flags in classes.items()}, keep)


if __name__ == "__main__":
  main()
