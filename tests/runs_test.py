"""`store runs` (pipeline/runs.py): a stage's runs as one table, the parameters that differ
and the metrics, sorted and as JSON; through the store binary too."""

import csv
import io
import json
import os
import subprocess
import sys
from unittest import mock

from absl.testing import absltest

from pipeline import cli
from pipeline import code
from pipeline import commands
from pipeline import errors
from pipeline import inventory
from pipeline import logs
from pipeline import names
from pipeline import runs
from pipeline import stage
from pipeline import store as storelib


class StoreWithRuns(absltest.TestCase):
  """Three train runs and a run of a stage without headline metrics, in a fresh store."""

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    # Three train runs: two learning rates under seed 42, one under seed 7; a stage that
    # HEADLINE_METRICS does not list.
    self.keys = [self.add_run("train", {"learning_rate": lr, "epochs": 2}, {"seed": seed},
                          {"validation": {"iou": iou, "loss": 1 - iou, "examples": 9},
                           "headline": "validation IoU %.4f" % iou})
                 for lr, seed, iou in ((0.1, 42, 0.5), (0.01, 42, 0.7), (0.01, 7, 0.6))]
    self.add_run("survey", {}, {"seed": 42}, {"count": 3, "mean": 0.5, "flag": True,
                                              "note": "text"})

  def add_run(self, name, params, determinism_record, details, inputs=None):
    def build(out, unused_run_dir):
      with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(details, f)
      return details
    return stage.run(self.store, name, params, inputs or {}, determinism_record, build).key

  def store_main(self, *args, status=0):
    """The store binary's stdout and stderr, once it exited with status."""
    result = subprocess.run(
        [sys.executable, os.path.join(code.ROOT, "pipeline", "store_main.py")] + list(args) +
        ["--store=" + self.store.root], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=code.ROOT), check=False)
    self.assertEqual(result.returncode, status, result.stderr)
    return result.stdout + result.stderr


class RunsTest(StoreWithRuns):

  def test_only_the_parameters_that_differ_are_columns_with_the_headline_metrics(self):
    table = runs.table(self.store, "train")
    self.assertEqual(table.parameters,
                     ("params.learning_rate", "runtime.determinism.seed"))
    self.assertEqual(table.metrics, ("validation.iou", "validation.loss"))
    self.assertEqual([r["key"] for r in table.rows], self.keys[::-1])  # newest first
    self.assertEqual(table.rows[0]["parameters"],
                     {"params.learning_rate": 0.01, "runtime.determinism.seed": 7})

  def test_sorted_by_a_metric_either_way(self):
    best_first = runs.table(self.store, "train", sort_by="validation.iou")
    self.assertEqual([r["metrics"]["validation.iou"] for r in best_first.rows], [0.7, 0.6, 0.5])
    lowest_loss = runs.table(self.store, "train", sort_by="validation.loss", ascending=True)
    self.assertEqual(lowest_loss.rows[0]["key"], self.keys[1])

  def test_a_stage_without_headline_metrics_shows_every_number_and_metrics_choose(self):
    self.assertEqual(runs.table(self.store, "survey").metrics, ("count", "mean"))
    self.assertEqual(runs.table(self.store, "train", metrics=["validation.examples"]).metrics,
                     ("validation.examples",))

  def test_none_and_absent_are_told_apart_and_values_are_shown_in_full(self):
    self.add_run("probe", {"momentum": None, "weights": "a" * 64, "rate": 0.0010001}, {}, {})
    self.add_run("probe", {"weights": "b" * 64, "rate": 0.001}, {}, {"score": 1.0})
    table = runs.table(self.store, "probe")
    self.assertEqual(table.parameters, ("params.momentum", "params.rate", "params.weights"))
    older, newer = table.rows[1], table.rows[0]
    self.assertEqual(older["parameters"]["params.momentum"], None)
    self.assertNotIn("params.momentum", newer["parameters"])
    self.assertNotIn("score", older["metrics"])
    text = runs.lines(table)
    self.assertEqual(text[2].split()[2:], ["null", "0.0010001", "a" * 16 + "…", "-"])
    self.assertEqual(text[1].split()[2:], ["-", "0.001", "b" * 16 + "…", "1"])
    self.assertEqual([r["key"] for r in runs.table(self.store, "probe", sort_by="score").rows],
                     [newer["key"], older["key"]])  # a run without the metric goes last

  def test_errors_name_the_stage_or_the_metric(self):
    with self.assertRaisesRegex(errors.Error, "holds no calibrate run"):
      runs.table(self.store, "calibrate")
    with self.assertRaisesRegex(errors.Error, "--sort_by=accuracy is not a metric shown "
                                "\\(validation.iou, validation.loss\\)"):
      runs.table(self.store, "train", sort_by="accuracy")
    with self.assertRaisesRegex(errors.Error, "no train run has the metric validaton.iou; "
                                "they have validation.examples, validation.iou"):
      runs.table(self.store, "train", metrics=["validaton.iou"])

  def test_the_store_binary_prints_the_table_and_json_that_parses(self):
    def store_main(*args):
      return self.store_main("runs", *args)

    text = store_main("--sort_by=validation.iou")
    lines = text.splitlines()
    self.assertEqual(lines[0].split(), ["key", "started", "(UTC)", "params.learning_rate",
                                        "runtime.determinism.seed", "validation.iou",
                                        "validation.loss"])
    self.assertTrue(lines[1].startswith(self.keys[1][:16]))
    self.assertIn("3 train runs", text)
    listed = json.loads(store_main("--json"))
    self.assertEqual([r["key"] for r in listed["runs"]], self.keys[::-1])
    self.assertEqual(listed["parameters"], ["params.learning_rate", "runtime.determinism.seed"])
    self.assertEqual([r["run_names"] for r in listed["runs"]], [[], [], []])


