"""The seg pipeline: the data stages first, then training (seg.training.train_stage)."""

from data_tools import dataset


def run_pipeline(store, data_config, train_config, settings, stop_after_epochs=0):
  """download (and synthetic) → partition → train; returns every stage's Result."""
  from seg import training  # pylint: disable=g-import-not-at-top  (after determinism.apply)
  results = dataset.prepare(store, data_config, settings)
  return results + [training.train_stage(store, results[-1], train_config, settings,
                                         stop_after_epochs)]
