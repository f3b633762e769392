"""The content-addressed store and stage keys."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

from absl.testing import absltest

from pipeline import code
from pipeline import digest
from pipeline import errors
from pipeline import planning
from pipeline import seeds
from pipeline import stage
from pipeline import store as storelib


def write(root, files):
  for name, data in files.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)


class TreeDigestTest(absltest.TestCase):

  def test_listing_is_sha256sum_format_and_sha256sum_checks_it(self):
    root = self.create_tempdir().full_path
    write(root, {"b.txt": b"bee\n", "a/z.bin": b"\x00\x01"})
    listing = digest.tree_listing(root)
    self.assertEqual(listing, "%s  a/z.bin\n%s  b.txt\n" % (
        hashlib.sha256(b"\x00\x01").hexdigest(), hashlib.sha256(b"bee\n").hexdigest()))
    self.assertEqual(digest.tree_digest(root), hashlib.sha256(listing.encode()).hexdigest())
    subprocess.run(["sha256sum", "--check", "--quiet"], input=listing.encode(), cwd=root,
                   check=True)

  def test_digest_follows_content_and_names_not_times(self):
    one, two = self.create_tempdir().full_path, self.create_tempdir().full_path
    write(one, {"x": b"1"})
    write(two, {"x": b"1"})
    os.utime(os.path.join(two, "x"), (0, 0))
    self.assertEqual(digest.tree_digest(one), digest.tree_digest(two))
    write(two, {"x": b"2"})
    self.assertNotEqual(digest.tree_digest(one), digest.tree_digest(two))
    os.rename(os.path.join(two, "x"), os.path.join(two, "y"))
    write(two, {"y": b"1"})
    self.assertNotEqual(digest.tree_digest(one), digest.tree_digest(two))

  def test_symlinks_are_refused(self):
    root = self.create_tempdir().full_path
    os.symlink("/etc/passwd", os.path.join(root, "link"))
    with self.assertRaisesRegex(ValueError, "symbolic link"):
      digest.tree_digest(root)


class StoreTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)

  def test_put_tree_publishes_read_only_under_digest(self):
    with self.store.staging() as out:
      write(out, {"a": b"A", "d/b": b"B"})
      expected = digest.tree_digest(out)
      got = self.store.put_tree(out)
    self.assertEqual(got, expected)
    path = self.store.object_path(got)
    self.assertEqual(digest.tree_digest(path), got)
    self.assertFalse(os.stat(os.path.join(path, "a")).st_mode & stat.S_IWUSR)
    with open(path + ".sha256") as f:
      self.assertEqual(hashlib.sha256(f.read().encode()).hexdigest(), got)
    self.assertEqual(os.listdir(os.path.join(self.store.root, "tmp")), [])

  def test_same_content_twice_is_stored_once(self):
    digests = []
    for _ in range(2):
      with self.store.staging() as out:
        write(out, {"a": b"A"})
        digests.append(self.store.put_tree(out))
    self.assertEqual(digests[0], digests[1])
    self.assertLen([n for n in os.listdir(os.path.join(self.store.root, "objects"))
                    if not n.endswith(".sha256")], 1)

  def test_failed_build_leaves_nothing_behind(self):
    def build(out, unused_run_dir):
      write(out, {"half": b"written"})
      raise RuntimeError("crash mid-stage")

    with self.assertRaisesRegex(RuntimeError, "crash"):
      stage.run(self.store, "s", {}, {}, {}, build)
    self.assertEqual(os.listdir(os.path.join(self.store.root, "objects")), [])
    self.assertEqual(os.listdir(os.path.join(self.store.root, "keys")), [])
    self.assertEqual(os.listdir(os.path.join(self.store.root, "tmp")), [])

  def test_file_digests_read_the_listing(self):
    with self.store.staging() as out:
      write(out, {"a": b"A", "d/b": b"B"})
      got = self.store.put_tree(out)
    self.assertEqual(self.store.file_digests(got), {"a": hashlib.sha256(b"A").hexdigest(),
                                                    "d/b": hashlib.sha256(b"B").hexdigest()})

  def test_verify_catches_a_modified_output(self):
    with self.store.staging() as out:
      write(out, {"a": b"A"})
      got = self.store.put_tree(out)
    self.store.verify(got)
    path = os.path.join(self.store.object_path(got), "a")
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
      f.write(b"tampered")
    with self.assertRaisesRegex(errors.Error, "damaged \\(files differ from the listing: a\\)"):
      self.store.verify(got)


  def test_equal_content_published_at_once_under_two_keys(self):
    """The publishing race: both publishers end with the one stored object, neither fails."""
    script = (
        "import os, sys\n"
        "from pipeline import store\n"
        "s = store.Store(sys.argv[1])\n"
        "for i in range(40):\n"
        "  with s.staging() as out:\n"
        "    with open(os.path.join(out, 'f'), 'w') as f: f.write('same %d' % i)\n"
        "    print(s.put_tree(out))\n")
    env = dict(os.environ, PYTHONPATH=code.ROOT)
    processes = [subprocess.Popen([sys.executable, "-c", script, self.store.root], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    results = [p.communicate(timeout=120) for p in processes]
    for process, (_, stderr) in zip(processes, results):
      self.assertEqual(process.returncode, 0, stderr)
    self.assertEqual(results[0][0], results[1][0])
    self.assertEqual(results[0][0], results[2][0])
    for digest_line in results[0][0].split():
      self.store.verify(digest_line)
    self.assertEqual(os.listdir(os.path.join(self.store.root, "tmp")), [])

  def test_staging_left_by_a_dead_process_is_removed_and_a_live_ones_kept(self):
    script = ("import os, sys, time\n"
              "from pipeline import store\n"
              "with store.Store(sys.argv[1]).staging() as out:\n"
              "  open(os.path.join(out, 'half'), 'w').close()\n"
              "  print(out, flush=True)\n"
              "  time.sleep(600)\n")
    env = dict(os.environ, PYTHONPATH=code.ROOT)
    folders = []
    for _ in range(2):
      process = subprocess.Popen([sys.executable, "-c", script, self.store.root], env=env,
                                 stdout=subprocess.PIPE, text=True)
      folders.append((process, process.stdout.readline().strip()))
    dead, live = folders
    dead[0].kill()
    dead[0].wait()
    try:
      self.assertEqual(self.store.remove_stale_staging(), [dead[1]])
      self.assertFalse(os.path.exists(dead[1]))
      self.assertTrue(os.path.isdir(live[1]))
      self.assertEqual(storelib.Store(self.store.root).remove_stale_staging(), [])
    finally:
      live[0].kill()
      live[0].wait()
    storelib.Store(self.store.root)  # opening a store cleans up
    self.assertEqual(os.listdir(os.path.join(self.store.root, "tmp")), [])


class StageTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    self.calls = 0

  def build(self, out, unused_run_dir):
    self.calls += 1
    write(out, {"result": b"42"})
    return {"answer": 42}

  def run_stage(self, store=None, params=None, inputs=None):
    return stage.run(store or self.store, "s", params or {"p": 1}, inputs or {}, {},
                     self.build)

  def test_second_run_is_a_cache_hit_with_the_same_digest(self):
    first, second = self.run_stage(), self.run_stage()
    self.assertFalse(first.cached)
    self.assertTrue(second.cached)
    self.assertEqual(self.calls, 1)
    self.assertEqual((first.key, first.digest), (second.key, second.digest))
    self.assertRegex(first.digest, "^[0-9a-f]{64}$")
    self.assertEqual(second.manifest["details"], {"answer": 42})

  def test_a_flag_or_an_input_change_gives_a_new_key(self):
    base = self.run_stage().key
    self.assertNotEqual(self.run_stage(params={"p": 2}).key, base)
    self.assertNotEqual(self.run_stage(inputs={"x": "0" * 64}).key, base)

  def test_the_key_covers_the_build_functions_module_and_its_imports(self):
    record = self.run_stage().manifest["key_record"]["code"]
    self.assertEqual(record, code.code_record(self.build))
    self.assertIn("tests/store_test.py", record)  # where self.build is defined
    self.assertIn("pipeline/store.py", record)  # imported by it
    self.assertIn("pipeline/digest.py", record)  # imported by store.py
    self.assertNotIn("seg/training/train.py", record)
    with open(os.path.join(code.ROOT, "pipeline/store.py"), "rb") as f:
      self.assertEqual(record["pipeline/store.py"], hashlib.sha256(f.read()).hexdigest())


  def test_working_directory_and_store_path_do_not_change_the_key(self):
    first = self.run_stage()
    other_store = storelib.Store(self.create_tempdir().full_path)
    cwd = os.getcwd()
    try:
      os.chdir(self.create_tempdir().full_path)
      moved = self.run_stage(store=other_store)
    finally:
      os.chdir(cwd)
    self.assertFalse(moved.cached)
    self.assertEqual((first.key, first.digest), (moved.key, moved.digest))

  def test_manifest_records_provenance(self):
    manifest = self.run_stage().manifest
    self.assertEqual(manifest["key"], digest.record_digest(manifest["key_record"]))
    self.assertIn("wall_seconds", manifest["provenance"])
    self.assertIn("requirements_lock", manifest["key_record"]["runtime"])

  def test_verify_on_hit_catches_a_tampered_output(self):
    first = self.run_stage()
    path = os.path.join(first.path, "result")
    os.chmod(first.path, 0o755)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
      f.write(b"43")
    self.assertTrue(self.run_stage().cached)  # unchecked by default: a hit is cheap
    checking = storelib.Store(self.store.root, verify_on_hit=True)
    with self.assertRaisesRegex(errors.Error, "a cache hit of the s stage \\(--verify_store\\) "
                                "needs, is damaged .*result"):
      self.run_stage(store=checking)

  def damaged_input(self, damage):
    """A stored upstream output ("made by up"), damaged in place by damage(its folder)."""
    upstream = stage.run(self.store, "up", {}, {}, {}, self.build)
    os.chmod(upstream.path, 0o755)
    for name in os.listdir(upstream.path):
      os.chmod(os.path.join(upstream.path, name), 0o644)
    damage(upstream.path)
    return upstream

  def test_a_damaged_input_stops_the_stage_and_nothing_is_stored(self):
    def flip_a_bit(folder):
      with open(os.path.join(folder, "result"), "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))

    damages = {"flipped bit": (flip_a_bit, "result"),
               "deleted file": (lambda d: os.unlink(os.path.join(d, "result")), "result"),
               "added file": (lambda d: write(d, {"extra": b"x"}), "extra")}
    for name, (damage, named_file) in damages.items():
      with self.subTest(name):
        self.store = storelib.Store(self.create_tempdir().full_path)
        upstream = self.damaged_input(damage)
        with self.assertRaises(errors.Error) as raised:
          self.run_stage(inputs={"up": upstream})
        message = str(raised.exception)
        for expected in (upstream.digest, "damaged", "files differ from the listing: "
                         + named_file, "input 'up', made by up", "--remove_damaged"):
          self.assertIn(expected, message)
        self.assertEqual(sorted(os.listdir(os.path.join(self.store.root, "keys"))),
                         [upstream.key + ".json"])  # the consumer stored nothing
        self.store.remove_output(upstream.digest)  # the fix the message gives
        self.assertFalse(stage.run(self.store, "up", {}, {}, {}, self.build).cached)
        self.assertFalse(self.run_stage(inputs={"up": upstream}).cached)

  def test_an_intact_input_is_read_and_its_digest_is_in_the_key(self):
    upstream = stage.run(self.store, "up", {}, {}, {}, self.build)
    result = self.run_stage(inputs={"up": upstream})
    self.assertEqual(result.manifest["key_record"]["inputs"], {"up": upstream.digest})
    self.assertEqual(result.key, self.run_stage(inputs={"up": upstream.digest}).key)

  def test_a_damaged_output_without_its_listing_is_named(self):
    upstream = self.damaged_input(lambda d: write(d, {"extra": b"x"}))
    os.unlink(upstream.path + ".sha256")
    self.assertEqual(self.store.damage(upstream.digest), "its files changed, and its listing "
                     "%s.sha256 is missing" % upstream.path)

  def test_noverify_inputs_builds_from_a_damaged_input(self):
    upstream = self.damaged_input(lambda d: write(d, {"extra": b"x"}))
    unchecked = storelib.Store(self.store.root, verify_inputs=False)
    self.assertFalse(self.run_stage(store=unchecked, inputs={"up": upstream}).cached)

  def test_a_manifest_lists_only_the_seeds_its_own_build_derived(self):
    seeds.derive_seed(7, "before the stage")

    def build(out, unused_run_dir):
      seeds.derive_seed(7, "inside")
      write(out, {"result": b"1"})
      return {}

    manifest = stage.run(self.store, "seeded", {}, {}, {}, build).manifest
    self.assertEqual(manifest["derived_seeds"],
                     {"7/inside": seeds.derive_seed(7, "inside")})

  def test_nested_seed_records_each_end_with_their_own_block(self):
    with seeds.recording_seeds() as outer:
      with seeds.recording_seeds() as inner:  # equal ({} == {}), not the same dict
        pass
      seeds.derive_seed(7, "after the inner block")
    self.assertEqual((list(outer), inner), (["7/after the inner block"], {}))

  def test_a_missing_output_is_rebuilt(self):
    first = self.run_stage()
    storelib.remove_tree(first.path)
    again = self.run_stage()
    self.assertFalse(again.cached)
    self.assertEqual(again.digest, first.digest)
    self.assertEqual(self.calls, 2)

  def test_an_unreadable_manifest_is_a_miss_not_a_traceback(self):
    first = self.run_stage()
    for broken in (b"{not json", b"[]", b"{}"):
      with open(self.store.manifest_path(first.key), "wb") as f:
        f.write(broken)
      with self.assertLogs(level="WARNING") as logs:
        again = self.run_stage()
      self.assertIn("unreadable manifest", logs.output[0])
      self.assertFalse(again.cached)
      self.assertEqual(again.digest, first.digest)
    self.assertTrue(self.run_stage().cached)

  def test_a_repeatable_stages_key_is_the_digest_of_its_key_record(self):
    record = stage.key_record("s", self.build, {"p": 1}, {}, {})
    self.assertEqual(sorted(record), ["code", "inputs", "params", "runtime", "stage"])
    planned = stage.plan("s", {"p": 1}, {}, {}, self.build)
    self.assertTrue(planned.repeatable)
    self.assertEqual((planned.record, planned.key), (record, digest.record_digest(record)))
    result = self.run_stage()
    self.assertEqual((result.key, result.manifest["key_record"]), (planned.key, record))
    self.assertNotIn("never_a_cache_hit", result.manifest)
    self.assertTrue(stage.execute(self.store, planned).cached)

  def test_an_unrepeatable_stage_is_never_a_cache_hit(self):
    runs = [stage.run(self.store, "s", {"p": 1}, {}, {}, self.build, repeatable=False)
            for _ in range(2)]
    self.assertEqual(self.calls, 2)
    self.assertEqual([r.cached for r in runs], [False, False])
    self.assertNotEqual(runs[0].key, runs[1].key)
    self.assertEqual(runs[0].digest, runs[1].digest)  # this build's output happens to be equal
    record = stage.key_record("s", self.build, {"p": 1}, {}, {})
    for result in runs:
      manifest = self.store.lookup(result.key)
      self.assertEqual(manifest["key"], digest.record_digest(manifest["key_record"]))
      self.assertEqual({k: v for k, v in manifest["key_record"].items() if k != "nonce"},
                       record)
      self.assertRegex(manifest["key_record"]["nonce"], "^[0-9a-f]{32}$")
      self.assertIn("randomness not derived from --seed", manifest["never_a_cache_hit"])
      self.assertIn("random nonce", manifest["never_a_cache_hit"])
    self.assertFalse(self.run_stage().cached)  # the repeatable stage hits neither
    self.assertEqual(self.calls, 3)

  def test_an_unrepeatable_plan_is_not_looked_up_even_with_its_key_stored(self):
    planned = stage.plan("s", {"p": 1}, {}, {}, self.build, repeatable=False)
    self.assertFalse(planned.repeatable)
    first, second = stage.execute(self.store, planned), stage.execute(self.store, planned)
    self.assertEqual((first.key, second.key), (planned.key, planned.key))
    self.assertEqual((first.cached, second.cached, self.calls), (False, False, 2))


class DryRunTest(absltest.TestCase):
  """A store opened for planning (pipeline/planning.py, --dry_run): stages are looked up, never
  built, and nothing is written; each stage that would compute says why."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.calls = 0

  def build(self, out, unused_run_dir):
    self.calls += 1
    write(out, {"result": b"42"})
    return {"answer": 42}

  def chain(self, store, rate=0.1, repeatable=True):
    """Two stages, the second reading the first: their Results or Planned."""
    first = stage.run(store, "first", {"rate": rate}, {}, {}, self.build)
    return first, stage.run(store, "second", {}, {"first": first}, {}, self.build,
                            repeatable=repeatable)

  def tree(self):
    """Every path under the store with its size and modification time."""
    found = []
    for folder, _, names in os.walk(self.root):
      for name in [""] + names:
        path = os.path.join(folder, name)
        found.append((path, os.lstat(path).st_size, os.lstat(path).st_mtime_ns))
    return sorted(found)

  def test_a_stored_chain_is_all_cache_hits_and_nothing_is_written(self):
    made = self.chain(storelib.Store(self.root))
    before, calls = self.tree(), self.calls
    planned = self.chain(storelib.Store(self.root, planning=True))
    self.assertEqual([(r.key, r.digest, r.cached) for r in planned],
                     [(r.key, r.digest, True) for r in made])
    self.assertEqual((self.tree(), self.calls), (before, calls))

  def test_a_changed_parameter_is_named_and_the_stage_after_waits_for_it(self):
    made = self.chain(storelib.Store(self.root))
    before = self.tree()
    store = storelib.Store(self.root, planning=True)
    first, second = self.chain(store, rate=0.2)
    self.assertIsInstance(first, stage.Planned)
    self.assertNotEqual(first.key, made[0].key)
    self.assertEqual((second.key, second.waiting_for), (None, "first"))
    outcome = planning.outcome(store, [first, second])
    self.assertEqual(outcome.results[0].reason,
                     "params.rate 0.1 → 0.2 since the stored run %s" % made[0].key[:16])
    self.assertTrue(outcome.results[1].reason.startswith("its key is known once first is made"))
    self.assertEqual(outcome.notes[-1], "dry run: 0 cache hits, 2 would compute; nothing was "
                                        "computed or written")
    self.assertEqual((self.tree(), self.calls), (before, 2))  # only the real run built

  def test_an_unrepeatable_stage_is_never_a_hit_and_a_missing_store_is_not_made(self):
    self.chain(storelib.Store(self.root), repeatable=False)
    store = storelib.Store(self.root, planning=True)
    second = planning.outcome(store, list(self.chain(store, repeatable=False))).results[1]
    self.assertIsInstance(second, stage.Planned)
    self.assertIn("never a cache hit", second.reason)
    made = self.chain(storelib.Store(self.root))[0]
    storelib.remove_tree(os.path.join(self.root, "objects", made.digest))  # as gc would
    first = planning.outcome(store, [self.chain(store)[0]]).results[0]
    self.assertEqual(first.reason, "its output is no longer in the store (removed by `store gc` "
                                   "or `store verify --remove_damaged`)")
    missing = os.path.join(self.root, "not-yet")
    store = storelib.Store(missing, planning=True)
    first = planning.outcome(store, [self.chain(store)[0]]).results[0]
    self.assertEqual(first.reason, "no first run is stored")
    self.assertFalse(os.path.exists(missing))


