"""--workers: the worker count it resolves to, and the launcher of local workers, run with small
Python scripts as workers (no TensorFlow): their places in one cluster, the chief's output
passed through, a failure or a signal stopping them all, and no worker outliving the launcher,
even a SIGKILLed one."""

import json
import os
import signal
import subprocess
import sys
import time

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from pipeline import child_process
from pipeline import cli
from pipeline import errors
from seg.training import local_workers
from tests import tiny_pipeline as tiny

# The launcher, in a process of its own as //seg:train runs it: SIGINT and SIGTERM taken by
# pipeline.stopping, as pipeline.cli takes them (its workers must not inherit the mask).
# Arguments: the worker count, the seconds from SIGTERM to SIGKILL, then the worker command.
LAUNCHER = """
import sys
from pipeline import stopping
stopping.watch()
from seg.training import local_workers
try:
  sys.exit(local_workers.run(sys.argv[3:], int(sys.argv[1]), grace=float(sys.argv[2])))
except stopping.Stopped as stopped:
  sys.stderr.write(stopped.line())
  sys.exit(stopped.status)
"""

# A worker. Arguments: a folder, then one action per worker index. It binds its TF_CONFIG port
# as TensorFlow would, records {"pid", "tf_config", "blocked" signals} in <folder>/<index>.json,
# prints a line to stdout and one to stderr, then does its action: ok (exits 0), sleep (60 s),
# deaf (ignores SIGTERM, sleeps 60 s), failN (once every worker has recorded itself, prints
# "line 0" to "line 149" and exits N).
WORKER = r"""
import json, os, signal, socket, sys, time
tf_config = os.environ["TF_CONFIG"]
cluster, index = json.loads(tf_config)["cluster"]["worker"], json.loads(tf_config)["task"]["index"]
folder, action = sys.argv[1], sys.argv[2 + index]
if action == "deaf":
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
with socket.create_server(("", int(cluster[index].rsplit(":", 1)[1]))):
  pass
record = {"pid": os.getpid(), "tf_config": tf_config,
          "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))}
with open(os.path.join(folder, "%d.tmp" % index), "w") as f:
  json.dump(record, f)
os.rename(os.path.join(folder, "%d.tmp" % index), os.path.join(folder, "%d.json" % index))
print("worker %d out" % index, flush=True)
print("worker %d err" % index, file=sys.stderr, flush=True)
if action in ("sleep", "deaf"):
  time.sleep(60)
elif action.startswith("fail"):
  deadline = time.monotonic() + 30
  while (any(not os.path.exists(os.path.join(folder, "%d.json" % i)) for i in range(len(cluster)))
         and time.monotonic() < deadline):
    time.sleep(0.05)
  for n in range(150):
    print("line %d" % n)
  sys.exit(int(action[4:]))
"""

FIRST_LINE = ("workers: %d local workers on %s; worker 0 (the chief) reports, the others' logs "
              "are shown if they fail")


