"""The tune stage: a hyperparameter search in synchronous rounds whose every trial is a train
stage in the store.

Each round, seg.tuning.sampler proposes the round's trials from the results of all earlier ones;
each trial runs //seg:train's main as a child process with the trial's values as flags (and the
tune's other flags), at most parallel_trials at once; once the whole round has ended, its validation
IoUs (from the trials' train manifests) are told in trial order. The trials and the best one are
thus a function of the key alone. A trial trained before, by an earlier search or by hand, is a
cache hit; a trial whose training diverged is a failed trial (no value).

The output: best_hyperparameters.json (the seed's format, which //seg:train
--hyperparam_fn_path reads), trials.json (every trial: round, parameters, validation IoU
and loss, train output), search.png (seg.tuning.search_pictures) and study.journal (the same
trials as an Optuna journal, seg.tuning.journal); the manifest's details name each trial's
train key.
"""

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time

from pipeline import child_process
from pipeline import code
from pipeline import errors
from pipeline import files
from pipeline import stage
from seg.configs import hyperparam_file
from seg.tuning import journal
from seg.tuning import sampler
from seg.tuning import search_pictures

TRAIN_MAIN = os.path.join(code.ROOT, "seg", "train_main.py")  # what every trial runs
# The train stage's module: its code record is in every trial's key, and so in tune's.
TRAIN_STAGE = os.path.join(code.ROOT, "seg", "training", "train_stage.py")
BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"
PICTURE_FILE = "search.png"


@dataclasses.dataclass(frozen=True)
class Options:
  """The search's budget and algorithm settings, all in the tune stage's key.

  trials: how many trials in all; round_size: trials proposed together, before any of their
  results is known (the last round may be smaller); startup_trials: trials drawn at random
  (seeded) before TPE models the results.
  """
  trials: int
  round_size: int
  startup_trials: int

  def __post_init__(self):
    for name in ("trials", "round_size"):
      if getattr(self, name) < 1:
        raise errors.Error("--%s=%d: give at least 1" % (name, getattr(self, name)))
    if self.startup_trials < 0:
      raise errors.Error("--startup_trials=%d: give 0 or more" % self.startup_trials)


def trial_flags(params):
  """The //seg:train flags that set a trial's values; a float as repr, which reads back
  exactly."""
  return ["--%s=%s" % (name, repr(value) if isinstance(value, float) else value)
          for name, value in params.items()]


def _outcome(path):
  """A trial's --result_json (pipeline.cli.result_record), or None if it wrote none."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def run_trial(number, params, command, log_path):
  """Runs one trial's train stage: command plus its flags, with --result_json beside log_path
  (its .json), where the trial hands back its outcome. Returns the train stage's (output
  digest, key, cache hit?), or None if its training diverged. Its output goes to log_path.
  Raises errors.Error if it fails otherwise."""
  result_path = os.path.splitext(log_path)[0] + ".json"
  with open(log_path, "w") as log:
    status = child_process.run(
        list(command) + trial_flags(params) + ["--result_json=" + result_path], stdout=log,
        stderr=subprocess.STDOUT, env=child_process.environment()).returncode
  outcome = _outcome(result_path) or {
      "exit": {"reason": None, "error": "it wrote no " + result_path}, "stages": []}
  trained = [s for s in outcome["stages"] if s["stage"] == "train"]
  if status == 0 and trained:
    return trained[-1]["output"], trained[-1]["key"], trained[-1]["cache_hit"]
  if status and outcome["exit"]["reason"] == errors.Diverged.reason:
    return None
  raise errors.Error("trial %d (%s) failed with exit status %d: %s\nits output: %s"
                     % (number, " ".join(trial_flags(params)), status,
                        outcome["exit"]["error"] or "no train stage", log_path))


def _record(store, number, round_index, params, reported):
  """A trial's row of trials.json, from its train manifest. Only what the trial's bits make:
  not whether it was a cache hit, nor its train key (which names code and packages too)."""
  row = {"trial": number, "round": round_index + 1, "params": params}
  if reported is None:
    return dict(row, value=None, state="diverged")
  output, key, _ = reported
  validation = store.lookup(key)["details"]["validation"]
  return dict(row, value=validation["iou"], validation_loss=validation["loss"], state="trained",
              train_output=output)


def _progress(row, cached, seconds, best, out):
  """A trial's line as it ends: its outcome, the best so far, its flags."""
  outcome = ("validation IoU %.4f (%s)" % (row["value"], "cache hit" if cached else
                                           "trained in %ds" % round(seconds))
             if row["value"] is not None else "diverged (a failed trial)")
  print("  trial %d: %s; best so far %s  [%s]" % (
      row["trial"], outcome, "%.4f (trial %d)" % (best["value"], best["trial"]) if best else "-",
      " ".join(trial_flags(row["params"]))), file=out, flush=True)


def _timed(function, *args):
  """(function(*args), seconds it took)."""
  start = time.monotonic()
  return function(*args), time.monotonic() - start