class JoinTest(StoreWithRuns):
  """Rows joined with the runs they were made from: each train run of setUp evaluated, and the
  best released."""

  def setUp(self):
    super().setUp()
    self.outputs = {key: inventory.find(self.store, key)["output"] for key in self.keys}
    self.evaluations = [
        self.add_run("evaluate", {"split": "test"}, {"seed": seed},
                     {"mean_iou": iou, "pixel_accuracy": 0.9 + iou / 10,
                      "ece": {"calibrated": 0.01}}, inputs={"train": self.outputs[key]})
        for key, seed, iou in zip(self.keys, (42, 42, 7), (0.45, 0.65, 0.55))]
    evaluated = inventory.find(self.store, self.evaluations[1])["output"]
    self.release = self.add_run("release", {"min_pixel_accuracy": 0.92}, {"seed": 42},
                                {"checks": ["pixel accuracy 0.9650 >= 0.92"]},
                                inputs={"evaluate": evaluated})

  def test_an_evaluate_row_shows_its_train_runs_parameters_beside_its_metrics(self):
    table = runs.table(self.store, "evaluate")
    self.assertIn("train.params.learning_rate", table.parameters)
    self.assertIn("inputs.train", table.parameters)
    self.assertNotIn("train.params.epochs", table.parameters)  # the same in every row
    self.assertEqual(table.metrics, ("mean_iou", "pixel_accuracy", "ece.calibrated"))
    joined = {r["key"]: (r["parameters"]["train.params.learning_rate"],
                         r["metrics"]["mean_iou"], r["lineage"]) for r in table.rows}
    for evaluation, train, rate, iou in zip(self.evaluations, self.keys, (0.1, 0.01, 0.01),
                                            (0.45, 0.65, 0.55)):
      self.assertEqual(joined[evaluation], (rate, iou, {"train": train}))
    upstream = runs.table(self.store, "evaluate", metrics=["mean_iou", "train.validation.iou"])
    self.assertEqual({r["metrics"]["mean_iou"]: r["metrics"]["train.validation.iou"]
                      for r in upstream.rows}, {0.45: 0.5, 0.65: 0.7, 0.55: 0.6})

  def test_a_release_row_shows_the_metrics_of_its_evaluation_and_both_lineages(self):
    row, = runs.table(self.store, "release").rows
    self.assertEqual(row["metrics"], {"evaluate.mean_iou": 0.65,
                                      "evaluate.pixel_accuracy": 0.9 + 0.65 / 10,
                                      "evaluate.ece.calibrated": 0.01})
    self.assertEqual(row["lineage"], {"evaluate": self.evaluations[1], "train": self.keys[1]})

  def test_csv_and_markdown_hold_the_tables_values(self):
    table = runs.table(self.store, "evaluate", sort_by="mean_iou")
    rows = list(csv.DictReader(io.StringIO(runs.to_csv(table))))
    self.assertEqual([(r["train.params.learning_rate"], r["mean_iou"]) for r in rows],
                     [("0.01", "0.65"), ("0.01", "0.55"), ("0.1", "0.45")])
    self.assertEqual(rows[0]["key"], self.evaluations[1])  # in full
    self.assertEqual(rows[0]["inputs.train"], self.outputs[self.keys[1]])
    lines = runs.markdown(table).splitlines()
    self.assertEqual(len(lines), 2 + 3)
    self.assertEqual(lines[1], "|" + "---|" * len(lines[0].split(" | ")))
    header = [cell.strip() for cell in lines[0].strip("| ").split(" | ")]
    first = [cell.strip() for cell in lines[2].strip("| ").split(" | ")]
    self.assertEqual(dict(zip(header, first))["train.params.learning_rate"], "0.01")
    self.assertEqual(dict(zip(header, first))["mean_iou"], "0.65")
    self.add_run("probe", {"text": "a|b"}, {}, {})
    self.add_run("probe", {"text": "c"}, {}, {})
    self.assertIn('"a\\|b"', runs.markdown(runs.table(self.store, "probe")))

  def test_the_store_binary_prints_each_format_and_refuses_two(self):
    markdown = self.store_main("runs", "--stage=evaluate", "--format=md")
    self.assertTrue(markdown.startswith("| key | started (UTC) | "), markdown)
    self.assertIn("train.params.learning_rate", markdown.splitlines()[0])
    listed = json.loads(self.store_main("runs", "--stage=evaluate", "--format=json"))
    self.assertEqual(listed, json.loads(self.store_main("runs", "--stage=evaluate", "--json")))
    self.assertEqual(sorted(r["lineage"]["train"] for r in listed["runs"]), sorted(self.keys))
    self.assertIn("give either --json or --format=csv",
                  self.store_main("runs", "--json", "--format=csv", status=2))


