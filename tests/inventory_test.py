"""The store command's logic (pipeline/inventory.py, compare.py) and its binary: ls, show,
verify, diff, gc. `check` needs a real stage binary: tests/pipeline_e2e_test.py."""

import os
import re
import subprocess
import sys

from absl.testing import absltest
import numpy as np

from pipeline import arrays
from pipeline import code
from pipeline import compare
from pipeline import errors
from pipeline import inventory
from pipeline import names
from pipeline import rebuild
from pipeline import stage
from pipeline import store as storelib


def _write(out, name, data):
  with open(os.path.join(out, name), "w") as f:
    f.write(data)


class StoreWithTwoOutputs(absltest.TestCase):
  """Stage "first" and stage "second", made from first's output, in a fresh store."""

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    self.first = stage.run(self.store, "first", {"p": 1}, {}, {}, self.build_first)
    self.second = stage.run(self.store, "second", {"q": 2}, {"first": self.first.digest}, {},
                            self.build_second)

  def build_first(self, out, run_dir):
    os.makedirs(os.path.join(run_dir, stage.LOGS_FOLDER))
    _write(run_dir, "checkpoint", "resume from here")
    _write(os.path.join(run_dir, stage.LOGS_FOLDER), "events", "a TensorBoard log")
    _write(out, "a.txt", "A")
    _write(out, "b.txt", "B")
    return {}

  def build_second(self, out, unused_run_dir):
    _write(out, "c.txt", "C")
    return {}

  def store_main(self, *args):
    return subprocess.run(
        [sys.executable, os.path.join(code.ROOT, "pipeline", "store_main.py"),
         "--store=" + self.store.root] + list(args), capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=code.ROOT), check=False)


