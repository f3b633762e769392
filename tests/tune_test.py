"""//seg:tune end to end on the tiny configuration (tests/tiny_pipeline.py's TUNE): a 4-trial
search gives the golden digests twice, in fresh stores, with trials one at a time and two at
once; Optuna's load_study opens its journal; a rerun is a cache hit; more trials reuse the
earlier ones; training with the best file is the best trial; the runs table lists the trials,
named after the search's --run_name."""

import json
import os
import re
import subprocess
import sys

from absl.testing import absltest

from pipeline import code
from pipeline import store as storelib
from seg.tuning import journal
from seg.tuning import tune
from tests import tiny_pipeline as tiny


def trial_lines(stderr):
  """The progress lines (on stderr) that say how each trial ended, in the order they ended."""
  return [line.strip() for line in stderr.splitlines() if re.match(r"  trial \d+: ", line)]


class TuneTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.store = os.path.join(absltest.get_default_test_tmpdir(), "tune-store")
    cls.first, cls.folder = tiny.tune(cls.store)
    if cls.first.returncode:
      raise AssertionError("seg/tune failed:\n" + cls.first.stderr[-4000:])
    with open(os.path.join(cls.folder, "trials.json")) as f:
      cls.trials = json.load(f)

  def test_the_search_gives_the_golden_digests_twice_whatever_runs_at_once(self):
    """The digests that regenerate_golden wrote, on whatever CPU it ran."""
    with open(tiny.GOLDEN_TUNE) as f:
      golden = json.load(f)["tiny_search"]
    self.assertEqual(tiny.tune_digests(self.store), golden)  # a cache hit by now
    fresh = self.create_tempdir().full_path
    self.assertEqual(tiny.tune_digests(os.path.join(fresh, "store"), ["--parallel_trials=2"]),
                     golden)

  def test_the_output_and_its_table_name_every_trial(self):
    self.assertEqual([t["trial"] for t in self.trials], [1, 2, 3, 4])
    self.assertEqual([t["round"] for t in self.trials], [1, 1, 2, 2])
    self.assertLen(trial_lines(self.first.stderr), 4)
    self.assertIn("tune: 4 trials, best first", self.first.stdout)
    self.assertIn("best hyperparameters (best_hyperparameters.json):", self.first.stdout)
    self.assertTrue(os.path.getsize(os.path.join(self.folder, "search.png")))

  def test_optunas_own_tools_open_the_journal_and_find_the_same_best_trial(self):
    import optuna  # pylint: disable=g-import-not-at-top
    from optuna.storages import journal as optuna_journal  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.folder, journal.FILE)
    before = (os.path.getsize(path), os.path.getmtime(path))
    study = optuna.load_study(study_name=journal.STUDY_NAME, storage=optuna_journal.JournalStorage(
        optuna_journal.JournalFileBackend(path)))
    self.assertEqual([t.params for t in study.trials], [t["params"] for t in self.trials])
    self.assertEqual([t.value for t in study.trials], [t["value"] for t in self.trials])
    best = tune.best_trial(self.trials)
    self.assertEqual((study.best_trial.number + 1, study.best_value, study.best_params),
                     (best["trial"], best["value"], best["params"]))
    self.assertEqual(study.best_trial.user_attrs["train_output"], best["train_output"])
    self.assertEqual((os.path.getsize(path), os.path.getmtime(path)), before)  # only read

  def test_a_rerun_is_a_cache_hit_that_runs_no_trial(self):
    again, _ = tiny.tune(self.store)
    self.assertEqual(again.returncode, 0, again.stderr[-4000:])
    self.assertEqual(trial_lines(again.stderr), [])
    self.assertIn(("tune", os.path.basename(self.folder)),
                  [(s, d) for s, d, _, hit in tiny.stage_lines(again.stdout) if hit])

  def test_more_trials_reuse_the_earlier_ones(self):
    more, folder = tiny.tune(self.store, ["--trials=6"])
    self.assertEqual(more.returncode, 0, more.stderr[-4000:])
    lines = trial_lines(more.stderr)
    self.assertLen(lines, 6)
    self.assertTrue(all("(cache hit)" in line for line in lines[:4]), lines)
    self.assertFalse(any("(cache hit)" in line for line in lines[4:]), lines)
    with open(os.path.join(folder, "trials.json")) as f:
      self.assertEqual(json.load(f)[:4], self.trials)

  def test_training_with_the_best_file_is_the_best_trial(self):
    best = tune.best_trial(self.trials)
    flags = [f for f in tiny.TUNE if not f.startswith(("--trials", "--round_size",
                                                        "--startup_trials"))]
    trained = tiny.run("seg/train", flags + [
        "--store=" + self.store,
        "--hyperparam_fn_path=" + os.path.join(self.folder, "best_hyperparameters.json")])
    self.assertEqual(trained.returncode, 0, trained.stderr[-4000:])
    self.assertIn(("train", best["train_output"], True),
                  [(s, d, hit) for s, d, _, hit in tiny.stage_lines(trained.stdout)])

  def test_the_runs_table_lists_the_trials(self):
    def runs(stage_name):
      result = subprocess.run(
          [sys.executable, os.path.join(code.ROOT, "pipeline", "store_main.py"), "runs",
           "--stage=" + stage_name, "--json", "--store=" + self.store],
          capture_output=True, text=True, check=True)
      return json.loads(result.stdout)["runs"]

    manifest = storelib.Store(self.store).lookup(
        [k for s, _, k, _ in tiny.stage_lines(self.first.stdout) if s == "tune"][0])
    listed = {run["key"] for run in runs("train")}
    self.assertContainsSubset(manifest["details"]["trial_train_keys"], listed)
    self.assertIn(manifest["output"], [run["output"] for run in runs("tune")])

    named, folder = tiny.tune(self.store, ["--run_name=tiny"])  # a name is not in the key
    self.assertEqual((named.returncode, folder), (0, self.folder), named.stderr[-4000:])
    self.assertIn("  named tiny: the tune run %s" % manifest["key"][:16], named.stdout)
    trial_names = {run["key"]: run["run_names"] for run in runs("train")}
    self.assertEqual([trial_names[k] for k in manifest["details"]["trial_train_keys"]],
                     [["tiny-trial-%d" % n] for n in (1, 2, 3, 4)])
    self.assertEqual([run["run_names"] for run in runs("tune") if run["key"] == manifest["key"]],
                     [["tiny"]])


if __name__ == "__main__":
  absltest.main()
