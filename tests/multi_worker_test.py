"""Several workers train the tiny configuration to the bits one process trains
(tests/golden), under the same key: two workers from TF_CONFIG (--distribute=multi_worker),
which agree on the key, store one output and end with the same weights; two local workers
(--workers), whose output the later stages take as one process's, and the reverse.
--micro_batches=4 gives other bits (the negative control), and four local workers give those.
Workers killed after an epoch resume from the chief's checkpoint to the same bits.
Faults end a worker with one line: a worker that never starts, a port in use, SIGTERM/SIGINT,
a peer that goes away, a local worker killed."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from absl.testing import absltest

from pipeline import errors
from pipeline import inventory
from pipeline import store as storelib
from seg.training import distribute
from seg.training import local_workers
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
    # Messages name each task as TF_CONFIG does.
    self.assertEqual([self.cluster(with_chief, "chief", 0).task(i) for i in (0, 2)],
                     ["chief:0 (c:0)", "worker:1 (b:2)"])
    self.assertEqual(self.cluster(with_chief, "chief", 0).count, 3)

  def test_what_is_refused(self):
    for cluster, kind, index, message in (
        ({"worker": ["a:1"], "ps": ["p:1"]}, "worker", 0, "names ps tasks"),
        ({"worker": ["a:1"]}, "worker", 1, "task worker:1 is not in its cluster"),
        ({"worker": ["a:1"]}, "evaluator", 0, "task evaluator:0 is not in its cluster"),
        ({"chief": ["a:1", "b:1"]}, "chief", 0, "2 chiefs"),
        ({"worker": ["a:1", "b"]}, "worker", 0, "TF_CONFIG's address 'b' is not host:port")):
      with self.assertRaisesRegex(errors.Error, message):
        self.cluster(cluster, kind, index)
    with self.assertRaisesRegex(errors.Error, "TF_CONFIG is not a cluster and a task"):
      distribute.cluster_from_tf_config('{"cluster": {}}')

  def test_each_worker_takes_its_micro_batches_of_every_batch(self):
    workers = [distribute.Cluster(("a", "b"), index) for index in (0, 1)]
    self.assertEqual([distribute.part(4, w) for w in workers], [(0, 2), (2, 2)])
    with self.assertRaisesRegex(errors.Error, "--micro_batches=5 does not split evenly across "
                                "2 workers: use a worker count that divides it"):
      distribute.part(5, workers[0])


def assert_succeeded(test, result, what):
  test.assertEqual(result.returncode, 0, "%s:\n%s" % (what, result.stderr[-4000:]))


class TwoWorkersTest(absltest.TestCase):
  """Workers from TF_CONFIG train the bits of one process (tests/golden), once in the store."""

  def train(self, store, **kwargs):
    results = tiny.run_workers(tiny.TINY + ["--store=" + store], **kwargs)
    for index, (status, _, stderr) in enumerate(results):
      self.assertEqual(status, 0, "worker %d:\n%s" % (index, stderr[-4000:]))
    return results

  def test_two_workers_train_the_bits_of_one_process_and_store_them_once(self):
    store = self.create_tempdir().full_path
    (_, chief, _), (_, other, other_err) = self.train(store)
    train = tiny.outputs(chief)["train"]
    self.assertEqual(train, tiny.load_golden()["outputs"]["train"],
                     "two workers trained other bits than one process (tests/golden)")
    # Only the chief stores and reports the stage; both workers hold the same weights.
    self.assertEqual(tiny.stage_lines(other), [])
    self.assertEqual(len(inventory.entries(storelib.Store(store), "train")), 1)
    with open(os.path.join(store, "objects", train, "metrics.json")) as f:
      chief_weights = json.load(f)["weights_digest"]
    self.assertEqual(_WEIGHTS.findall(other_err)[-1], chief_weights)
    # Again on the same store: every worker sees the stored output and trains nothing.
    (_, chief, _), (_, other, other_err) = self.train(store)
    self.assertIn(("train", train), [(n, d) for n, d, _, hit in tiny.stage_lines(chief) if hit])
    self.assertEqual(tiny.stage_lines(other), [])
    self.assertIn("train: the output was in the store", other_err)

  def test_workers_that_compute_different_keys_stop(self):
    results = tiny.run_workers(tiny.TINY + ["--store=" + self.create_tempdir().full_path],
                               worker_args=[[], ["--learning_rate=0.5"]], timeout=600)
    for index, (status, _, stderr) in enumerate(results):
      self.assertEqual(status, 1, "worker %d:\n%s" % (index, stderr[-4000:]))
      self.assertRegex(stderr, r"error: worker %d's train key [0-9a-f]{16}… differs from this "
                       r"worker's \(%d\)" % (1 - index, index))


class ResumeTest(absltest.TestCase):
  """Workers killed after an epoch and started again resume from the chief's checkpoint, to
  the bits of a run that never stopped (tests/golden)."""

  def test_workers_killed_after_epoch_1_resume_to_the_golden_bits(self):
    store = self.create_tempdir().full_path
    pattern = os.path.join(store, "runs", "*", "checkpoints", "epoch-%03d.arrays")
    with Workers(2, store) as workers:
      for index in (0, 1):
        workers.start(index)
      deadline = time.monotonic() + 600
      while not glob.glob(pattern % 1):
        self.assertLess(time.monotonic(), deadline, workers.output(0)[-4000:])
        self.assertIsNone(workers.processes[0].poll(), workers.output(0)[-4000:])
        time.sleep(0.02)
      for process in workers.processes.values():  # preempted: no chance to clean up
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Had epoch 2 ended meanwhile, this would test nothing.
    self.assertEqual(glob.glob(pattern % 2), [], "epoch 2 ended before the kill")
    with Workers(2, store) as workers:
      for index in (0, 1):
        workers.start(index)
      results = [workers.wait(index, timeout=600) for index in (0, 1)]
    for index, (status, output) in enumerate(results):
      self.assertEqual(status, 0, "worker %d:\n%s" % (index, output[-4000:]))
      self.assertIn("train: resuming after epoch 1 from ", output)
    self.assertEqual(tiny.outputs(results[0][1])["train"],
                     tiny.load_golden()["outputs"]["train"],
                     "two workers resumed to other bits than one process that never stopped")


class LocalWorkersTest(absltest.TestCase):
  """--workers=N: any N that divides --micro_batches gives one process's bits and key."""

  def run_train(self, store, *args):
    result = tiny.run("seg/train", tiny.TINY + ["--store=" + store] + list(args), timeout=900)
    assert_succeeded(self, result, "seg/train " + " ".join(args))
    return result

  def test_local_workers_then_one_process_reuse_each_other(self):
    golden = tiny.load_golden()["outputs"]
    store = self.create_tempdir().full_path
    trained = self.run_train(store, "--workers=2")
    self.assertEqual(tiny.outputs(trained.stdout)["train"], golden["train"])
    # The later stages, in one process, take the workers' train output as theirs.
    result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store], timeout=900)
    assert_succeeded(self, result, tiny.PIPELINE)
    self.assertEqual(tiny.outputs(result.stdout), golden)
    self.assertIn(("train", True), [(n, hit) for n, _, _, hit in tiny.stage_lines(result.stdout)])
    # And the other way round: workers on a store where one process trained.
    store = self.create_tempdir().full_path
    alone = self.run_train(store)
    workers = self.run_train(store, "--workers=2")
    self.assertEqual(tiny.stage_lines(workers.stdout)[-1],
                     tiny.stage_lines(alone.stdout)[-1][:3] + (True,))

  def test_four_micro_batches_give_other_bits_and_four_workers_give_them_too(self):
    # The negative control: the decomposition, unlike the worker count, fixes the bits.
    alone = self.run_train(self.create_tempdir().full_path, "--micro_batches=4")
    train = tiny.outputs(alone.stdout)["train"]
    self.assertNotEqual(train, tiny.load_golden()["outputs"]["train"])
    workers = self.run_train(self.create_tempdir().full_path, "--micro_batches=4",
                             "--workers=4")
    self.assertEqual(tiny.stage_lines(workers.stdout)[-1], tiny.stage_lines(alone.stdout)[-1])


