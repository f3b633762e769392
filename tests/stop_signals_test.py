"""SIGINT and SIGTERM to every binary that runs for more than a moment, while its stage builds
(pipeline.stopping): exit status 128 + N, one `error:` line naming the signal, no traceback,
nothing stored, no staging folder left in the store's tmp/ (nothing at all once the store is
opened again), and no process it started still running.
A second signal while the first unwinds ends it at once, with one line and 128 + N (a small
process with a slow cleanup, and two SIGINTs to a search); what it leaves in tmp/ is removed
the next time the store is opened.

The signal is sent while the stage builds: once its staging folder's lock appears in tmp/,
the binary is paused (SIGSTOP), sent the signal, and resumed, so that a fast build cannot end
before the signal arrives.
"""

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from absl.testing import absltest
from absl.testing import parameterized

from tests import tiny_pipeline as tiny

TINY = list(tiny.TINY)
# (binary, extra flags, the stage whose build is signalled, stages whose outputs are removed
# first so that it builds).
BINARIES = {
    "partition": ("data_tools/partition", ["--synthetic_images=400"], "synthetic", ()),
    "train": ("seg/train", ["--epochs=400"], "train", ()),
    "calibrate": ("seg/calibrate", [], "calibrate", ("calibrate",)),
    "evaluate": ("seg/evaluate", [], "evaluate", ("evaluate",)),
    "export": ("seg/export", [], "export", ("export",)),
    "release": ("seg/release", ["--release_name=pets", "--min_pixel_accuracy=0",
                                "--min_mean_iou=0", "--max_calibrated_ece=1"], "release", ()),
    "predict": ("seg/predict", ["--image={photo}", "--output_dir={out}"], "export",
                ("export",)),
    "tune": ("seg/tune", ["--trials=2", "--round_size=2", "--search_space={space}"], "train",
             ()),
}


def _manifests(store):
  found = {}
  for path in glob.glob(os.path.join(store, "keys", "*.json")):
    with open(path) as f:
      found[os.path.basename(path)[:-5]] = json.load(f)["stage"]
  return found


def _processes_naming(text):
  """The pids of processes whose command line holds text."""
  pids = []
  for entry in os.listdir("/proc"):
    try:
      with open("/proc/%s/cmdline" % entry, "rb") as f:
        if text.encode() in f.read():
          pids.append(int(entry))
    except (OSError, ValueError):
      pass
  return pids


