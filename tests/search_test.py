"""The tune stage's parts without training: the search space's checks, the sampler (a pure
function of its request, the same bits on emulated CPUs only with NumPy held at its baseline),
a trial's outcome, and the trial table."""

import json
import os
import sys

from absl.testing import absltest
from absl.testing import parameterized
import yaml

from pipeline import code
from pipeline import errors
from seg.configs import config
from seg.configs import search_space
from seg.tuning import trial_table
from seg.tuning import tune
from tests import synthetic_search as synthetic
from tests import tiny_pipeline as tiny

# Emulated CPUs whose NumPy loops differ: Haswell runs NumPy's X86_V3 (AVX2) ones, Westmere
# only the baseline (X86_V2) ones.
CPU_MODELS = ("Haswell-v4", "Westmere-v1")


def accept(overrides):
  config.resolve("synthetic", overrides=overrides)


def load_space(test, specs):
  path = os.path.join(test.create_tempdir().full_path, "space.json")
  with open(path, "w") as f:
    json.dump(specs, f)
  return search_space.load(path, accept)


class SearchSpaceTest(parameterized.TestCase):

  @parameterized.parameters("synthetic", "oxford_iiit_pet")
  def test_the_shipped_spaces_load(self, dataset):
    path = os.path.join(config.CONFIG_DIR, "search_spaces", dataset + ".json")
    space = search_space.load(path, lambda o: config.resolve(dataset, overrides=o))
    self.assertIn("learning_rate", space.names)
    self.assertTrue(next(p for p in space.parameters if p.name == "learning_rate").log)

  def test_a_range_of_a_float_is_stored_as_floats(self):
    space = load_space(self, {"learning_rate": {"low": 1, "high": 2}})
    self.assertEqual(space.record(), {"learning_rate": {"kind": "float", "low": 1.0,
                                                        "high": 2.0}})

  @parameterized.named_parameters(
      ("unknown_name", {"dropout": {"low": 0, "high": 1}}, "unknown hyperparameter 'dropout'"),
      ("low_not_below_high", {"epochs": {"low": 4, "high": 4}}, "low 4 ≥ high 4"),
      ("log_from_zero", {"learning_rate": {"low": 0, "high": 1, "log": True}}, "low > 0"),
      ("step_not_dividing", {"epochs": {"low": 1, "high": 4, "step": 2}}, "must divide"),
      ("float_for_an_integer", {"epochs": {"low": 1, "high": 4.5}}, "is an integer"),
      ("range_of_names", {"model_arch": {"low": 1, "high": 2}}, "is a name"),
      ("no_choices", {"batch_size": {"choices": []}}, "non-empty list"),
      ("a_choice_twice", {"batch_size": {"choices": [8, 8]}}, "lists a choice twice"),
      ("unknown_key", {"epochs": {"low": 1, "high": 4, "scale": 2}}, "needs \"choices\""),
      ("refused_by_training", {"batch_size": {"choices": [8, 7]}},
       "'batch_size' can take 7, which training refuses"),
      ("refused_inside_a_range", {"batch_size": {"low": 8, "high": 12}},
       "'batch_size' can take 9, which training refuses"),
      ("unknown_arch", {"model_arch": {"choices": ["resnet"]}}, "which training refuses"),
      ("not_an_object", [1], "must hold a JSON object"),
  )
  def test_a_bad_space_is_named(self, specs, expected):
    with self.assertRaisesRegex(errors.Error, "search space .*space.json") as raised:
      load_space(self, specs)
    self.assertIn(expected, str(raised.exception))


class SamplerTest(absltest.TestCase):

  def test_a_round_is_a_function_of_its_request(self):
    space = synthetic.space(self.create_tempdir().full_path)
    first = synthetic.run(space, rounds=3)
    self.assertEqual(synthetic.run(space, rounds=3), first)
    self.assertNotEqual(synthetic.run(space, seed=2, rounds=3), first)  # control

  def test_proposals_lie_in_the_space(self):
    for trial in synthetic.run(synthetic.space(self.create_tempdir().full_path), rounds=3):
      params = trial["params"]
      self.assertIn(params["batch_size"], (8, 16))
      self.assertIsInstance(params["epochs"], int)
      self.assertBetween(params["epochs"], 1, 20)
      self.assertBetween(params["learning_rate"], 0.0001, 0.1)

  def test_the_sampler_gives_the_same_bits_on_emulated_cpus(self):
    space = synthetic.space(self.create_tempdir().full_path)
    native = synthetic.run(space)
    with open(tiny.GOLDEN_TUNE) as f:
      self.assertEqual(synthetic.digest(native), json.load(f)["sampler"])
    for model in CPU_MODELS:
      self.assertEqual(synthetic.run(space, python=tiny.emulated(model)), native, model)

  def test_without_numpy_held_the_emulated_cpus_differ(self):  # the control of the above
    space = synthetic.space(self.create_tempdir().full_path)
    results = [synthetic.run(space, python=tiny.emulated(m), held=False) for m in CPU_MODELS]
    self.assertNotEqual(results[0], results[1])


