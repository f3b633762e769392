"""The content-addressed store and stage keys."""

import hashlib
import os
import stat
import subprocess

from absl.testing import absltest

from pipeline import code
from pipeline import digest
from pipeline import errors
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
      stage.run(self.store, "s", ("pipeline.store",), {}, {}, {}, build)
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
    with self.assertRaisesRegex(errors.Error, "modified on disk"):
      self.store.verify(got)


class StageTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    self.calls = 0

  def build(self, out, unused_run_dir):
    self.calls += 1
    write(out, {"result": b"42"})
    return {"answer": 42}

  def run_stage(self, store=None, params=None, inputs=None, modules=("pipeline.store",)):
    return stage.run(store or self.store, "s", modules, params or {"p": 1}, inputs or {}, {},
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

  def test_a_source_change_gives_a_new_key(self):
    base = stage.key_record("s", ("pipeline.store",), {}, {}, {})
    other = stage.key_record("s", ("pipeline.digest",), {}, {}, {})
    self.assertNotEqual(digest.record_digest(base), digest.record_digest(other))
    # Same module set, one file's bytes changed: the code record follows the bytes.
    record = code.code_record(("pipeline.store",))
    self.assertIn("pipeline/store.py", record)
    self.assertIn("pipeline/digest.py", record)  # imported by store.py
    self.assertNotIn("seg/training.py", record)
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
    with self.assertRaisesRegex(errors.Error, "modified on disk"):
      self.run_stage(store=checking)

  def test_a_missing_output_is_rebuilt(self):
    first = self.run_stage()
    storelib.remove_tree(first.path)
    again = self.run_stage()
    self.assertFalse(again.cached)
    self.assertEqual(again.digest, first.digest)
    self.assertEqual(self.calls, 2)


if __name__ == "__main__":
  absltest.main()