class Workers:
  """Workers of one TF_CONFIG cluster on 127.0.0.1 (free ports), each //seg:train with the
  tiny flags in its own process group, started one by one; every one still running when the
  block ends is killed with its group."""

  def __init__(self, count, store):
    self.addresses = ["127.0.0.1:%d" % port for port in local_workers.free_ports(count)]
    self.store = store
    self.processes, self.logs = {}, {}

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    for process in self.processes.values():
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for log in self.logs.values():
      log.close()

  def start(self, index, *args):
    """Starts worker index with these extra flags."""
    tf_config = json.dumps({"cluster": {"worker": self.addresses},
                            "task": {"type": "worker", "index": index}})
    argv, environment = tiny.command("seg/train", {"TF_CONFIG": tf_config})
    self.logs[index] = tempfile.TemporaryFile("w+")
    self.processes[index] = subprocess.Popen(
        argv + ["--distribute=multi_worker", "--store=" + self.store] + tiny.TINY + list(args),
        stdout=self.logs[index], stderr=subprocess.STDOUT, env=environment, text=True,
        start_new_session=True)

  def output(self, index):
    """Worker index's stdout and stderr so far."""
    self.logs[index].seek(0)
    return self.logs[index].read()

  def wait_for_output(self, index, text, timeout):
    """Waits until worker index has printed text; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while text not in self.output(index):
      if self.processes[index].poll() is not None or time.monotonic() > deadline:
        raise AssertionError("worker %d did not print %r within %ds:\n%s"
                             % (index, text, timeout, self.output(index)[-4000:]))
      time.sleep(0.5)

  def wait(self, index, timeout):
    """Worker index's exit status and output; fails if it runs timeout seconds more."""
    try:
      status = self.processes[index].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      raise AssertionError("worker %d still runs after %ds:\n%s"  # pylint: disable=raise-missing-from
                           % (index, timeout, self.output(index)[-4000:]))
    return status, self.output(index)


