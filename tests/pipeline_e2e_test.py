"""End to end through the binaries, as a user runs them: tiny synthetic data, fresh processes."""

import os
import subprocess

from absl.testing import absltest

from tests.tiny_pipeline import run
from tests.tiny_pipeline import stage_lines
from tests.tiny_pipeline import TINY


class PipelineTest(absltest.TestCase):

  def test_train_then_cache_hit_with_the_same_digests(self):
    store = self.create_tempdir().full_path
    first = run("seg/train", TINY + ["--store=" + store])
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    stages = stage_lines(first.stdout)
    self.assertEqual([s[0] for s in stages], ["synthetic", "download", "partition", "train"])
    self.assertFalse(any(s[3] for s in stages))
    second = run("seg/train", TINY + ["--store=" + store])
    self.assertEqual(second.returncode, 0, second.stderr[-3000:])
    again = stage_lines(second.stdout)
    self.assertEqual([s[:3] for s in again], [s[:3] for s in stages])
    self.assertTrue(all(s[3] for s in again), second.stdout)
    # The output is what its digest says, checkable without reproseg.
    train_digest = stages[-1][1]
    subprocess.run(["sha256sum", "--check", "--quiet", os.path.join("..", train_digest + ".sha256")],
                   cwd=os.path.join(store, "objects", train_digest), check=True)
    for name in ("weights.arrays", "fingerprint.json", "history.json", "metrics.json"):
      self.assertTrue(os.path.isfile(os.path.join(store, "objects", train_digest, name)), name)

  def test_partition_alone_shares_the_data_stages(self):
    store = self.create_tempdir().full_path
    data_flags = TINY[:4] + ["--store=" + store]
    part = run("data_tools/partition", data_flags)
    self.assertEqual(part.returncode, 0, part.stderr[-3000:])
    download = run("data_tools/download", data_flags)
    self.assertEqual(download.returncode, 0, download.stderr[-3000:])
    self.assertEqual(stage_lines(download.stdout),
                     [s[:3] + (True,) for s in stage_lines(part.stdout)[:2]])

  def test_offline_download_says_what_to_do_and_leaves_nothing(self):
    store = self.create_tempdir().full_path
    result = run("data_tools/download", ["--mirrors=http://127.0.0.1:1/",
                                         "--store=" + store])
    self.assertEqual(result.returncode, 1)
    self.assertIn("error: could not download images.tar.gz from any mirror", result.stderr)
    self.assertIn("--source=DIR", result.stderr)
    self.assertIn("--dataset=synthetic", result.stderr)
    self.assertNotIn("Traceback", result.stderr)
    self.assertEqual(os.listdir(os.path.join(store, "objects")), [])
    self.assertEqual(os.listdir(os.path.join(store, "keys")), [])

  def test_helpfull_documents_every_seed_and_switch(self):
    result = run("seg/train", ["--helpfull"])  # absl exits 1 after help
    for flag in ("--seed", "--[no]deterministic", "--[no]portable", "--inter_op_threads",
                 "--intra_op_threads", "--[no]onednn:", "--onednn_max_cpu_isa",
                 "--[no]seeded_dropout", "--[no]augment", "--store", "--dataset",
                 "--hyperparam_fn_path", "--flagfile"):
      self.assertIn(flag, result.stdout, flag)

  def test_bad_flag_values_are_named(self):
    for args, pattern in ((["--dataset=pets"], "dataset"),
                          (["--image_size=100"], "--image_size=100"),
                          (["--source=/nonexistent"], "--source=/nonexistent is not a folder"),
                          (["stray"], "unexpected arguments stray")):
      result = run("data_tools/partition", args + ["--store=" + self.create_tempdir().full_path])
      self.assertNotEqual(result.returncode, 0, args)
      self.assertIn(pattern, result.stderr, args)
      self.assertNotIn("Traceback", result.stderr, args)


if __name__ == "__main__":
  absltest.main()
