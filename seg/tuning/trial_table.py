"""A tune output shown as text: its trials as a table, best first, and the best
hyperparameters. Not in the tune stage's key: it only reads the output."""

import json
import os

from pipeline import text_table
from seg.tuning import tune


def table(rows, names):
  """The trials as text, best first (failed trials last): trial, round, each searched value
  in full, validation IoU and loss, train output."""
  ordered = sorted(rows, key=tune.rank)
  header = ["trial", "round"] + list(names) + ["val IoU", "val loss", "train output"]
  body = [[str(r["trial"]), str(r["round"])] + [json.dumps(r["params"][n]) for n in names] +
          (["%.4f" % r["value"], "%.4f" % r["validation_loss"], r["train_output"][:16] + "…"]
           if r["value"] is not None else ["diverged", "-", "-"]) for r in ordered]
  return text_table.aligned([header] + body)


def lines(result, space):
  """Lines that show a tune output: its trial table, best first, and the best
  hyperparameters."""
  with open(os.path.join(result.path, tune.TRIALS_FILE)) as f:
    rows = json.load(f)
  with open(os.path.join(result.path, tune.BEST_FILE)) as f:
    best = json.load(f)
  return (["", "tune: %d trials, best first" % len(rows)] + ["  " + line for line in
                                                            table(rows, space.names)] +
          ["", "best hyperparameters (%s):" % tune.BEST_FILE, "  " + json.dumps(best)])