def alive(pid):
  """Whether process pid runs (a zombie does not)."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (FileNotFoundError, ProcessLookupError):
    return False


class ResolveTest(absltest.TestCase):

  def resolve_error(self, *args):
    with self.assertRaises(errors.Error) as raised:
      local_workers.resolve(*args)
    return str(raised.exception)

  def test_auto_fits_pools_of_4_threads_in_the_visible_cores(self):
    for micro_batches, counts in ((4, [1, 1, 2, 4]), (6, [1, 1, 2, 6])):
      self.assertEqual([local_workers.resolve("auto", micro_batches, 4, cores)
                        for cores in (1, 2, 8, 32)], counts, micro_batches)
    # Room for 3 workers: the largest divisor that fits.
    self.assertEqual([local_workers.resolve("auto", mb, 4, cores=12) for mb in (4, 6)], [2, 3])

  def test_auto_counts_the_cores_this_process_may_use(self):
    cores = len(os.sched_getaffinity(0))
    self.assertEqual(local_workers.resolve("auto", 64, 1), local_workers.resolve("auto", 64, 1,
                                                                                 cores))

  def test_auto_is_one_with_the_pool_that_follows_the_cores(self):  # the default pool
    self.assertEqual(local_workers.resolve("auto", 4, 0, cores=32), 1)

  def test_a_count_must_divide_micro_batches(self):
    self.assertEqual([local_workers.resolve(v, 4, 4, cores=1) for v in ("1", "2", "4")],
                     [1, 2, 4])
    self.assertEqual(self.resolve_error("3", 4, 4),
                     "--workers=3 does not divide --micro_batches=4: use 1, 2 or 4 (a divisor of "
                     "--micro_batches), or change --micro_batches")
    self.assertIn("--workers=8 does not divide --micro_batches=4", self.resolve_error("8", 4, 4))

  def test_what_is_not_a_count_is_refused(self):
    for value in ("0", "x", "-2", "", "2.0", " 2", "AUTO"):
      self.assertEqual(self.resolve_error(value, 6, 4),
                       "--workers=%s is not a number of workers: give a positive integer that "
                       "divides --micro_batches=6 (1, 2, 3 or 6), or auto" % value)


class FlagsTest(absltest.TestCase):

  def test_workers_and_a_cluster_of_its_own_are_refused_together(self):
    with flagsaver.flagsaver(workers="2"):
      with self.assertRaisesRegex(errors.Error, "^--workers=2 and --distribute=multi_worker do "
                                  "not go together: .* Drop one of them$"):
        local_workers.asked(multi_worker=True)
      self.assertTrue(local_workers.asked(multi_worker=False))
    with flagsaver.flagsaver(workers="1"):  # what each local worker runs with
      self.assertFalse(local_workers.asked(multi_worker=True))

  def test_a_worker_runs_this_binary_with_its_flags_then_its_own(self):
    this = [sys.executable, os.path.abspath(sys.modules["__main__"].__file__)]
    own = ["--distribute=multi_worker", "--workers=1"]
    self.assertEqual(local_workers.worker_command(["prog", "--a=1", "--workers=2"]),
                     this + ["--a=1", "--workers=2"] + own)
    self.assertEqual(local_workers.worker_command(["prog", "--workers=2", "--"]),
                     this + ["--workers=2"] + own + ["--"])
    with flagsaver.flagsaver():  # the last --workers wins
      flags.FLAGS(["prog", "--workers=2", "--workers=1"])
      self.assertEqual(flags.FLAGS.workers, "1")

  def test_the_next_command_drops_the_workers_flag(self):
    self.assertEqual(cli.without_flag(
        ["prog", "--workers=2", "--a=1", "--workers", "auto", "--workersx=3", "-workers=4"],
        "workers"), ["prog", "--a=1", "--workersx=3"])

  def test_a_worker_imports_from_this_process_module_path(self):
    path = child_process.environment()["PYTHONPATH"].split(os.pathsep)
    self.assertTrue(all(os.path.isabs(entry) for entry in path), path)
    root = os.path.join(os.path.dirname(os.path.abspath(local_workers.__file__)), "..", "..", "..")
    self.assertIn(os.path.normpath(root), path)  # seg/training/local_workers.py's tree


class RunTest(absltest.TestCase):
  """run() in a launcher process of its own, with WORKER as the workers."""

  def setUp(self):
    super().setUp()
    self.folder = self.create_tempdir().full_path
    self.launcher = None

  def tearDown(self):
    # Nothing stays running, whatever failed.
    if self.launcher and self.launcher.poll() is None:
      self.launcher.kill()
      self.launcher.communicate()
    for record in self.records().values():
      if alive(record["pid"]):
        os.kill(record["pid"], signal.SIGKILL)
    super().tearDown()

  def start(self, *actions, grace=5):
    """Starts a launcher of one worker per action (see WORKER)."""
    self.launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(len(actions)), str(grace), sys.executable, "-c",
         WORKER, self.folder] + list(actions), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_process.environment(), cwd=self.create_tempdir().full_path)

  def finish(self, timeout=30):
    """(exit status, stdout, stderr) of the launcher; fails after timeout seconds."""
    out, err = self.launcher.communicate(timeout=timeout)
    return self.launcher.returncode, out, err

  def records(self):
    """{index: what worker index recorded}."""
    records = {}
    for name in os.listdir(self.folder):
      if name.endswith(".json"):
        with open(os.path.join(self.folder, name)) as f:
          records[int(name[:-5])] = json.load(f)
    return records

  def wait_for_workers(self, count, timeout=30):
    """The records of count workers, once they have all written theirs."""
    deadline = time.monotonic() + timeout
    while len(self.records()) < count:
      if time.monotonic() > deadline or self.launcher.poll() is not None:
        raise AssertionError("%d of %d workers started:\n%s" % (
            len(self.records()), count, self.finish(timeout=5)))
      time.sleep(0.05)
    return self.records()

  def assert_gone(self, records, timeout=0):
    """Fails if a worker still runs timeout seconds from now."""
    deadline = time.monotonic() + timeout
    while any(alive(r["pid"]) for r in records.values()) and time.monotonic() < deadline:
      time.sleep(0.05)
    self.assertEqual([i for i, r in sorted(records.items()) if alive(r["pid"])], [])

  def test_each_worker_has_its_place_in_one_cluster_and_only_the_chief_shows(self):
    self.start("ok", "ok", "ok")
    status, out, err = self.finish()
    self.assertEqual(status, 0, err)
    records = self.records()
    configs = [json.loads(records[index]["tf_config"]) for index in range(3)]
    addresses = configs[0]["cluster"]["worker"]
    self.assertEqual([c["cluster"] for c in configs], [{"worker": addresses}] * 3)
    self.assertEqual([c["task"] for c in configs],
                     [{"type": "worker", "index": index} for index in range(3)])
    self.assertEqual([a.split(":")[0] for a in addresses], ["127.0.0.1"] * 3)
    self.assertLen(set(a.split(":")[1] for a in addresses), 3)  # each bound its own, free
    # Started with SIGINT and SIGTERM unblocked, though the launcher had blocked them.
    for record in records.values():
      self.assertNotIn(int(signal.SIGTERM), record["blocked"])
      self.assertNotIn(int(signal.SIGINT), record["blocked"])
    # The chief's stdout and stderr unchanged; nothing of the others'; no summary line.
    self.assertEqual(out, "worker 0 out\n")
    self.assertEqual(err, FIRST_LINE % (3, ", ".join(addresses)) + "\nworker 0 err\n")

  def test_a_failing_worker_stops_the_others_and_shows_its_last_lines(self):
    started = time.monotonic()
    self.start("sleep", "fail3", "sleep")
    status, out, err = self.finish()
    self.assertLess(time.monotonic() - started, 15)  # not the 60 s the others sleep
    self.assertEqual(status, 3, err)
    lines = err.splitlines()
    self.assertEqual(lines[-1], "workers: worker 1 (its last lines are above) exited with "
                     "status 3; stopped worker 0, worker 2")
    shown = [line for line in lines if line.startswith("[")]
    self.assertEqual(shown, ["[worker 1] line %d" % n for n in range(50, 150)])
    self.assertEqual(out, "worker 0 out\n")
    self.assertNotIn("worker 2", err.replace("stopped worker 0, worker 2", ""))
    self.assert_gone(self.records())

  def test_a_failing_chief_is_named_after_its_own_output(self):
    self.start("fail2", "sleep")
    status, out, err = self.finish()
    self.assertEqual(status, 2, err)
    self.assertEqual(out, "worker 0 out\n" + "".join("line %d\n" % n for n in range(150)))
    self.assertEqual(err.splitlines()[1:], [
        "worker 0 err", "workers: worker 0 (the chief) exited with status 2; stopped worker 1"])
    self.assert_gone(self.records())

  def test_a_worker_that_ignores_sigterm_is_killed(self):
    self.start("fail4", "deaf", grace=1)
    status, _, err = self.finish()
    self.assertEqual(status, 4, err)
    self.assertEqual(err.splitlines()[-1], "workers: worker 0 (the chief) exited with status 4; "
                     "killed worker 1 (still running 1s after SIGTERM)")
    self.assert_gone(self.records())

  def test_sigterm_and_sigint_stop_every_worker(self):
    for number in (signal.SIGTERM, signal.SIGINT):
      for name in os.listdir(self.folder):
        os.remove(os.path.join(self.folder, name))
      self.start("sleep", "sleep")
      records = self.wait_for_workers(2)
      self.launcher.send_signal(number)
      status, _, err = self.finish(timeout=15)
      self.assertEqual(status, 128 + number, err)
      self.assertEqual(err.splitlines()[-1],
                       "error: workers: stopped by %s; stopped worker 0, worker 1" % number.name)
      self.assert_gone(records)

  def test_the_workers_of_a_killed_launcher_end_too(self):
    self.start("sleep", "sleep")
    records = self.wait_for_workers(2)
    self.launcher.kill()  # SIGKILL: no chance to stop them; the parent-death signal does
    self.finish(timeout=5)
    self.assert_gone(records, timeout=10)


class TrainTest(absltest.TestCase):
  """//seg:train's --workers errors, before any worker or TensorFlow starts."""

  def train(self, *args):
    result = tiny.run("seg/train", ["--dataset=synthetic"] + list(args), timeout=60)
    self.assertNotIn("Traceback", result.stderr)
    return result

  def test_bad_worker_counts_are_named(self):
    result = self.train("--workers=3")
    self.assertEqual((result.returncode, result.stderr.splitlines()[-1]), (
        1, "error: --workers=3 does not divide --micro_batches=2: use 1 or 2 (a divisor of "
        "--micro_batches), or change --micro_batches"))
    result = self.train("--workers=2", "--distribute=multi_worker")
    self.assertEqual(result.returncode, 1)
    self.assertStartsWith(result.stderr.splitlines()[-1], "error: --workers=2 and "
                          "--distribute=multi_worker do not go together: ")

  def test_help_lists_the_flag(self):
    result = self.train("--help")
    self.assertEqual(result.returncode, 0)
    self.assertIn("local workers flags (seg.training.local_workers):\n  --workers:", result.stdout)


if __name__ == "__main__":
  absltest.main()
