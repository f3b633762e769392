"""The search as an Optuna journal: `study.journal` in the tune output, which Optuna's own tools
open (`optuna-dashboard study.journal`, or `optuna.load_study(study_name=STUDY_NAME,
storage=JournalStorage(JournalFileBackend(path)))`).

The journal's bytes are a function of the trials alone, as the output's other files are: its
times are the Unix epoch and its worker id is WORKER, where Optuna writes the clock and a
random id (optuna/storages/journal/_storage.py). Optuna's JournalFileBackend writes the lines.
"""

import datetime

STUDY_NAME = "reproseg-tune"
FILE = "study.journal"
WORKER = "reproseg"
# Every trial's start and end: the journal holds no clock, so optuna-dashboard shows no durations.
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _backend_in_memory():
  """A journal backend that keeps the log lines in a list (.logs)."""
  from optuna.storages import journal  # pylint: disable=g-import-not-at-top

  class InMemory(journal.BaseJournalBackend):

    def __init__(self):
      self.logs = []

    def read_logs(self, log_number_from):
      return list(self.logs[log_number_from:])

    def append_logs(self, logs):
      self.logs.extend(logs)

  return InMemory()


def _frozen_trial(row, distributions):
  """A trials.json row as an Optuna FrozenTrial: COMPLETE with its validation IoU, or FAIL."""
  import optuna  # pylint: disable=g-import-not-at-top
  attrs = {name: row[name] for name in ("round", "state", "validation_loss", "train_output")
           if name in row}
  failed = row["value"] is None
  trial = optuna.trial.create_trial(
      params=row["params"], distributions=distributions, value=row["value"], user_attrs=attrs,
      state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE)
  trial.datetime_start = trial.datetime_complete = _EPOCH
  return trial


def write(path, rows, distributions):
  """Writes the study to a new journal file at path: one trial per trials.json row, in trial
  order (rows: seg.tuning.tune's; distributions: {name: optuna distribution},
  seg.tuning.sampler.distributions), direction maximize (validation IoU)."""
  import optuna  # pylint: disable=g-import-not-at-top
  from optuna.storages import journal  # pylint: disable=g-import-not-at-top
  backend = _backend_in_memory()
  study = optuna.create_study(storage=journal.JournalStorage(backend), study_name=STUDY_NAME,
                              direction="maximize")
  for row in rows:
    study.add_trial(_frozen_trial(row, distributions))
  journal.JournalFileBackend(path).append_logs(
      [dict(log, worker_id=WORKER) for log in backend.logs])