class FaultsTest(absltest.TestCase):
  """Each fault ends a worker within a bound, with its own one-line message."""

  def assert_one_line(self, status, output, expected_status, pattern):
    self.assertEqual(status, expected_status, output[-4000:])
    self.assertRegex(output, pattern)
    self.assertNotIn("Traceback", output)

  def test_a_worker_that_never_starts_is_named(self):
    with Workers(2, self.create_tempdir().full_path) as workers:
      workers.start(0, "--cluster_timeout=5")
      status, output = workers.wait(0, timeout=120)
    self.assert_one_line(status, output, 1, r"\nerror: worker:1 \(%s\) did not start within "
                         r"--cluster_timeout=5s" % re.escape(workers.addresses[1]))

  def test_a_port_in_use_is_named(self):
    with Workers(2, self.create_tempdir().full_path) as workers, socket.socket() as holder:
      port = int(workers.addresses[0].split(":")[1])
      holder.bind(("127.0.0.1", port))
      holder.listen()
      workers.start(0)
      status, output = workers.wait(0, timeout=120)
    self.assert_one_line(status, output, 1, r"\nerror: port %d of this worker, TF_CONFIG's "
                         r"worker:0 \(127\.0\.0\.1:%d\), is in use by another process" % (port, port))

  def test_sigterm_and_sigint_stop_a_waiting_worker(self):
    for number in (signal.SIGTERM, signal.SIGINT):
      with Workers(2, self.create_tempdir().full_path) as workers:
        workers.start(0)
        workers.wait_for_output(0, "distribute: waiting up to 300s for worker:1", timeout=120)
        workers.processes[0].send_signal(number)
        status, output = workers.wait(0, timeout=10)
      self.assert_one_line(status, output, 128 + number,
                           r"\nerror: distribute: worker 0 of 2 \(%s, the chief\) stopped by "
                           r"%s\n" % (re.escape(workers.addresses[0]), number.name))

  def test_a_worker_that_goes_away_during_training_is_named(self):
    store = self.create_tempdir().full_path
    with Workers(2, store) as workers:
      for index in (0, 1):
        workers.start(index, "--epochs=3")
      workers.wait_for_output(1, "Epoch 2/3", timeout=600)
      workers.processes[1].send_signal(signal.SIGTERM)
      # In a collective op the main thread waits in C++ for the chief, so the worker may end
      # at once after stopping.RESPONSE_SECONDS instead of unwinding.
      self.assert_one_line(*workers.wait(1, timeout=15), 128 + signal.SIGTERM,
                           r"stopped by SIGTERM( \(it did not respond within \d+s: ended at "
                           r"once\))?\n")
      # The chief's coordination service misses worker 1's heartbeats within about 15 s.
      self.assert_one_line(*workers.wait(0, timeout=90), 1,
                           r"\nerror: worker:1 \(%s\) went away during training: it no longer "
                           r"answers on its port" % re.escape(workers.addresses[1]))
    # Nothing half-built stays: worker 1's scratch is removed once the store is opened.
    self.assertEqual(inventory.entries(storelib.Store(store), "train"), [])
    self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])

  def test_a_local_worker_killed_during_training_stops_them_all(self):
    store = self.create_tempdir().full_path
    argv, environment = tiny.command("seg/train")
    with tempfile.TemporaryFile("w+") as log:
      launcher = subprocess.Popen(
          argv + tiny.TINY + ["--store=" + store, "--workers=2", "--epochs=3"], stdout=log,
          stderr=subprocess.STDOUT, env=environment, text=True, start_new_session=True)
      try:
        _wait_for(lambda: "Epoch 2/3" in _read(log), 600, launcher, log)
        workers = _workers_of(launcher.pid)
        os.kill(workers[1], signal.SIGKILL)
        status = launcher.wait(timeout=60)
      finally:
        if launcher.poll() is None:
          os.killpg(launcher.pid, signal.SIGKILL)
          launcher.wait()
      output = _read(log)
    self.assertEqual(status, 128 + signal.SIGKILL, output[-4000:])
    self.assertIn("\nworkers: worker 1 (its last lines are above) was killed by SIGKILL; "
                  "stopped worker 0\n", output)
    self.assertNotIn("Traceback", output)
    for pid in workers.values():  # none is left
      self.assertFalse(os.path.exists("/proc/%d" % pid) and _state(pid) != "Z", pid)
    self.assertEqual(inventory.entries(storelib.Store(store), "train"), [])
    self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])


def _read(log):
  log.seek(0)
  return log.read()


def _wait_for(condition, timeout, process, log):
  deadline = time.monotonic() + timeout
  while not condition():
    if process.poll() is not None or time.monotonic() > deadline:
      raise AssertionError("not within %ds:\n%s" % (timeout, _read(log)[-4000:]))
    time.sleep(0.5)


def _workers_of(launcher):
  """{worker index: pid} of a --workers launcher's children, from their TF_CONFIG."""
  workers = {}
  for task in os.listdir("/proc/%d/task" % launcher):
    with open("/proc/%d/task/%s/children" % (launcher, task)) as f:
      for pid in map(int, f.read().split()):
        with open("/proc/%d/environ" % pid, "rb") as environ:
          variables = dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if item)
        workers[json.loads(variables[b"TF_CONFIG"])["task"]["index"]] = pid
  return workers


def _state(pid):
  """A process's state letter (Z: a zombie, dead but not yet reaped)."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[1].split()[0]
  except FileNotFoundError:
    return "gone"


if __name__ == "__main__":
  absltest.main()