class InventoryTest(StoreWithTwoOutputs):

  def test_ls_lists_newest_first_and_filters_by_stage(self):
    self.assertEqual([e.stage for e in inventory.entries(self.store)], ["second", "first"])
    self.assertEqual([e.key for e in inventory.entries(self.store, "first")], [self.first.key])
    result = self.store_main("ls")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn(self.first.key[:16], result.stdout)
    self.assertIn("2 outputs", result.stdout)

  def test_show_finds_by_prefix_and_traces_the_lineage(self):
    for prefix in (self.second.key[:8], self.second.digest[:8]):
      summary = inventory.summary(self.store, inventory.find(self.store, prefix))
      self.assertEqual([m["stage"] for m in summary["lineage"]], ["second", "first"])
      self.assertEqual(summary["lineage"][1]["output"], self.first.digest)
      self.assertEqual(sorted(summary["files"]), ["c.txt"])
    with self.assertRaisesRegex(errors.Error, "no key or output"):
      inventory.find(self.store, "ffffffff" if not self.first.key.startswith("f") else "0000")
    with self.assertRaisesRegex(errors.Error, "at least 4"):
      inventory.find(self.store, "ab")
    third = stage.run(self.store, "third", {}, {"first": self.first.digest,
                                                "second": self.second.digest}, {},
                      lambda out, unused_run_dir: _write(out, "d.txt", "D") or {})
    diamond = inventory.lineage(self.store, inventory.find(self.store, third.key[:8]))
    self.assertEqual([m["stage"] for m in diamond], ["third", "first", "second"])
    result = self.store_main("show", self.first.digest[:10])
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('"stage": "first"', result.stdout)

  def test_linked_outputs_are_cache_hits_in_the_other_store_and_removing_it_keeps_them(self):
    other = storelib.Store(self.create_tempdir().full_path)
    inventory.link_outputs(self.store, other, [inventory.find(self.store, self.first.key[:8])])
    linked = os.path.join(other.object_path(self.first.digest), "a.txt")
    self.assertTrue(os.path.samefile(linked, os.path.join(self.first.path, "a.txt")))
    again = stage.run(other, "first", {"p": 1}, {}, {}, self.build_first)
    self.assertTrue(again.cached)
    # Negative control: the output not linked is built there.
    second = stage.run(other, "second", {"q": 2}, {"first": self.first.digest}, {},
                       self.build_second)
    self.assertFalse(second.cached)
    storelib.remove_tree(other.root)
    self.assertEqual(inventory.verify(self.store), {})

  def test_verify_finds_a_flipped_byte_a_deleted_file_and_an_added_file(self):
    self.assertEqual(inventory.verify(self.store), {})
    path = self.first.path
    os.chmod(path, 0o755)
    for damage in ("flip", "delete", "add"):
      with self.subTest(damage=damage):
        if damage == "flip":
          os.chmod(os.path.join(path, "a.txt"), 0o644)
          _write(path, "a.txt", "Z")
        elif damage == "delete":
          os.unlink(os.path.join(path, "b.txt"))
        else:
          _write(path, "extra.txt", "?")
        damaged = inventory.verify(self.store)
        self.assertEqual(list(damaged), [self.first.digest])
        self.assertEqual(inventory.verify(self.store, [self.second.digest]), {})
        result = self.store_main("verify")
        self.assertEqual(result.returncode, errors.DAMAGED)
        self.assertIn("DAMAGED " + self.first.digest, result.stdout)
    self.assertIn("a.txt, b.txt, extra.txt", damaged[self.first.digest])

  def test_verify_remove_damaged_removes_only_the_damaged_output(self):
    os.chmod(self.first.path, 0o755)
    _write(self.first.path, "extra.txt", "?")
    result = self.store_main("verify", "--remove_damaged")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("removed " + self.first.digest, result.stdout)
    self.assertFalse(os.path.exists(self.first.path))
    self.assertFalse(os.path.exists(self.first.path + ".sha256"))
    self.assertTrue(os.path.isdir(self.second.path))
    self.assertIsNone(self.store.lookup(self.first.key))  # its stage runs again
    self.assertEqual(self.store_main("verify").stdout, "every output checked is intact\n")

  def test_gc_removes_what_no_manifest_needs_and_keeps_tensorboard_logs(self):
    with self.store.staging() as out:
      _write(out, "orphan", "no manifest refers to me")
      orphan = self.store.put_tree(out)
    unfinished = self.store.run_dir("0" * 64)
    os.makedirs(unfinished)
    dry = self.store_main("gc")
    self.assertEqual(dry.returncode, 0, dry.stderr)
    self.assertIn("would remove " + self.store.object_path(orphan), dry.stdout)
    checkpoint = os.path.join(self.store.run_dir(self.first.key), "checkpoint")
    logs = os.path.join(self.store.run_dir(self.first.key), stage.LOGS_FOLDER)
    self.assertIn("would remove " + checkpoint, dry.stdout)
    self.assertNotIn(logs, dry.stdout)
    self.assertTrue(os.path.isdir(self.store.object_path(orphan)))
    real = self.store_main("gc", "--nodry_run")
    self.assertEqual(real.returncode, 0, real.stderr)
    self.assertFalse(os.path.exists(self.store.object_path(orphan)))
    self.assertFalse(os.path.exists(self.store.object_path(orphan) + ".sha256"))
    self.assertFalse(os.path.exists(checkpoint))
    self.assertTrue(os.path.isfile(os.path.join(logs, "events")))  # runs stay comparable
    self.assertTrue(os.path.isdir(unfinished))  # a run that may still resume
    self.assertEqual(inventory.verify(self.store), {})
    self.assertTrue(stage.run(self.store, "first", {"p": 1}, {}, {}, self.build_first).cached)

  def test_gc_lists_a_file_where_a_finished_runs_folder_belongs(self):
    stray = self.store.run_dir(self.second.key)
    _write(os.path.dirname(stray), os.path.basename(stray), "not a folder")
    self.assertIn(stray, inventory.garbage(self.store))

  def test_gc_is_refused_while_a_stage_runs(self):
    with self.store.lock("1" * 64):
      with self.assertRaisesRegex(errors.Error, "a stage is running"):
        with self.store.exclusive():
          pass
      result = self.store_main("gc", "--nodry_run")
    self.assertEqual(result.returncode, 1)
    self.assertIn("error: a stage is running", result.stderr)


