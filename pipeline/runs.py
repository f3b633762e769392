"""`store runs`: one stage's stored runs side by side, as DVC's `exp show` and MLflow's run
comparison list them: the parameters that differ between the runs, and their metrics.

A run's parameters are its key record's params, its runtime (the seed and determinism
switches, the package lock), its input digests and the digest of its code record; its metrics
are the numbers of its manifest's details. Only the parameters whose values are not the same
in every run listed are columns.
"""

import dataclasses
import json
import re

from pipeline import compare
from pipeline import digest
from pipeline import errors
from pipeline import inventory
from pipeline import names
from pipeline import text_table

# The metric columns shown by default, by stage: the ones each stage is judged by. A stage not
# listed shows every number of its details.
HEADLINE_METRICS = {
    "train": ("validation.iou", "validation.loss"),
    "calibrate": ("temperature", "ece.after", "nll.after"),
    "evaluate": ("mean_iou", "pixel_accuracy", "ece.calibrated"),
    "tune": ("best_validation_iou", "best_trial", "failed_trials"),
}
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Table:
  """Runs as rows: key, run names, output and start time, then parameters and metrics by
  name."""
  stage: str
  parameters: tuple  # the parameter names that differ, sorted
  metrics: tuple  # the metric names shown
  # dicts: key, run_names (pipeline.names; [] if none), output, started_utc,
  # parameters {name: value}, metrics {name: value}; a parameter or metric a run does not have
  # is left out of its dicts (a value may be None: JSON null).
  rows: tuple

  def to_json(self):
    return json.dumps({"stage": self.stage, "parameters": list(self.parameters),
                       "metrics": list(self.metrics), "runs": list(self.rows)},
                      indent=1, sort_keys=True)


def _parameters(manifest):
  """{dotted name: value} of what made a run: params, runtime, inputs, code (one digest)."""
  record = manifest["key_record"]
  return compare.flatten({"params": record["params"], "runtime": record["runtime"],
                          "inputs": record["inputs"],
                          "code": digest.record_digest(record["code"])})


def _numbers(details):
  """{dotted name: number} of a manifest's details (bools, strings and lists left out)."""
  return {name: value for name, value in compare.flatten(details or {}).items()
          if isinstance(value, (int, float)) and not isinstance(value, bool)}


def table(store, stage_name, metrics=None, sort_by=None, ascending=False):
  """The Table of a stage's runs, newest first, or sorted by the metric sort_by.

  metrics: the metric names to show; default HEADLINE_METRICS[stage_name], else all. Raises
  errors.Error if the store holds no run of that stage, if no run has a metric asked for, or
  if sort_by is not a metric shown.
  """
  entries = inventory.entries(store, stage_name)
  if not entries:
    raise errors.Error("%s holds no %s run (see `store ls`)" % (store.root, stage_name))
  params = [_parameters(e.manifest) for e in entries]
  numbers = [_numbers(e.manifest.get("details")) for e in entries]
  every_parameter = sorted({n for p in params for n in p})
  differing = tuple(n for n in every_parameter
                    if len({json.dumps(p.get(n)) if n in p else "absent" for p in params}) > 1)
  found = sorted({n for run in numbers for n in run})
  shown = tuple(metrics or HEADLINE_METRICS.get(stage_name) or found)
  unknown = [n for n in metrics or () if n not in found]
  if unknown:
    raise errors.Error("no %s run has the metric %s; they have %s" % (
        stage_name, ", ".join(unknown), ", ".join(found)))
  named = names.names_by_key(store)
  rows = [{"key": e.key, "run_names": named.get(e.key, []), "output": e.output,
           "started_utc": e.started_utc,
           "parameters": {n: p[n] for n in differing if n in p},
           "metrics": {n: run[n] for n in shown if n in run}}
          for e, p, run in zip(entries, params, numbers)]
  if sort_by:
    rows = _sorted(rows, sort_by, shown, ascending)
  return Table(stage_name, differing, shown, tuple(rows))


def _sorted(rows, metric, shown, ascending):
  """Rows by a metric's value, largest first unless ascending; runs without it last."""
  if metric not in shown:
    raise errors.Error("--sort_by=%s is not a metric shown (%s): name one of them, or show it "
                       "with --metrics" % (metric, ", ".join(shown)))
  present = [r for r in rows if metric in r["metrics"]]
  absent = [r for r in rows if metric not in r["metrics"]]
  return sorted(present, key=lambda r: r["metrics"][metric], reverse=not ascending) + absent


def _parameter_cell(values, name):
  """A parameter's value in full as JSON ("-" if the run has none), a digest shortened."""
  if name not in values:
    return "-"
  value = values[name]
  if isinstance(value, str) and _DIGEST.match(value):
    return value[:16] + "…"
  return json.dumps(value)


def _metric_cell(values, name):
  return "%.4g" % values[name] if name in values else "-"


def lines(runs):
  """The table as text: a header, then one line per run (aligned); a name column if a run
  has a name."""
  named = any(r["run_names"] for r in runs.rows)
  header = (["key"] + ["name"] * named + ["started (UTC)"] + list(runs.parameters) +
            list(runs.metrics))
  body = [[r["key"][:16]] + [", ".join(r["run_names"]) or "-"] * named + [r["started_utc"]] +
          [_parameter_cell(r["parameters"], n) for n in runs.parameters] +
          [_metric_cell(r["metrics"], n) for n in runs.metrics] for r in runs.rows]
  return text_table.aligned([header] + body)