class TensorBoardLinksTest(StoreWithRuns):
  """<store>/tensorboard/ (pipeline/logs.py): a link per run with logs, by its names, else by
  stage and key; kept up to date by `store name`."""

  def add_logged_run(self, name, params):
    def build(out, run_dir):
      os.makedirs(os.path.join(run_dir, stage.LOGS_FOLDER))
      with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(params, f)
      return {}
    return stage.run(self.store, name, params, {}, {}, build).key

  def links(self):
    folder = os.path.join(self.store.root, logs.FOLDER)
    return {name: os.path.realpath(os.path.join(folder, name)) for name in os.listdir(folder)}

  def test_links_name_the_runs_with_logs_and_follow_their_names(self):
    first, second = self.add_logged_run("train", {"a": 1}), self.add_logged_run("evaluate", {})
    logs.refresh(self.store)
    folder_of = lambda key: os.path.join(self.store.run_dir(key), stage.LOGS_FOLDER)
    self.assertEqual(self.links(), {"train-" + first[:16]: folder_of(first),
                                    "evaluate-" + second[:16]: folder_of(second)})
    self.store_main("name", first[:8], "baseline")
    self.assertEqual(self.links(), {"baseline": folder_of(first),
                                    "evaluate-" + second[:16]: folder_of(second)})
    self.store_main("name", second[:8], "baseline")  # the name moves: so does its link
    self.assertEqual(self.links(), {"train-" + first[:16]: folder_of(first),
                                    "baseline": folder_of(second)})
    folder = os.path.join(self.store.root, logs.FOLDER)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
      f.write("a file of the user's is left alone")
    os.symlink("/elsewhere", os.path.join(folder, "mine"))  # and so is a link of the user's,
    os.symlink(folder_of(first), os.path.join(folder, "baseline.123.tmp"))  # or in the making
    logs.refresh(self.store)
    self.assertTrue({"notes.txt", "mine", "baseline.123.tmp"} <= set(self.links()))

  def test_a_refresh_that_cannot_write_warns_and_lets_the_command_end(self):
    self.add_logged_run("train", {"a": 1})
    with open(os.path.join(self.store.root, logs.FOLDER), "w") as f:
      f.write("a file where the links' folder goes")
    with self.assertLogs(level="WARNING") as logged:
      logs.refresh(self.store)
    self.assertIn("were not brought up to date", logged.output[0])

  def test_a_store_this_process_cannot_write_is_left_as_it_is(self):
    self.add_logged_run("train", {"a": 1})
    self.store.writable = False  # as Store finds a read-only mount (tests as root cannot chmod)
    logs.refresh(self.store)
    self.assertFalse(os.path.exists(os.path.join(self.store.root, logs.FOLDER)))
    self.store.writable = True
    logs.refresh(self.store)
    self.assertLen(self.links(), 1)