class StageCodeTest(absltest.TestCase):
  """Each stage's key sees an edit to its build module or a module that imports, and no
  other: checked on a scratch copy of the tree."""

  # Stage: the modules whose code records its key holds, the one that defines its build
  # function first (tune's key also holds the train stage's, which every trial's key holds).
  STAGES = {"synthetic": ["data_tools/synthetic.py"], "download": ["data_tools/download.py"],
            "partition": ["data_tools/partition.py"],
            "train": ["seg/training/train_stage.py"],
            "calibrate": ["seg/evaluation/calibrate_stage.py"],
            "evaluate": ["seg/evaluation/evaluate_stage.py"],
            "export": ["seg/serve/export_stage.py"],
            "tune": ["seg/tuning/tune.py", "seg/training/train_stage.py"],
            "release": ["seg/serve/release_stage.py"]}
  AFTER_TRAIN = {"calibrate", "evaluate", "export"}
  MODEL = {"train", "tune"} | AFTER_TRAIN
  TRAINING = {"train", "tune"}
  EVALUATION = {"calibrate", "evaluate"}
  # Edited file: the stages whose code record must change. A folder's name says which: model/
  # is in the model stages', training/ in train's (and so tune's), evaluation/ in calibrate's
  # and evaluate's, serve/ in export's and release's, tuning/ in tune's, drawing/ in those that
  # draw; configs/ is in none but tune's (hyperparam_file.py), data_tools/split_reader.py in
  # every model stage's.
  EDITS = {
      "data_tools/synthetic.py": {"synthetic"},
      "data_tools/download.py": {"download"},
      "data_tools/archive.py": {"synthetic", "download"},
      "data_tools/petset.py": {"download"},
      "data_tools/partition.py": {"partition"} | MODEL,
      "data_tools/split_reader.py": MODEL,
      # The stages after train load the model through seg/model/factory.py, not training/.
      "seg/training/train_stage.py": TRAINING,
      "seg/training/train.py": TRAINING,  # imported by train_stage.py's build
      "seg/training/steps.py": TRAINING,
      "seg/training/batches.py": TRAINING,
      "seg/training/__init__.py": TRAINING,
      "seg/model/factory.py": MODEL,
      "seg/model/unet.py": MODEL,
      "seg/model/backbones.py": MODEL,
      "seg/model/exact_layers.py": MODEL,
      "seg/model/micro_batch_layers.py": MODEL,
      "seg/model/__init__.py": MODEL,
      "seg/model/metrics.py": TRAINING | EVALUATION,  # IoU, calibration metrics; not export's
      "seg/model/calibration_error.py": TRAINING | EVALUATION,  # the ECE's bins, in metrics'
      "seg/model/temperature.py": AFTER_TRAIN,  # calibrate writes it; evaluate and export read it
      "kernels/fixed_order.py": MODEL,  # imported where a fixed-order layer runs
      "kernels/conv_kernels.h": MODEL,  # compiled code beside it
      "kernels/ops.cc": MODEL,
      "kernels/flags.bzl": MODEL,  # the compiler flags
      "kernels/BUILD.bazel": MODEL,  # which flags each file gets
      "seg/evaluation/inference.py": EVALUATION,
      "seg/evaluation/calibrate_stage.py": {"calibrate"},
      "seg/evaluation/calibrate.py": {"calibrate"},
      "seg/evaluation/evaluate_stage.py": {"evaluate"},
      "seg/evaluation/evaluate.py": {"evaluate"},
      "seg/evaluation/figures.py": EVALUATION,
      "seg/evaluation/__init__.py": EVALUATION,
      "seg/drawing/canvas.py": EVALUATION | {"tune"},
      "seg/drawing/__init__.py": EVALUATION | {"tune"},
      "seg/serve/export_stage.py": {"export"},  # export.py reads its output's layout there
      "seg/serve/export.py": {"export"},
      "seg/serve/saved_model_files.py": {"export", "release"},
      "seg/serve/release_stage.py": {"release"},
      "seg/serve/release.py": {"release"},
      "seg/serve/release_gate.py": {"release"},  # its check lines are in the release's record
      "seg/serve/__init__.py": {"export", "release"},
      "seg/serve/prediction.py": set(),  # predict is not a stage
      "seg/serve/photos.py": set(),
      "seg/serve/serving_image.py": set(),  # the serving image release_main prints
      "pipeline/names.py": set(),  # names releases and runs; builds nothing
      "pipeline/cli.py": set(),  # the binaries' flags and lines (the next command); builds nothing
      "pipeline/commands.py": set(),  # how a line names a command (packaged or Bazel)
      # Starts workers; what they compute is not its business.
      "seg/training/local_workers.py": set(),
      # How workers share the micro-batches: no bit depends on it.
      "seg/training/distribute.py": set(),
      # Resolves configs: the stages record the values, not this code.
      "seg/configs/config.py": set(),
      "seg/configs/config_flags.py": set(),
      "pipeline/determinism.py": set(),  # the switches: in every key as values, not as code
      "pipeline/seeds.py": set(STAGES),
      "pipeline/files.py": {"partition", "release"} | MODEL,
      "pipeline/stage.py": set(STAGES),
      "pipeline/imports.py": set(STAGES),  # how a key's code is found
      "seg/tuning/tune.py": {"tune"},
      "seg/tuning/sampler.py": {"tune"},
      "seg/tuning/journal.py": {"tune"},  # the study as an Optuna journal
      "pipeline/numpy_baseline.py": {"tune"},  # the sampler's NumPy
      "seg/tuning/search_pictures.py": {"tune"},
      "seg/tuning/__init__.py": {"tune"},
      "seg/configs/hyperparam_file.py": {"tune"},  # the names of its output file
      "seg/configs/__init__.py": {"tune"},
      "seg/configs/search_space.py": set(),  # reads and checks the space: tune records its values
      "seg/tuning/trial_table.py": set(),  # shows a tune output; builds nothing
      "pipeline/logs.py": set(),  # TensorBoard's links: a view of the store
      "pipeline/runs.py": set(),  # `store runs`
      "pipeline/planning.py": set(),  # --dry_run looks keys up; it builds nothing
      "data_tools/dataset.py": set(),  # chains the stages, builds nothing
      "seg/stages.py": set(),
      "seg/__init__.py": set(),
  }

  def code_digests(self, tree):
    script = ("import json, sys\n"
              "from pipeline import code, digest\n"
              "print(json.dumps({s: digest.record_digest([code.file_record(code.ROOT + '/' + p)"
              " for p in paths]) for s, paths in json.loads(sys.argv[1]).items()}))\n")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(self.STAGES)], cwd=tree,
                            env=dict(os.environ, PYTHONPATH=tree), capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)

  def test_an_edit_changes_the_keys_of_the_stages_that_run_it(self):
    tree = self.create_tempdir().full_path
    for package in code.PACKAGES:
      shutil.copytree(os.path.join(code.ROOT, package), os.path.join(tree, package))
    before = self.code_digests(tree)
    for edited, expected in self.EDITS.items():
      with open(os.path.join(tree, edited), "a") as f:
        f.write("\n# an edit\n")
      after = self.code_digests(tree)
      self.assertEqual({s for s in before if after[s] != before[s]}, expected, edited)
      before = after


if __name__ == "__main__":
  absltest.main()