def run_search(store, space, seed, options, command, parallel_trials, logs_dir, out=sys.stderr):
  """(rows, keys): the trials of a search in trial order (trials.json's rows), and each one's
  train key (None for a diverged trial). command: the argv that runs //seg:train with the
  tune's flags; each trial's log is logs_dir/trial-NNN.log. Prints each round as it starts and
  each trial as it ends."""
  os.makedirs(logs_dir, exist_ok=True)
  rows, keys = [], []
  rounds = math.ceil(options.trials / options.round_size)
  for round_index in range(rounds):
    first = round_index * options.round_size + 1
    count = min(options.round_size, options.trials - first + 1)
    proposals = sampler.propose_in_process({
        "space": space.record(), "seed": seed, "round_index": round_index, "count": count,
        "history": [{"params": r["params"], "value": r["value"]} for r in rows],
        "startup_trials": options.startup_trials})
    print("tune: round %d of %d: trials %d-%d, %d at a time (output: %s)" % (
        round_index + 1, rounds, first, first + count - 1, min(parallel_trials, count),
        os.path.join(logs_dir, "trial-NNN.log")), file=out, flush=True)
    for row, key in _run_round(store, round_index, first, proposals, command, parallel_trials,
                               logs_dir, rows, out):
      rows.append(row)
      keys.append(key)
  return rows, keys


def _run_round(store, round_index, first, proposals, command, parallel_trials, logs_dir,
               earlier, out):
  """[(row, train key)] of a round's trials (numbered from first), in trial order, run at most
  parallel_trials at once. Once a trial fails, the round's trials not yet started are
  cancelled."""
  done = {}
  with concurrent.futures.ThreadPoolExecutor(parallel_trials) as pool:
    futures = {pool.submit(_timed, run_trial, first + i, params, command,
                           os.path.join(logs_dir, "trial-%03d.log" % (first + i))): i
               for i, params in enumerate(proposals)}
    try:
      for future in _as_completed(futures):
        i, (reported, seconds) = futures[future], future.result()
        done[i] = (_record(store, first + i, round_index, proposals[i], reported),
                   reported[1] if reported else None)
        _progress(done[i][0], bool(reported and reported[2]), seconds,
                  best_trial(earlier + [row for row, _ in done.values()]), out)
    except BaseException as e:
      for future in futures:
        future.cancel()
      if isinstance(e, Exception):  # not a stop signal (pipeline.stopping), which says so
        print("tune: %s\ntune: waiting for the round's running trials to end" % e, file=out,
              flush=True)
      raise
  return [done[i] for i in range(len(proposals))]


def _as_completed(futures):
  """concurrent.futures.as_completed, in order of index (futures' values) among those that end
  together, waiting in slices so that a stop signal reaches the main thread."""
  pending = set(futures)
  while pending:
    finished, pending = concurrent.futures.wait(
        pending, timeout=child_process.POLL_SECONDS,
        return_when=concurrent.futures.FIRST_COMPLETED)
    yield from sorted(finished, key=futures.get)


def rank(row):
  """A trial's place, best first: by validation IoU, the earliest of equals first, failed
  trials last."""
  return (row["value"] is None, -(row["value"] or 0), row["trial"])


def best_trial(rows):
  """The best row (rank), or None if no trial has a value."""
  best = min(rows, key=rank, default=None)
  return best if best and best["value"] is not None else None


def best_hyperparameters(base_config, params):
  """The best trial's values in the seed's file format: the searched ones, and the training
  config's for the rest."""
  flat = base_config.flat_record()
  return {name: params.get(name, flat[name]) for name in hyperparam_file.SEARCHABLE}


def key_params(base_config, space, options):
  """The tune stage's params: the space, the options, the algorithm and Optuna's version, the
  training config's values that the space does not set, and the train stage's code, which
  every trial's key holds."""
  fixed = base_config.flat_record()
  return {
      "search_space": space.record(), **dataclasses.asdict(options),
      "algorithm": dict(sampler.ALGORITHM, optuna=importlib.metadata.version("optuna")),
      "train": {name: value for name, value in fixed.items() if name not in space.names},
      "trial_code": code.file_record(TRAIN_STAGE),
  }


def write_outputs(out, rows, keys, base_config, space):
  """best_hyperparameters.json, trials.json, search.png and study.journal; returns the
  manifest's details.
  Raises errors.Error if no trial has a value (every one diverged)."""
  best = best_trial(rows)
  if best is None:
    raise errors.Error("every trial of the search diverged (their output: the run folder's "
                       "trials/): narrow the search space %s to gentler values, such as lower "
                       "learning rates" % space.path)
  files.write_json(os.path.join(out, BEST_FILE),
                   best_hyperparameters(base_config, best["params"]))
  files.write_json(os.path.join(out, TRIALS_FILE), rows)
  search_pictures.save_search(rows, best, space, os.path.join(out, PICTURE_FILE))
  journal.write(os.path.join(out, journal.FILE), rows, sampler.distributions(space.record()))
  return {"best_trial": best["trial"], "best_validation_iou": best["value"],
          "best_params": best["params"], "trial_train_keys": keys,
          "failed_trials": sum(r["value"] is None for r in rows),
          "headline": "best validation IoU %.4f (trial %d of %d)" % (
              best["value"], best["trial"], len(rows)),
          "metrics": {"best_validation_iou": best["value"]}}


def tune_stage(store, splits, base_config, space, settings, options, command,
               parallel_trials=1, backbone_weights=None):
  """The tune stage's Result on a partition Result (or Planned, in a dry run).

  base_config: the training config that every trial starts from (seg.configs.config.TrainConfig);
  command: the argv of //seg:train with the tune's flags (trial_flags are appended);
  backbone_weights: the encoder weights' digests the trials may use ({arch: digest}), or None.
  parallel_trials: trials run at once; not in the key, since the trials do not depend on it.
  """

  def build(out, run_dir):
    rows, keys = run_search(store, space, settings.seed, options, command, parallel_trials,
                            os.path.join(run_dir, "trials"))
    return write_outputs(out, rows, keys, base_config, space)

  return stage.run(store, "tune", key_params(base_config, space, options),
                   {"splits": splits, "backbone_weights": backbone_weights}, settings.record(),
                   build)