class TrialTest(absltest.TestCase):

  def run_fake_trial(self, status, reason=None, error=None, stages=()):
    """tune.run_trial of a process that exits with status, having written a result record
    with reason, error and stages to its --result_json if reason is given."""
    record = {"exit": {"status": status, "reason": reason, "error": error},
              "stages": list(stages)}
    script = ("import json, sys\n"
              "path = [a for a in sys.argv if a.startswith('--result_json=')][0][14:]\n"
              "if %r:\n  with open(path, 'w') as f: f.write(%r)\n"
              "print('a stage line on stdout is not read')\n"
              "sys.exit(%d)\n" % (reason is not None, json.dumps(record), status))
    log = os.path.join(self.create_tempdir().full_path, "trial.log")
    return tune.run_trial(3, {"learning_rate": 0.5}, [sys.executable, "-c", script], log)

  def test_a_trained_trial_hands_back_its_train_stage_in_its_result_file(self):
    train = {"stage": "train", "output": "a" * 64, "key": "b" * 64, "cache_hit": True}
    self.assertEqual(self.run_fake_trial(0, "done", None, [train]), ("a" * 64, "b" * 64, True))

  def test_a_diverged_trial_is_a_failed_trial(self):
    self.assertIsNone(self.run_fake_trial(1, "diverged", "training diverged at epoch 1"))

  def test_any_other_failure_stops_the_search_naming_the_trial(self):
    with self.assertRaisesRegex(errors.Error, r"trial 3 \(--learning_rate=0.5\) failed with "
                                r"exit status 1: the store is damaged\nits output: "):
      self.run_fake_trial(1, "refused", "the store is damaged")
    with self.assertRaisesRegex(errors.Error, r"exit status 0: it wrote no .*trial\.json"):
      self.run_fake_trial(0)  # its stdout's line is not a result

  def test_the_best_trial_is_the_earliest_of_equals_and_the_table_puts_it_first(self):
    rows = [{"trial": 1, "round": 1, "params": {"learning_rate": 0.1}, "value": None},
            {"trial": 2, "round": 1, "params": {"learning_rate": 0.01}, "value": 0.5,
             "validation_loss": 0.7, "train_output": "c" * 64},
            {"trial": 3, "round": 2, "params": {"learning_rate": 0.001}, "value": 0.5,
             "validation_loss": 0.6, "train_output": "d" * 64}]
    self.assertEqual(tune.best_trial(rows)["trial"], 2)
    lines = trial_table.table(rows, ("learning_rate",))
    self.assertEqual([line.split()[0] for line in lines], ["trial", "2", "3", "1"])
    self.assertIn("0.001", lines[2])
    self.assertIn("diverged", lines[3])
    self.assertIsNone(tune.best_trial(rows[:1]))


class TuneFlagsTest(parameterized.TestCase):
  """What //seg:tune refuses before any stage runs: one error line, nothing stored (the same
  command without the flag runs: tests/tune_test.py)."""

  @parameterized.named_parameters(
      ("unseeded_dropout", ["--noseeded_dropout"], "neither the trials nor the best could be "
       "repeated"),
      ("a_searched_flag", ["--learning_rate=0.1"], "--learning_rate is searched by the search "
       "space"),
      ("no_parallel_trial", ["--parallel_trials=0"], "--parallel_trials=0: give at least 1"),
      ("no_trial", ["--trials=0"], "--trials=0: give at least 1"),
      ("resuming", ["--stop_after_epochs=1"], "--stop_after_epochs stops one run on purpose: a "
       "tune's trials run to the end"))
  def test_refused(self, flags, expected):
    store = os.path.join(self.create_tempdir().full_path, "store")
    result, _ = tiny.tune(store, flags)
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    errors_printed = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    self.assertLen(errors_printed, 1, result.stderr[-2000:])
    self.assertIn(expected, errors_printed[0])
    self.assertFalse(os.path.exists(store))


class DeployTest(absltest.TestCase):

  def test_the_katib_experiment_searches_the_shipped_space(self):
    with open(os.path.join(code.ROOT, "deploy", "k8s", "tune.yaml")) as f:
      experiment = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "Experiment")
    with open(os.path.join(config.CONFIG_DIR, "search_spaces", "oxford_iiit_pet.json")) as f:
      space = json.load(f)
    katib = {p["name"]: p["feasibleSpace"] for p in experiment["spec"]["parameters"]}
    self.assertEqual(sorted(katib), sorted(space))
    for name, spec in space.items():
      if "choices" in spec:
        self.assertEqual(katib[name]["list"], [str(c) for c in spec["choices"]], name)
        continue
      self.assertEqual((float(katib[name]["min"]), float(katib[name]["max"])),
                       (spec["low"], spec["high"]), name)
      self.assertEqual(int(katib[name].get("step", 1)), spec.get("step", 1), name)
      self.assertEqual(katib[name].get("distribution") == "logUniform", spec.get("log", False))


if __name__ == "__main__":
  absltest.main()
