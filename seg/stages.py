"""The seg pipeline, each function running the stages before its own (or taking them from the
store): data stages → train → calibrate → evaluate (or export) → release, and tune. Each takes
one Run and returns every stage's Result by stage name, in the order they ran.

The stage modules import no TensorFlow: each stage's build imports it when it builds, after
determinism.apply() has run (the train stage's plan too, to fetch ImageNet weights not yet on
disk, which a dry run never does), and a dry run (pipeline.planning) builds nothing. stop_after_epochs
reaches the train stage from any of them (tests stop and resume the whole pipeline).
"""

import dataclasses
import typing

from data_tools import dataset
from pipeline import stage
from seg.evaluation import calibrate_stage
from seg.evaluation import evaluate_stage
from seg.serve import export_stage
from seg.serve import release_stage
from seg.training import train_stage
from seg.tuning import tune as tune_lib


@dataclasses.dataclass(frozen=True)
class Run:
  """What a command's stages run with, resolved from its flags (seg.launch)."""
  store: typing.Any     # pipeline.store.Store
  data: typing.Any      # data_tools.dataset.DataConfig
  train: typing.Any     # seg.configs.config.TrainConfig
  settings: typing.Any  # pipeline.determinism.Settings
  stop_after_epochs: int = 0  # train stops after this epoch (0: at the end)


def data(run):
  """{stage name: Result} of the data stages, through partition."""
  return {r.name: r for r in dataset.prepare(run.store, run.data, run.settings)}


def train(run, distribution=None):
  """distribution: one of several workers (seg.training.distribute); a worker other than the
  chief stores nothing and returns no results."""
  results = data(run)
  trained = train_stage.train_stage(run.store, results["partition"], run.train, run.settings,
                                  run.stop_after_epochs, distribution)
  return dict(results, train=trained) if trained else {}


def calibrate(run):
  results = train(run)
  return dict(results, calibrate=calibrate_stage.calibrate_stage(
      run.store, results["partition"], results["train"], run.train.model,
      run.train.eval_batch_size, run.settings))


def _export(run, results):
  return export_stage.export_stage(run.store, results["partition"], results["train"],
                                   results["calibrate"], run.train.model, run.settings)


def export(run):
  results = calibrate(run)
  return dict(results, export=_export(run, results))


def evaluate(run, **options):
  """options: evaluate_stage's split and gallery_size, if not its defaults."""
  results = calibrate(run)
  return dict(results, evaluate=evaluate_stage.evaluate_stage(
      run.store, results["partition"], results["train"], results["calibrate"], run.train.model,
      run.train.eval_batch_size, run.settings, **options))


def release(run, gate):
  """Evaluates the model (test split); if evaluate's metrics pass gate (a
  seg.serve.release_gate.Gate), exports and releases it, else raises errors.CheckFailed with
  the numbers."""
  results = evaluate(run)
  if not isinstance(results["evaluate"], stage.Planned):  # a dry run checks a stored one
    release_stage.passed(results["evaluate"], gate)  # a refused model is not exported
  results["export"] = _export(run, results)
  return dict(results, release=release_stage.release_stage(
      run.store, results, export_stage.SAVED_MODEL, gate, run.settings))


def tune(run, space, options, trial_command, parallel_trials, backbone_weights):
  """The data stages and the tune stage (seg.tuning.tune.tune_stage's arguments) of run's
  training config as every trial's base."""
  results = data(run)
  return dict(results, tune=tune_lib.tune_stage(
      run.store, results["partition"], run.train, space, run.settings, options, trial_command,
      parallel_trials=parallel_trials, backbone_weights=backbone_weights))
