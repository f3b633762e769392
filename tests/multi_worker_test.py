"""--distribute=multi_worker: two workers as local processes on 127.0.0.1 train the tiny
configuration; they agree on the key, one output reaches the store, both end with the same
weights, and reruns give the same bits, which tests/golden records."""

import json
import os
import re

from absl.testing import absltest

from pipeline import errors
from pipeline import inventory
from pipeline import store as storelib
from seg import distribute
from tests import tiny_pipeline as tiny

_WEIGHTS = re.compile(r"weights digest ([0-9a-f]{64})")


class ClusterTest(absltest.TestCase):
  """TF_CONFIG as Kubeflow's TFJob sets it, and each worker's slice of a batch."""

  def cluster(self, cluster, kind, index):
    return distribute.cluster_from_tf_config(json.dumps(
        {"cluster": cluster, "task": {"type": kind, "index": index}}))

  def test_workers_and_a_chief(self):
    workers = {"worker": ["a:1", "b:2"]}
    self.assertEqual(self.cluster(workers, "worker", 1), distribute.Cluster(("a:1", "b:2"), 1))
    self.assertTrue(self.cluster(workers, "worker", 0).is_chief)
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    self.assertEqual(self.cluster(with_chief, "worker", 0).index, 1)
    self.assertTrue(self.cluster(with_chief, "chief", 0).is_chief)
    self.assertEqual(self.cluster(with_chief, "chief", 0).count, 3)

  def test_what_is_refused(self):
    for cluster, kind, index, message in (
        ({"worker": ["a:1"], "ps": ["p:1"]}, "worker", 0, "names ps tasks"),
        ({"worker": ["a:1"]}, "worker", 1, "task worker:1 is not in its cluster"),
        ({"worker": ["a:1"]}, "evaluator", 0, "task evaluator:0 is not in its cluster"),
        ({"chief": ["a:1", "b:1"]}, "chief", 0, "2 chiefs")):
      with self.assertRaisesRegex(errors.Error, message):
        self.cluster(cluster, kind, index)
    with self.assertRaisesRegex(errors.Error, "TF_CONFIG is not a cluster and a task"):
      distribute.cluster_from_tf_config('{"cluster": {}}')

  def test_each_worker_takes_its_rows_of_every_batch(self):
    workers = [distribute.Cluster(("a", "b"), index) for index in (0, 1)]
    self.assertEqual([distribute.shard(4, w) for w in workers], [(0, 2), (2, 4)])
    with self.assertRaisesRegex(errors.Error, "--batch_size=5 does not split evenly across 2 "
                                "workers: use a multiple of 2"):
      distribute.shard(5, workers[0])


class TwoWorkersTest(absltest.TestCase):

  def train(self, store, **kwargs):
    results = tiny.run_workers(tiny.TINY + ["--store=" + store], **kwargs)
    for index, (status, _, stderr) in enumerate(results):
      self.assertEqual(status, 0, "worker %d:\n%s" % (index, stderr[-4000:]))
    return results

  def test_two_workers_train_one_output_with_the_same_bits_on_every_run(self):
    store = self.create_tempdir().full_path
    (_, chief, _), (_, other, _) = self.train(store)
    train = tiny.outputs(chief)["train"]
    self.assertEqual(train, tiny.load_golden()["multi_worker"]["train"],
                     "two workers trained other bits than tests/golden records")
    # Only the chief stores and reports the stage; both workers hold the same weights.
    self.assertEqual(tiny.stage_lines(other), [])
    self.assertEqual(len(inventory.entries(storelib.Store(store), "train")), 1)
    with open(os.path.join(store, "objects", train, "metrics.json")) as f:
      chief_weights = json.load(f)["weights_digest"]
    self.assertEqual(_WEIGHTS.findall(other)[-1], chief_weights)
    # Again on the same store: every worker sees the stored output and trains nothing.
    (_, chief, _), (_, other, _) = self.train(store)
    self.assertIn(("train", train), [(n, d) for n, d, _, hit in tiny.stage_lines(chief) if hit])
    self.assertIn("train: the output was in the store", other)
    # Again on a fresh store: the same bits.
    (_, chief, _), _ = self.train(self.create_tempdir().full_path)
    self.assertEqual(tiny.outputs(chief)["train"], train)

  def test_workers_that_compute_different_keys_stop(self):
    results = tiny.run_workers(tiny.TINY + ["--store=" + self.create_tempdir().full_path],
                               worker_args=[[], ["--learning_rate=0.5"]], timeout=600)
    for index, (status, _, stderr) in enumerate(results):
      self.assertEqual(status, 1, "worker %d:\n%s" % (index, stderr[-4000:]))
      self.assertRegex(stderr, r"error: worker %d's train key [0-9a-f]{16}… differs from this "
                       r"worker's \(%d\)" % (1 - index, index))


if __name__ == "__main__":
  absltest.main()
