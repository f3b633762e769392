"""A search of a made-up objective by seg.tuning.sampler, round after round, with no training: the
sampler's bits on their own (tests/search_test.py, and its golden digest in
tests/golden/tune.json)."""

import hashlib
import json
import math
import os
import subprocess
import sys

from pipeline import child_process
from seg.configs import config
from seg.configs import search_space
from seg.tuning import sampler

SPACE = {"learning_rate": {"low": 0.0001, "high": 0.1, "log": True},
         "batch_size": {"choices": [8, 16]}, "epochs": {"low": 1, "high": 20}}


def space(folder):
  """The seg.configs.search_space.Space of SPACE (written to folder/space.json)."""
  path = os.path.join(folder, "space.json")
  with open(path, "w") as f:
    json.dump(SPACE, f)
  return search_space.load(path, lambda overrides: config.resolve("synthetic",
                                                                  overrides=overrides))


def objective(params):
  """A made-up validation IoU with one peak, computed in this process."""
  return (0.8 - abs(math.log10(params["learning_rate"]) + 2.5) / 10 + params["batch_size"] / 400
          - (params["epochs"] - 7) ** 2 / 1000)


def _propose_unheld(request, python):
  """seg.tuning.sampler.propose in a process whose NumPy runs its CPU's own loops."""
  return json.loads(subprocess.run(
      list(python) + ["-c", "import json, sys; from seg.tuning import sampler; "
                      "json.dump(sampler.propose(**json.load(sys.stdin)), sys.stdout)"],
      input=json.dumps(request), capture_output=True, text=True, check=True,
      env=child_process.environment()).stdout)


def run(space, seed=1, python=(sys.executable,), held=True, rounds=6, size=4):
  """The trials ([{"params", "value"}]) of a search of objective() over a seg.configs.search_space
  Space in rounds of size; each round's proposals come from a fresh `python -m seg.tuning.sampler`
  (held: NumPy at its baseline) or from propose() with NumPy's own loops (not held)."""
  history = []
  for round_index in range(rounds):
    request = {"space": space.record(), "seed": seed, "round_index": round_index,
               "history": history, "count": size, "startup_trials": 4}
    proposals = (sampler.propose_in_process(request, python) if held
                 else _propose_unheld(request, python))
    history += [{"params": p, "value": objective(p)} for p in proposals]
  return history


def digest(history):
  return hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest()