class RunNamesTest(StoreWithRuns):
  """Run names (pipeline/names.py): given by `store name` (and --run_name, tests/tune_test.py),
  shown by `store runs` and `ls`, and taken for a key by the store's commands."""

  def test_a_name_is_shown_and_taken_for_the_key(self):
    self.assertIn("named baseline: the train run %s" % self.keys[0][:16],
                  self.store_main("name", self.keys[0][:8], "baseline"))
    table = runs.table(self.store, "train")
    self.assertEqual([r["run_names"] for r in table.rows], [[], [], ["baseline"]])
    lines = runs.lines(table)
    self.assertEqual(lines[0].split()[:3], ["key", "name", "started"])
    self.assertEqual(lines[3].split()[:2], [self.keys[0][:16], "baseline"])
    self.assertEqual(lines[1].split()[1], "-")
    shown = json.loads(self.store_main("show", "baseline"))
    self.assertEqual((shown["key"], shown["run_names"]), (self.keys[0], ["baseline"]))
    self.assertIn("baseline                       train %s" % self.keys[0][:16],
                  self.store_main("ls"))

  def test_a_name_given_to_another_run_moves_there(self):
    self.assertIsNone(names.name_run(self.store, "baseline", self.keys[0]))
    self.assertIn("named baseline: the train run %s (before: %s)" % (
        self.keys[1][:16], self.keys[0][:16]), self.store_main("name", self.keys[1], "baseline"))
    self.assertEqual(names.run_names(self.store), {"baseline": self.keys[1]})
    self.assertEqual(inventory.find(self.store, "baseline")["key"], self.keys[1])

  def test_the_next_command_does_not_carry_the_name(self):
    self.assertTrue(cli.next_command("//seg:evaluate", [
        "train", "--dataset=synthetic", "--run_name=a-b", "--run_name", "c-d", "-run_name=e",
        "--seed=7"]).endswith("run //seg:evaluate -- --dataset=synthetic --seed=7"))
    self.assertTrue(cli.next_command("//seg:evaluate", ["train", "--flagfile=f"]).endswith(
        " -- --flagfile=f --run_name="))  # the file may name this run
    self.assertIn("--run_name is for the stage commands",
                  self.store_main("ls", "--run_name=x-y", status=1))

  def test_the_packaged_next_command_names_the_wrapper(self):
    """From the flake's packages (their wrappers set REPROSEG_PACKAGED=1), the next line names
    the command on PATH, with the same flags, inside a Nix shell too; so does --help."""
    argv = ["train", "--dataset=synthetic", "--run_name=a-b", "--seed=7"]
    with mock.patch.dict(os.environ, {commands.PACKAGED_VARIABLE: "1", "IN_NIX_SHELL": "impure"}):
      self.assertEqual(cli.next_command("//seg:evaluate", argv),
                       "next: reproseg-evaluate --dataset=synthetic --seed=7")
      self.assertEqual(cli.next_command("//seg:predict", ["evaluate", "--dataset=synthetic"],
                                        ["--image=PHOTO.jpg"]),
                       "next: reproseg-predict --dataset=synthetic --image=PHOTO.jpg")
      self.assertEqual(cli.next_command("//data_tools:partition", ["download"]),
                       "next: reproseg-partition")
    for value in (None, "0"):
      with mock.patch.dict(os.environ):
        os.environ.pop("IN_NIX_SHELL", None)
        os.environ.pop(commands.PACKAGED_VARIABLE, None)
        if value is not None:
          os.environ[commands.PACKAGED_VARIABLE] = value
        self.assertEqual(cli.next_command("//seg:evaluate", argv),
                         "next: ./dev bazel run //seg:evaluate -- --dataset=synthetic --seed=7")
    # Every target a binary names next has a wrapper (tests/nix_test.py checks the names
    # against the flake's), and so has the fix of a damaged output.
    for target in ("//seg:evaluate", "//seg:predict", "//seg:train", "//data_tools:partition"):
      self.assertEqual(commands.PACKAGED_NAMES[target], "reproseg-" + target.split(":")[1])
    # --help's first line, a binary's docstring's: the same command.
    doc = "bazel run //seg:train -- [--dataset=synthetic] [flags]\n\nTrains the U-Net."
    with mock.patch.dict(os.environ, {commands.PACKAGED_VARIABLE: "1"}):
      self.assertEqual(cli.usage(doc), "reproseg-train [--dataset=synthetic] [flags]\n\n"
                                       "Trains the U-Net.")
    with mock.patch.dict(os.environ):
      os.environ.pop(commands.PACKAGED_VARIABLE, None)
      os.environ.pop("IN_NIX_SHELL", None)
      self.assertEqual(cli.usage(doc), "./dev " + doc)
    other = "bazel run //tests:x -- [flags]"  # no packaged command: left as it is
    with mock.patch.dict(os.environ, {commands.PACKAGED_VARIABLE: "1"}):
      self.assertEqual(cli.usage(other), other)
    with mock.patch.dict(os.environ, {commands.PACKAGED_VARIABLE: "1"}):
      self.assertEqual(self.store.remove_damaged_command("ab" * 32),
                       "reproseg-store verify --remove_damaged %s --store=%s"
                       % ("ab" * 32, self.store.root))

  def test_names_that_are_not_kubernetes_names_or_read_as_digests_are_refused(self):
    for bad, reason in (("Baseline", "not a run name"), ("lr_0.01", "not a run name"),
                        ("cafe", "could be read as a key or digest prefix"), ("", "not a")):
      with self.subTest(name=bad), self.assertRaisesRegex(errors.Error, reason):
        names.name_run(self.store, bad, self.keys[0])
    self.assertEqual(names.run_names(self.store), {})
    self.assertIn("'nobody' is neither a run's name nor a key",
                  self.store_main("show", "nobody", status=1))


if __name__ == "__main__":
  absltest.main()
