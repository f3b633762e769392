"""`store runs`: one stage's stored runs side by side, as DVC's `exp show` and MLflow's run
comparison list them: the parameters that differ between the runs, and their metrics, joined
with those of the runs each was made from.

A run's parameters are its key record's params, its runtime (the seed and determinism
switches, the package lock), its input digests and the digest of its code record; its metrics
are the numbers of its manifest's details. The runs in its lineage (pipeline.inventory) add
their params, code digest and metrics under their stage's name: an evaluate row has
`train.params.learning_rate` and `train.validation.iou` beside its own `mean_iou`. Only the
parameters whose values are not the same in every run listed are columns.
"""

import csv
import dataclasses
import io
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
    "release": ("evaluate.mean_iou", "evaluate.pixel_accuracy", "evaluate.ece.calibrated"),
}
FORMATS = ("table", "csv", "md", "json")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Table:
  """Runs as rows: key, run names, output and start time, then parameters and metrics by
  name."""
  stage: str
  parameters: tuple  # the parameter names that differ, sorted
  metrics: tuple  # the metric names shown
  # dicts: key, run_names (pipeline.names; [] if none), output, started_utc, lineage
  # {stage: key} of the runs it was made from, parameters {name: value}, metrics
  # {name: value}; a parameter or metric a run does not have is left out of its dicts (a
  # value may be None: JSON null).
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


def _joined(chain):
  """(parameters, metrics, lineage) of a run and the runs it was made from, chain being its
  inventory.lineage: its own under their names, each upstream run's params, code digest and
  metrics under "<stage>.", the nearest run of a stage only."""
  own = chain[0]
  params, metrics = _parameters(own), _numbers(own.get("details"))
  made_from = {}
  for upstream in chain[1:]:
    if upstream["stage"] in made_from or upstream["stage"] == own["stage"]:
      continue
    made_from[upstream["stage"]] = upstream["key"]
    record = upstream["key_record"]
    named = {"params": record["params"], "code": digest.record_digest(record["code"])}
    params.update(compare.flatten({upstream["stage"]: named}))
    metrics.update({upstream["stage"] + "." + n: v
                    for n, v in _numbers(upstream.get("details")).items()})
  return params, metrics, made_from


def table(store, stage_name, metrics=None, sort_by=None, ascending=False):
  """The Table of a stage's runs, newest first, or sorted by the metric sort_by.

  metrics: the metric names to show; default HEADLINE_METRICS[stage_name], else all. Raises
  errors.Error if the store holds no run of that stage, if no run has a metric asked for, or
  if sort_by is not a metric shown.
  """
  entries = inventory.entries(store, stage_name)
  if not entries:
    raise errors.Error("%s holds no %s run (see `store ls`)" % (store.root, stage_name))
  by_output = inventory.newest_by_output(store, inventory.manifests(store))
  params, numbers, made_from = zip(*[_joined(inventory.lineage(store, e.manifest, by_output))
                                     for e in entries])
  every_parameter = sorted({n for p in params for n in p})
  differing = tuple(n for n in every_parameter
                    if len({json.dumps(p.get(n)) if n in p else "absent" for p in params}) > 1)
  own = sorted({n for e in entries for n in _numbers(e.manifest.get("details"))})
  every_metric = sorted({n for run in numbers for n in run})
  shown = tuple(metrics or HEADLINE_METRICS.get(stage_name) or own)
  unknown = [n for n in metrics or () if n not in every_metric]
  if unknown:
    raise errors.Error("no %s run has the metric %s; they have %s" % (
        stage_name, ", ".join(unknown), ", ".join(every_metric)))
  named = names.names_by_key(store)
  rows = [{"key": e.key, "run_names": named.get(e.key, []), "output": e.output,
           "started_utc": e.started_utc, "lineage": lineage,
           "parameters": {n: p[n] for n in differing if n in p},
           "metrics": {n: run[n] for n in shown if n in run}}
          for e, p, run, lineage in zip(entries, params, numbers, made_from)]
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


def _cells(runs):
  """The table as rows of strings, the header first; a name column if a run has a name."""
  named = any(r["run_names"] for r in runs.rows)
  header = (["key"] + ["name"] * named + ["started (UTC)"] + list(runs.parameters) +
            list(runs.metrics))
  body = [[r["key"][:16]] + [", ".join(r["run_names"]) or "-"] * named + [r["started_utc"]] +
          [_parameter_cell(r["parameters"], n) for n in runs.parameters] +
          [_metric_cell(r["metrics"], n) for n in runs.metrics] for r in runs.rows]
  return [header] + body


def lines(runs):
  """The table as aligned text lines, for a terminal."""
  return text_table.aligned(_cells(runs))


def markdown(runs):
  """The table as Markdown (GitHub's pipe tables): the text table's cells, `|` escaped."""
  rows = [[cell.replace("|", "\\|") for cell in row] for row in _cells(runs)]
  return "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] +
                    ["| " + " | ".join(row) + " |" for row in rows[1:]])


def _csv_value(value):
  """A value in full: a string as it is, anything else (numbers, lists, null) as JSON."""
  return value if isinstance(value, str) else json.dumps(value)


def to_csv(runs):
  """The table as CSV, for a spreadsheet or pandas: full keys, digests and numbers; run names
  joined by ";"; a parameter or metric a run does not have is an empty cell."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["key", "run_names", "started_utc", "output"] + list(runs.parameters) +
                  list(runs.metrics))
  for r in runs.rows:
    values = {**r["parameters"], **r["metrics"]}
    writer.writerow([r["key"], ";".join(r["run_names"]), r["started_utc"], r["output"]] +
                    [_csv_value(values[n]) if n in values else ""
                     for n in runs.parameters + runs.metrics])
  return out.getvalue().rstrip("\n")