class NamesTest(StoreWithTwoOutputs):
  """Releases and run names (pipeline/names.py) as the store's commands find them."""

  def test_versions_are_idempotent_never_reused_and_a_cut_publish_is_finished(self):
    self.assertEqual(names.publish(self.store, "model", self.first.digest)[0], 1)
    self.assertEqual(names.publish(self.store, "model", self.first.digest)[0], 1)
    base = names.folder(self.store, "model")
    os.rename(os.path.join(base, "1"), os.path.join(base, ".staging-1"))  # cut before rename
    version, folder = names.publish(self.store, "model", self.second.digest)
    self.assertEqual(version, 2)
    self.assertEqual(sorted(os.listdir(base)), ["1", "2", "versions.json"])
    self.assertEqual(sorted(os.listdir(folder)), ["c.txt"])
    self.assertEqual(inventory.find(self.store, "releases/model")["key"], self.second.key)
    self.assertEqual(inventory.find(self.store, "releases/model/1")["key"], self.first.key)
    for ref, error in (("releases/model/3", "model has versions 1, 2, not 3"),
                       ("releases/..", "'..' is not a release name"),
                       ("releases/other", "no release is named other")):
      with self.subTest(ref=ref), self.assertRaisesRegex(errors.Error, re.escape(error)):
        inventory.find(self.store, ref)

  def test_a_release_and_a_lineage_take_the_newest_run_that_made_an_output(self):
    names.publish(self.store, "model", self.first.digest)
    again = stage.run(self.store, "first", {"p": 1, "new": "key, same bits"}, {}, {},
                      self.build_first)
    self.assertEqual(again.digest, self.first.digest)
    self.assertEqual(inventory.find(self.store, "releases/model")["key"], again.key)
    chain = inventory.lineage(self.store, inventory.find(self.store, self.second.key))
    self.assertEqual([m["key"] for m in chain], [self.second.key, again.key])

  def test_a_name_whose_run_is_gone_says_so(self):
    names.name_run(self.store, "kept", self.first.key)
    os.unlink(os.path.join(self.store.root, "keys", self.first.key + ".json"))
    with self.assertRaisesRegex(errors.Error, "the run name kept is on the key %s, no longer "
                                "in" % self.first.key):
      inventory.find(self.store, "kept")

  def test_renaming_a_group_drops_its_other_names(self):
    names.rename_runs(self.store, {"s-trial-1": self.first.key, "s-trial-2": self.second.key,
                                   "s-trial-20": self.first.key, "other": self.first.key})
    names.rename_runs(self.store, {"s-trial-1": self.second.key}, dropped=r"s-trial-\d+")
    self.assertEqual(names.run_names(self.store),
                     {"other": self.first.key, "s-trial-1": self.second.key})


class DiffTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)

  def weights(self, seed, tweak):
    def build(out, unused_run_dir):
      named = [("kernel", np.arange(6, dtype=np.float32).reshape(2, 3)),
               ("bias", np.zeros(3, np.float32))]
      if tweak:
        named[0][1][1, 2] += 0.25
      arrays.save(os.path.join(out, "weights.arrays"), named)
      _write(out, "notes.txt", "same in both")
      return {"validation": {"iou": 0.5 + tweak}}
    return stage.run(self.store, "train", {"lr": 0.1}, {}, {"seed": seed}, build)

  def test_differences_of_nested_records(self):
    self.assertEqual(compare.differences({"a": {"b": 1, "c": 2}, "d": [1]},
                                         {"a": {"b": 1, "c": 3}, "e": 0}),
                     [("a.c", 2, 3), ("d", [1], "(absent)"), ("e", "(absent)", 0)])
    self.assertEqual(compare.differences({"x": 1}, {"x": 1}), [])

  def test_equal_and_differing_variables_are_told_apart(self):
    a, b = self.weights(42, 0), self.weights(7, 1)
    found = compare.output_differences(self.store, a.manifest, self.store, b.manifest)
    self.assertEqual(found["files"], ["weights.arrays"])
    self.assertEqual(found["arrays"]["weights.arrays"],
                     [compare.VariableDifference("kernel", "differ", 0.25),
                      compare.VariableDifference("bias", "equal")])
    same = compare.output_differences(self.store, a.manifest, self.store, a.manifest)
    self.assertEqual(same, {"files": [], "arrays": {}})  # negative control

  def test_diff_command_names_the_seed_the_metric_and_the_variable(self):
    a, b = self.weights(42, 0), self.weights(7, 1)
    result = subprocess.run(
        [sys.executable, os.path.join(code.ROOT, "pipeline", "store_main.py"),
         "--store=" + self.store.root, "diff", a.key[:8], b.digest[:8]],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=code.ROOT),
        check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    for expected in ("params same", "code same", "runtime 1 differs",
                     "determinism.seed 42 7", "validation.iou 0.5 1.5",
                     "files 1 differs: weights.arrays", "0.25 kernel", "equal bias"):
      self.assertIn(expected, lines, result.stdout)


class RebuildCommandTest(absltest.TestCase):

  def manifest(self, argv0):
    return {"output": "ab" * 32, "provenance": {
        "argv": [argv0, "--seed=7", "--store=/old"], "working_directory": "/nonexistent"}}

  def test_the_recorded_binary_runs_as_a_module_into_the_scratch_store(self):
    argv, cwd, env = rebuild.command(
        self.manifest("/b/seg/train.runfiles/reproseg/seg/train_main.py"), "/scratch")
    self.assertEqual(argv, [sys.executable, "-m", "seg.train_main", "--seed=7", "--store=/old",
                            "--store=/scratch"])
    self.assertEqual(cwd, os.getcwd())  # the recorded folder is gone
    self.assertEqual(env["PYTHONPATH"], code.source_tree())

  def test_a_script_outside_reproseg_cannot_be_rebuilt(self):
    with self.assertRaisesRegex(errors.Error, "not by a reproseg stage binary"):
      rebuild.command(self.manifest("/usr/bin/ipython"), "/scratch")


if __name__ == "__main__":
  absltest.main()
