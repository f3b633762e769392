"""The release stage: the release gate's check, its key's parameters and inputs, and a build that
writes the release with seg.serve.release, imported only when it builds. Free of TensorFlow, so
that a dry run (pipeline.planning) plans it without starting TensorFlow.
"""

import json
import os

from pipeline import errors
from pipeline import stage
from seg.serve import release_gate

RECORD = os.path.join("assets.extra", "release.json")  # the release's record, in its output


def passed(evaluated, gate):
  """(metrics.json's content, [release_gate.Check]) of an evaluate Result (test split) that
  passes a release_gate.Gate; raises errors.CheckFailed naming every bound it missed, with the
  numbers, if it does not."""
  with open(os.path.join(evaluated.path, "metrics.json")) as f:
    metrics = json.load(f)
  checks = release_gate.checks(gate, metrics)
  failed = [c.line() for c in checks if not c.passed]
  if failed:
    raise errors.CheckFailed("the release gate refused the model (evaluate output %s, test "
                             "split): %s. No release was written"
                             % (evaluated.digest[:16], "; ".join(failed)))
  return metrics, checks


def release_stage(store, lineage, saved_model, gate, settings):
  """The release stage. lineage: {stage name: Result (or Planned, in a dry run)} of the stages
  it is made from, with "evaluate" (the test split's) and "export" among them; saved_model: the
  SavedModel's folder in export's output (seg.serve.export_stage.SAVED_MODEL); gate: a
  release_gate.Gate; settings: the pipeline.determinism settings.

  Its build raises errors.CheckFailed (passed()), and stores nothing, if the metrics fail the
  gate; seg.stages.release checks them first, before export.
  """

  def build(out, unused_run_dir):
    from seg.serve import release  # pylint: disable=g-import-not-at-top
    metrics, checks = passed(lineage["evaluate"], gate)
    lines = [c.line() for c in checks]
    release.write(out, os.path.join(lineage["export"].path, saved_model), {
        "thresholds": gate.record(), "checks": lines, "metrics": metrics,
        "made_from": {name: r.digest for name, r in lineage.items()}})
    return {"checks": lines,
            "headline": "gate passed: " + ("; ".join(lines) or "no bound was set")}

  params = {"gate": gate.record(), "saved_model": saved_model}
  return stage.run(store, "release", params, lineage, settings.record(), build)