def _wait_until_taken(pid, number, timeout=10):
  """Returns once signal number is no longer pending for process pid (/proc/PID/status's
  ShdPnd, a hexadecimal mask), or it has ended."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    try:
      with open("/proc/%d/status" % pid) as f:
        pending = int(next(line for line in f if line.startswith("ShdPnd:")).split()[1], 16)
    except (OSError, StopIteration):
      return
    if not pending & (1 << (number - 1)):
      return
    time.sleep(0.002)



@contextlib.contextmanager
def _killed_at_exit(process):
  """Kills and reaps process if it still runs when the block ends (a failed assertion)."""
  try:
    yield process
  finally:
    if process.poll() is None:
      process.kill()
      process.communicate()

class StopSignalsTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.prepared, _ = tiny.made_in_new_store("seg/export")
    evaluated = tiny.run("seg/evaluate", TINY + ["--store=" + cls.prepared])
    assert not evaluated.returncode, evaluated.stderr[-3000:]
    tmp = os.environ["TEST_TMPDIR"]
    cls.space = os.path.join(tmp, "space.json")
    with open(cls.space, "w") as f:
      json.dump({"learning_rate": {"low": 0.0001, "high": 0.01, "log": True}}, f)
    cls.photo = os.path.join(tiny.RUNFILES, "tests", "testdata", "cases", "mixed_dir", "a.png")

  def store_without(self, stages):
    """A copy of the prepared store without the manifests of stages: they build again."""
    store = os.path.join(self.create_tempdir().full_path, "store")
    shutil.copytree(self.prepared, store, symlinks=True)
    for key, name in _manifests(store).items():
      if name in stages:
        os.unlink(os.path.join(store, "keys", key + ".json"))
    return store

  def start_and_signal(self, binary, args, stage_name, numbers):
    """Starts binary; once stage_name's staging lock is in tmp/, pauses it, sends it the
    signals numbers (a second one as soon as the first is taken: while it unwinds), resumes
    it. Returns (exit status, stderr)."""
    argv, env = tiny.command(binary)
    process = subprocess.Popen(argv + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    store = [a for a in args if a.startswith("--store=")][0][len("--store="):]
    with _killed_at_exit(process):
      pattern = os.path.join(store, "tmp", stage_name + "-*.lock")
      deadline = time.monotonic() + 300
      while not glob.glob(pattern):
        self.assertIsNone(process.poll(), "it ended before %s built" % stage_name)
        self.assertLess(time.monotonic(), deadline, "no %s build within 300s" % stage_name)
        time.sleep(0.02)
      process.send_signal(signal.SIGSTOP)
      process.send_signal(numbers[0])
      process.send_signal(signal.SIGCONT)
      for number in numbers[1:]:  # once the one before is taken: pending ones would merge
        _wait_until_taken(process.pid, numbers[0])
        process.send_signal(number)
      _, err = process.communicate(timeout=120)
    return process.returncode, err

  def check_stopped(self, status, err, number, store, before):
    said = err[-4000:]
    self.assertEqual(status, 128 + number, said)
    self.assertNotIn("Traceback", err, said)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    self.assertLen(lines, 1, said)
    self.assertIn("stopped by %s" % signal.Signals(number).name, lines[0])
    self.assertEqual(_manifests(store), before, said)  # nothing stored
    self.assertEqual(_processes_naming(store), [], said)  # nothing it started still runs

  @parameterized.product(name=sorted(BINARIES), number=[signal.SIGINT, signal.SIGTERM])
  def test_a_stop_signal_ends_it_with_one_line_and_nothing_left(self, name, number):
    binary, extra, stage_name, removed = BINARIES[name]
    store = self.store_without(removed)
    out = self.create_tempdir().full_path
    args = (tiny.DATA_FLAGS if binary.startswith("data_tools") else TINY) + [
        a.format(photo=self.photo, out=out, space=self.space) for a in extra]
    before = _manifests(store)
    status, err = self.start_and_signal(binary, args + ["--store=" + store], stage_name,
                                        [number])
    self.check_stopped(status, err, number, store, before)
    # Its staging folder is gone; a signal taken as the folder's lock file was being made
    # may leave that empty file, which the next opening of the store removes.
    tmp = os.path.join(store, "tmp")
    self.assertEqual([name for name in os.listdir(tmp) if not name.endswith(".lock")], [],
                     err[-3000:])
    self.assert_clean_once_reopened(store)

  def assert_clean_once_reopened(self, store):
    listed = tiny.run("pipeline/store", ["ls", "--store=" + store])
    self.assertEqual(listed.returncode, 0, listed.stderr)
    self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])

  def test_a_second_sigint_ends_a_search_at_once(self):
    store = self.store_without(())
    args = TINY + ["--trials=2", "--round_size=2", "--search_space=" + self.space,
                   "--store=" + store]
    before = _manifests(store)
    status, err = self.start_and_signal("seg/tune", args, "train",
                                        [signal.SIGINT, signal.SIGINT])
    self.check_stopped(status, err, signal.SIGINT, store, before)
    self.assert_clean_once_reopened(store)  # a second signal leaves tmp/ to the next open


# A process whose cleanup after a stop signal takes 60 s: pipeline.stopping as a binary has it.
# Its waits come in slices, as a binary's do: a signal reaches the main thread between two.
SLOW_CLEANUP = """
import sys, time
from pipeline import signals_blocked
from pipeline import stopping
stopping.watch()
try:
  print("ready", flush=True)
  for _ in range(600):
    time.sleep(0.1)
except stopping.Stopped as stopped:
  print("unwinding", flush=True)
  for _ in range(600):
    time.sleep(0.1)
  sys.stderr.write(stopped.line())
  sys.exit(stopped.status)
"""


class SecondSignalTest(absltest.TestCase):

  def test_a_second_signal_while_the_first_unwinds_ends_it_at_once(self):
    for first, second in ((signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)):
      _, env = tiny.command("pipeline/store")  # its environment: PYTHONPATH
      process = subprocess.Popen([sys.executable, "-c", SLOW_CLEANUP], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
      with _killed_at_exit(process):
        self.assertEqual(process.stdout.readline(), "ready\n")
        process.send_signal(first)
        self.assertEqual(process.stdout.readline(), "unwinding\n")
        started = time.monotonic()
        process.send_signal(second)
        _, err = process.communicate(timeout=30)
      self.assertLess(time.monotonic() - started, 10)  # not the 60 s its cleanup takes
      self.assertEqual(process.returncode, 128 + second, err)
      self.assertEqual(err, "error: -c: stopped by %s again: ended at once\n" % second.name)


if __name__ == "__main__":
  absltest.main()
