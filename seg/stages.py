"""The seg pipeline, each function running the stages before its own (or taking them from the
store): data stages → train → calibrate → evaluate (or export) → release. Each returns every
stage's Result.

TensorFlow code is imported inside, after determinism.apply() has run. stop_after_epochs
reaches the train stage from any of them (tests stop and resume the whole pipeline).
"""

from data_tools import dataset


def train(store, data_config, train_config, settings, stop_after_epochs=0, distribution=None):
  """distribution: one of several workers (seg.training.distribute); a worker other than the chief
  stores nothing and returns no results."""
  from seg.training import train as train_lib  # pylint: disable=g-import-not-at-top
  results = dataset.prepare(store, data_config, settings)
  trained = train_lib.train_stage(store, results[-1], train_config, settings, stop_after_epochs,
                                  distribution)
  return results + [trained] if trained else []


def calibrate(store, data_config, train_config, settings, stop_after_epochs=0):
  from seg.evaluation import calibrate as calibrate_lib  # pylint: disable=g-import-not-at-top
  results = train(store, data_config, train_config, settings, stop_after_epochs)
  splits, trained = results[-2:]
  return results + [calibrate_lib.calibrate_stage(store, splits, trained, train_config.model,
                                                  train_config.eval_batch_size, settings)]


def export(store, data_config, train_config, settings, stop_after_epochs=0):
  from seg.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  results = calibrate(store, data_config, train_config, settings, stop_after_epochs)
  splits, trained, calibrated = results[-3:]
  return results + [export_lib.export_stage(store, splits, trained, calibrated,
                                            train_config.model, settings)]


def evaluate(store, data_config, train_config, settings, stop_after_epochs=0, split="test",
             gallery_size=12):
  from seg.evaluation import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  results = calibrate(store, data_config, train_config, settings, stop_after_epochs)
  splits, trained, calibrated = results[-3:]
  return results + [evaluate_lib.evaluate_stage(store, splits, trained, calibrated,
                                                train_config.model, train_config.eval_batch_size,
                                                settings, split, gallery_size)]


def release(store, data_config, train_config, settings, stop_after_epochs=0, gate=None):
  """Evaluates the model (test split); if evaluate's metrics pass gate (a
  seg.serve.release_gate.Gate), exports and releases it, else raises errors.CheckFailed with the
  numbers."""
  from seg.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  from seg.serve import release as release_lib  # pylint: disable=g-import-not-at-top
  results = evaluate(store, data_config, train_config, settings, stop_after_epochs)
  release_lib.passed(results[-1], gate)  # a refused model is not exported
  splits, trained, calibrated = results[-4:-1]
  results.append(export_lib.export_stage(store, splits, trained, calibrated, train_config.model,
                                         settings))
  lineage = {r.name: r for r in results}
  return results + [release_lib.release_stage(store, lineage, export_lib.SAVED_MODEL, gate,
                                              settings)]
