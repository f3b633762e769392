"""The store under crashes and concurrency, through the real binaries on the tiny pipeline:
SIGKILL at random moments, then a rerun ends with the golden digests, every object matches
its listing and nothing is left in tmp/; three identical runs at once compute each stage
once and print the same digests."""

import os
import random
import signal
import subprocess
import time

from absl.testing import absltest

from pipeline import digest
from tests import tiny_pipeline as tiny

KILLS = 10


def popen(store):
  """The tiny pipeline (every stage), started in the background in its own session."""
  argv, env = tiny.command(tiny.PIPELINE)
  return subprocess.Popen(argv + tiny.TINY + ["--store=" + store], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)


class StoreCrashTest(absltest.TestCase):

  def assert_store_is_whole(self, store):
    objects = os.path.join(store, "objects")
    for name in os.listdir(objects):
      if not name.endswith(".sha256"):
        self.assertEqual(digest.tree_digest(os.path.join(objects, name)), name)
    self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])

  def test_killed_at_random_moments_then_rerun_gives_the_golden_digests(self):
    rng = random.Random(7)  # the moments are reproducible too
    golden = tiny.load_golden()["outputs"]
    store = self.create_tempdir().full_path
    for _ in range(KILLS):
      process = popen(store)
      time.sleep(rng.uniform(1.0, 20.0))
      os.killpg(process.pid, signal.SIGKILL)
      process.communicate(timeout=60)
    result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store], timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    self.assertEqual(tiny.outputs(result.stdout), golden)
    self.assert_store_is_whole(store)

  def test_three_identical_runs_at_once_compute_each_stage_once(self):
    store = self.create_tempdir().full_path
    processes = [popen(store) for _ in range(3)]
    results = [p.communicate(timeout=900) for p in processes]
    for process, (_, stderr) in zip(processes, results):
      self.assertEqual(process.returncode, 0, stderr[-4000:])
    lines = [tiny.stage_lines(stdout) for stdout, _ in results]
    digests = [[line[:3] for line in each] for each in lines]
    self.assertEqual(digests[0], digests[1])
    self.assertEqual(digests[0], digests[2])
    self.assertEqual({name: output for name, output, _ in digests[0]},
                     tiny.load_golden()["outputs"])
    for i, stage in enumerate(tiny.STAGES):
      built = [each[i][3] for each in lines].count(False)
      self.assertEqual(built, 1, "%s was computed %d times" % (stage, built))
    self.assert_store_is_whole(store)


if __name__ == "__main__":
  absltest.main()
