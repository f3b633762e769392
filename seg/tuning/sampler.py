"""//seg:tune's sampler: one synchronous round's trial parameters, from the search space, the
seed, the round's number and the results of every trial before it, by Optuna's TPE sampler
(optuna.samplers.TPESampler) through its ask-and-tell interface.

Each round is a pure function of that request: a fresh study is told the earlier trials in trial
order, and its sampler is seeded with derive_seed(seed, "tune", round). The trials therefore do
not depend on the order in which they finished, nor on how many ran at once.

The sampler runs in a process of its own, `python -m seg.tuning.sampler` (propose_in_process), which
holds NumPy at its baseline loops (pipeline.numpy_baseline): TPE's choices follow the last bits
of NumPy's exp and log, which differ between CPUs otherwise.
"""

import json
import sys
import warnings

from pipeline import child_process
from pipeline import errors
from pipeline import seeds

# Optuna's TPE, with constant_liar: the trials of one round are asked one after another, each
# seeing the earlier ones as running, so one round does not propose the same point K times.
ALGORITHM = {"sampler": "optuna.samplers.TPESampler", "constant_liar": True,
             "objective": "validation IoU, maximized"}


def distributions(space_record):
  """{name: optuna distribution} of a search space's record (seg.configs.search_space.Space.record:
  each parameter's kind, "categorical", "int" or "float", and the space file's keys)."""
  import optuna  # pylint: disable=g-import-not-at-top
  result = {}
  for name, spec in space_record.items():
    if "choices" in spec:
      result[name] = optuna.distributions.CategoricalDistribution(spec["choices"])
    elif spec["kind"] == "int":
      result[name] = optuna.distributions.IntDistribution(
          spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1))
    else:
      result[name] = optuna.distributions.FloatDistribution(
          spec["low"], spec["high"], log=spec.get("log", False))
  return result


def propose(space, seed, round_index, history, count, startup_trials):
  """The parameters of a round's count trials: [{name: value}], in trial order.

  space: {name: {"kind": "categorical"|"int"|"float", and the space file's keys}};
  history: the earlier trials in trial order, [{"params": {name: value}, "value": the
  validation IoU, or None for a failed trial}]; startup_trials: trials drawn at random
  (seeded) before TPE models the results (TPESampler's n_startup_trials).
  Call it only where NumPy is held at its baseline (main does): see the module's docstring.
  """
  import optuna  # pylint: disable=g-import-not-at-top
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
  sampler = optuna.samplers.TPESampler(seed=seeds.derive_seed(seed, "tune", round_index),
                                       n_startup_trials=startup_trials,
                                       constant_liar=ALGORITHM["constant_liar"])
  study = optuna.create_study(direction="maximize", sampler=sampler)
  fixed = distributions(space)
  for trial in history:
    state = (optuna.trial.TrialState.FAIL if trial["value"] is None
             else optuna.trial.TrialState.COMPLETE)
    study.add_trial(optuna.trial.create_trial(params=trial["params"], distributions=fixed,
                                              value=trial["value"], state=state))
  return [study.ask(fixed).params for _ in range(count)]


def propose_in_process(request, python=(sys.executable,)):
  """propose(**request) in a fresh `python -m seg.tuning.sampler` process with NumPy held at its
  baseline; python: the command that runs Python. Raises errors.Error if it fails."""
  # -P: the working directory is not on the module path, which child_process.environment sets.
  result = child_process.run(list(python) + ["-P", "-m", "seg.tuning.sampler"],
                             input=json.dumps(request), capture_output=True, text=True,
                             env=child_process.environment())
  if result.returncode:
    raise errors.Error("the tune sampler (python -m seg.tuning.sampler) failed:\n"
                       + result.stderr[-4000:])
  return json.loads(result.stdout)


def main():
  """Reads a propose() request (JSON) on stdin; writes its trials' parameters (JSON)."""
  from pipeline import numpy_baseline  # pylint: disable=g-import-not-at-top
  numpy_baseline.hold()
  json.dump(propose(**json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
  main()
