"""Two stored outputs side by side: what made them differ (key records) and how far apart
their bytes are (files, metrics, arrays). The logic of `store diff`, and of `store check`
when a rebuild does not give the stored bits."""

import dataclasses
import os

import numpy as np

from pipeline import arrays
from pipeline import stage


# --- Key records and details -------------------------------------------------------------------
def flatten(value, prefix=""):
  """{"a.b.c": leaf} of nested dicts; lists and scalars are leaves."""
  if isinstance(value, dict) and value:
    flat = {}
    for name, inner in value.items():
      flat.update(flatten(inner, "%s.%s" % (prefix, name) if prefix else str(name)))
    return flat
  return {prefix: value}


_MISSING = "(absent)"


def differences(a, b):
  """[(path, value in a, value in b)] of the leaves that differ, sorted by path."""
  fa, fb = flatten(a), flatten(b)
  return [(path, fa.get(path, _MISSING), fb.get(path, _MISSING))
          for path in sorted(set(fa) | set(fb)) if fa.get(path, _MISSING) != fb.get(path, _MISSING)]


def record_differences(ma, mb):
  """{part: differences} of two manifests' key records, for params, inputs, code, runtime,
  and the nonce of a run that is not repeatable (pipeline.stage.plan) if either has one."""
  ra, rb = ma["key_record"], mb["key_record"]
  found = {part: differences(ra.get(part, {}), rb.get(part, {}))
           for part in ("params", "inputs", "code", "runtime")}
  if stage.NONCE in ra or stage.NONCE in rb:
    found[stage.NONCE] = differences({stage.NONCE: ra.get(stage.NONCE, _MISSING)},
                                     {stage.NONCE: rb.get(stage.NONCE, _MISSING)})
  return found


# --- Files and arrays ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VariableDifference:
  name: str
  status: str  # "equal", "differ", "shape" or "only in A"/"only in B"
  max_abs: float = 0.0
  floating: bool = True  # a weight, not a counter or a random generator's state


def array_differences(path_a, path_b):
  """[VariableDifference] of two arrays files, in file A's order, then B's extra names."""
  a, b = dict(arrays.load(path_a)), dict(arrays.load(path_b))
  rows = []
  for name, value in a.items():
    if name not in b:
      rows.append(VariableDifference(name, "only in A"))
    elif value.shape != b[name].shape or value.dtype != b[name].dtype:
      rows.append(VariableDifference(name, "shape"))
    elif value.tobytes() == b[name].tobytes():
      rows.append(VariableDifference(name, "equal"))
    else:
      delta = np.abs(value.astype(np.float64) - b[name].astype(np.float64))
      rows.append(VariableDifference(name, "differ", float(np.max(delta)),
                                     np.issubdtype(value.dtype, np.floating)))
  rows += [VariableDifference(name, "only in B") for name in b if name not in a]
  return rows


def file_differences(files_a, files_b):
  """Sorted relative paths whose sha256 differs, or which only one output has."""
  return sorted(p for p in set(files_a) | set(files_b) if files_a.get(p) != files_b.get(p))


def output_differences(store_a, ma, store_b, mb):
  """{"files": [...], "arrays": {file: [VariableDifference]}} of two stored outputs (each in
  its own store: `check` compares across a scratch store)."""
  files_a = store_a.file_digests(ma["output"])
  files_b = store_b.file_digests(mb["output"])
  changed = file_differences(files_a, files_b)
  return {"files": changed,
          "arrays": {p: array_differences(os.path.join(store_a.object_path(ma["output"]), p),
                                          os.path.join(store_b.object_path(mb["output"]), p))
                     for p in changed if p.endswith(".arrays") and p in files_a and p in files_b}}


# --- Text --------------------------------------------------------------------------------------
def _short(value, width=40):
  text = value if isinstance(value, str) else repr(value)
  if isinstance(value, float):
    text = "%.6g" % value
  return text if len(text) <= width else text[:width - 1] + "…"


def _differ(count):
  return "%d differ%s" % (count, "s" if count == 1 else "")


def describe_differences(part, rows):
  """Lines for one part's differences: "same", or a count and one line per leaf (A, then B)."""
  if not rows:
    return ["%-8s same" % part]
  return (["%-8s %s" % (part, _differ(len(rows)))] +
          ["  %-44s %-40s %s" % (path, _short(va), _short(vb)) for path, va, vb in rows])


def describe_records(ma, mb):
  """Lines naming each key-record difference, grouped by part."""
  return [line for part, rows in record_differences(ma, mb).items()
          for line in describe_differences(part, rows)]


def describe_details(ma, mb):
  """Lines naming each difference of the manifests' details (a stage's metrics)."""
  return describe_differences("metrics", differences(ma.get("details") or {},
                                                     mb.get("details") or {}))


def describe_outputs(differences_):
  """Lines naming the files that differ and, per arrays file, each variable."""
  if not differences_["files"]:
    return ["files    identical"]
  lines = ["files    %s: %s" % (_differ(len(differences_["files"])),
                                 ", ".join(differences_["files"]))]
  for path, rows in differences_["arrays"].items():
    differ = [r for r in rows if r.status != "equal"]
    largest = max((r for r in differ if r.floating), key=lambda r: r.max_abs, default=None)
    lines.append("%s: %d variables, %d equal, %s%s" % (
        path, len(rows), len(rows) - len(differ), _differ(len(differ)),
        "; largest difference %.3g in %s" % (largest.max_abs, largest.name)
        if largest and largest.max_abs else ""))
    lines += ["  %-10s %s" % ("equal" if r.status == "equal" else
                              "%.3g" % r.max_abs if r.status == "differ" else r.status, r.name)
              for r in rows]
  return lines
