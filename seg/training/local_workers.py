"""--workers=N|auto: training on N worker processes of this machine, started and supervised by
one command (the launcher), in place of one shell per worker with its own TF_CONFIG.

Each worker runs the same binary with the same flags plus --distribute=multi_worker
(seg.training.distribute), its TF_CONFIG naming one cluster on 127.0.0.1 and its own place in it.
Worker 0 is the chief: it stores the output, and its stdout and stderr are the launcher's. The
others' output is kept (its last TAIL_LINES lines) and shown if they fail. The first worker to
fail, or SIGINT/SIGTERM, stops them all, and the launcher's end stops them even when it is
SIGKILLed: each gets SIGTERM then (the parent-death signal).

No TensorFlow here: the launcher only starts processes and waits for them.
"""

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from pipeline import child_process
from pipeline import cli
from pipeline import errors
from pipeline import stopping

LOOPBACK = "127.0.0.1"
STOP_GRACE = 5  # seconds from SIGTERM to SIGKILL: a worker stops within a second or a few
TAIL_LINES = 100  # lines kept of each non-chief worker's output, shown if it fails
_POLL = 0.1  # seconds between looks at the workers
_REAP_TIMEOUT = 5  # seconds to wait for the end of an exited worker's output
_LINE_LIMIT = 65536  # bytes: a longer line (or one never ended) is kept in pieces

_WORKERS = flags.DEFINE_string(
    "workers", "1",
    "How many worker processes train, on this machine: a positive integer N, or auto. N > 1 "
    "starts N local processes of this same command with --distribute=multi_worker, each with "
    "TF_CONFIG set to one cluster on loopback addresses (127.0.0.1, at ports found free at "
    "the start) and to its own place in it. Worker 0 is the chief: it stores the output, and its "
    "stdout and stderr are this command's; the others' are shown only if they fail. The first "
    "worker to fail, or SIGINT/SIGTERM, stops them all. The bits do not depend on N, which "
    "must divide --micro_batches. auto: the largest divisor of --micro_batches that is at "
    "most the visible cores (os.sched_getaffinity) divided by the intra-op pool size "
    "(--intra_op_threads), or 1 where fewer cores are visible than one pool takes; with "
    "a pool of 0 (the default: TensorFlow's, which takes every core) auto is 1. 1: this "
    "process trains. Not with --distribute=multi_worker, which is for a cluster that sets "
    "TF_CONFIG itself.")


def _words(numbers):
  """"1, 2 or 4" for [1, 2, 4]."""
  numbers = [str(n) for n in numbers]
  return " or ".join([", ".join(numbers[:-1])] + numbers[-1:]) if len(numbers) > 1 else numbers[0]


def _divisors(micro_batches):
  return [n for n in range(1, micro_batches + 1) if micro_batches % n == 0]


def auto(micro_batches, intra_op_threads, cores):
  """--workers=auto: the largest divisor of micro_batches that is at most cores (visible
  cores) // intra_op_threads (the intra-op pool size, threads per worker), and at least 1;
  1 for a pool of 0, which follows the cores."""
  if intra_op_threads == 0:
    return 1
  room = max(1, cores // intra_op_threads)
  return max(n for n in _divisors(micro_batches) if n <= room)


def resolve(value, micro_batches, intra_op_threads, cores=None):
  """The worker count that --workers=value asks for: an int ≥ 1 that divides micro_batches.

  value: a positive integer or "auto" (a string, as the flag gives it); intra_op_threads: the
  intra-op pool size, 0 for TensorFlow's; cores: the visible cores, by default this process's
  (os.sched_getaffinity). Raises errors.Error naming the value and what to give instead.
  """
  if value == "auto":
    return auto(micro_batches, intra_op_threads,
                len(os.sched_getaffinity(0)) if cores is None else cores)
  divisors = _words(_divisors(micro_batches))
  if not re.fullmatch(r"[0-9]+", value) or int(value) == 0:
    raise errors.Error("--workers=%s is not a number of workers: give a positive integer that "
                       "divides --micro_batches=%d (%s), or auto"
                       % (value, micro_batches, divisors))
  count = int(value)
  if micro_batches % count:
    raise errors.Error("--workers=%d does not divide --micro_batches=%d: use %s (a divisor of "
                       "--micro_batches), or change --micro_batches"
                       % (count, micro_batches, divisors))
  return count


def asked(multi_worker):
  """Whether --workers asks for other than this one process (is not 1). Raises errors.Error if
  it does with --distribute=multi_worker (multi_worker true)."""
  if _WORKERS.value == "1":
    return False
  if multi_worker:
    raise errors.Error("--workers=%s and --distribute=multi_worker do not go together: "
                       "--workers starts the workers on this machine and sets their TF_CONFIG, "
                       "--distribute=multi_worker is for a cluster that sets TF_CONFIG itself. "
                       "Drop one of them" % _WORKERS.value)
  return True


def from_flags(micro_batches, intra_op_threads):
  """resolve() of --workers; for auto, prints a line to stderr saying what it came to."""
  count = resolve(_WORKERS.value, micro_batches, intra_op_threads)
  if _WORKERS.value == "auto":
    cores = len(os.sched_getaffinity(0))
    if intra_op_threads == 0:
      why = "--intra_op_threads=0 (TensorFlow's pool, which takes every core)"
    elif cores < intra_op_threads:
      why = "%d visible cores, fewer than one intra-op pool of %d threads" % (
          cores, intra_op_threads)
    else:
      why = ("%d visible cores fit %d intra-op pools of %d threads (--intra_op_threads); the "
             "largest divisor of --micro_batches=%d that fits" % (
                 cores, cores // intra_op_threads, intra_op_threads, micro_batches))
    _say("workers: --workers=auto is %d here: %s%s"
         % (count, why, "; this process trains" if count == 1 else ""))
  return count


def worker_command(argv):
  """The command that runs this binary as one worker of a local cluster: this Python, the main
  script's absolute path, argv's flags (argv[0] is the program), then
  --distribute=multi_worker --workers=1, which win over the same flags given before (absl
  keeps a flag's last value). Run it with pipeline.child_process.environment()."""
  script = os.path.abspath(sys.modules["__main__"].__file__)
  given = list(argv[1:])
  # absl reads what follows "--" as positional arguments: the flags must come before.
  end = given.index("--") if "--" in given else len(given)
  return ([sys.executable, script] + given[:end] + ["--distribute=multi_worker", "--workers=1"]
          + given[end:])


def free_ports(count):
  """count distinct TCP ports that nothing listens on now, on any interface: TensorFlow's gRPC
  server listens on every interface, IPv6 too where the host has it, whatever address TF_CONFIG
  gives (seg.training.distribute.listen_on_own_port). Another process may take one before its worker
  does: that worker then stops naming the port."""
  dual = socket.has_dualstack_ipv6()
  servers = []
  try:
    for _ in range(count):
      servers.append(socket.create_server(
          ("", 0), family=socket.AF_INET6 if dual else socket.AF_INET, dualstack_ipv6=dual))
    return [server.getsockname()[1] for server in servers]
  finally:
    for server in servers:
      server.close()


def tf_config(addresses, index):
  """The TF_CONFIG of worker index in a cluster of workers at addresses ("host:port")."""
  return json.dumps({"cluster": {"worker": list(addresses)},
                     "task": {"type": "worker", "index": index}})


def _say(line):
  print(line, file=sys.stderr, flush=True)


class _Worker:
  """One started worker: its index and process; for a non-chief, the last lines of its stdout
  and stderr (tail), read by a thread of its own."""

  def __init__(self, index, process):
    self.index, self.process = index, process
    self.tail = collections.deque(maxlen=TAIL_LINES)
    self._reader = None

  @property
  def name(self):
    return "worker %d" % self.index

  def running(self):
    return self.process.poll() is None

  def start_reading(self):
    """Starts keeping the tail of its output (a non-chief's, piped)."""
    self._reader = threading.Thread(target=self._read, name="%s output" % self.name,
                                    daemon=True)
    self._reader.start()

  def _read(self):
    for line in iter(lambda: self.process.stdout.readline(_LINE_LIMIT), b""):
      self.tail.append(line)

  def finish_reading(self):
    """Waits (at most _REAP_TIMEOUT seconds) for the end of its output, once it has exited,
    then closes the pipe. A process it started that still holds the pipe would keep the
    reader waiting: the pipe then stays open until this process ends."""
    if self._reader:
      self._reader.join(_REAP_TIMEOUT)
      if not self._reader.is_alive():
        self.process.stdout.close()

  def status(self):
    """Its exit status as a shell gives it: 128 + N for a worker ended by signal N."""
    code = self.process.returncode
    return code if code >= 0 else 128 - code

  def outcome(self):
    """How it ended, in words: "exited with status 3", "was killed by SIGKILL"."""
    code = self.process.returncode
    if code >= 0:
      return "exited with status %d" % code
    try:
      return "was killed by %s" % signal.Signals(-code).name
    except ValueError:
      return "was killed by signal %d" % -code


def _start(command, index, addresses, env):
  """Starts worker index (pipeline.child_process.start: a session of its own, the parent-death
  signal) with no stdin; the chief's stdout and stderr are this process's, a non-chief's go to
  one pipe. Only the chief writes --result_json."""
  environment = dict(os.environ if env is None else env, TF_CONFIG=tf_config(addresses, index))
  piped = subprocess.PIPE if index else None
  if index:  # the chief's --result_json is the run's
    command = cli.without_flag(command, "result_json")
  try:
    process = child_process.start(command, env=environment, stdin=subprocess.DEVNULL,
                                  stdout=piped, stderr=subprocess.STDOUT if index else None)
  except OSError as e:
    raise errors.Error("cannot start worker %d, %s: %s" % (index, " ".join(command), e)) from e
  return _Worker(index, process)


def _stop(workers, grace):
  """Stops each worker still running (pipeline.child_process.stop_all: SIGTERM to its group
  unless it was sent already, SIGKILL grace seconds later). Returns (those stopped, those
  killed) once they have exited."""
  running = [worker for worker in workers if worker.running()]
  killed = child_process.stop_all(grace, [worker.process for worker in running])
  return ([worker for worker in running if worker.process not in killed],
          [worker for worker in running if worker.process in killed])


def _stopped_words(stopped, killed, grace):
  """"; stopped worker 0, worker 2; killed worker 1 (still running 5s after SIGTERM)"."""
  words = ""
  if stopped:
    words += "; stopped " + ", ".join(worker.name for worker in stopped)
  if killed:
    words += "; killed %s (still running %gs after SIGTERM)" % (
        ", ".join(worker.name for worker in killed), grace)
  return words


def _report_failures(failed, stopped, killed, grace):
  """The tail of each failed non-chief's output, then one line naming the failed workers."""
  for worker in failed:
    for line in worker.tail if worker.index else ():
      _say("[%s] %s" % (worker.name, line.decode("utf-8", "replace").rstrip("\r\n")))
  named = []
  for worker in failed:
    shown = (" (the chief)" if not worker.index else
             " (its last lines are above)" if worker.tail else " (it printed nothing)")
    named.append("%s%s %s" % (worker.name, shown, worker.outcome()))
  _say("workers: %s%s" % (", ".join(named), _stopped_words(stopped, killed, grace)))


def _supervise(workers, grace):
  """Waits until every worker has exited 0 (returns 0) or one has failed; then stops the
  others and returns the first failure's status."""
  while True:
    failed = [worker for worker in workers if not worker.running() and worker.status()]
    if failed:
      stopped, killed = _stop(workers, grace)
      for worker in failed:
        worker.finish_reading()
      _report_failures(failed, stopped, killed, grace)
      return failed[0].status()
    if not any(worker.running() for worker in workers):
      return 0
    time.sleep(_POLL)


def run(command, count, env=None, grace=STOP_GRACE):
  """Runs count workers of command (argv, a list) on this machine; returns the exit status: 0
  once every worker has exited 0; else, once the others are stopped, the status of the first
  worker to fail (128 + N for one killed by signal N). Prints a line to stderr first, and one
  if a worker fails. At a stop signal (pipeline.stopping.Stopped, raised in the main thread)
  it stops the workers and raises Stopped again, its line naming them.

  Each worker has the environment env (default: os.environ) plus TF_CONFIG: one cluster of
  count workers on 127.0.0.1, at ports free now, and its own index. Worker 0's stdout and
  stderr are this process's, so its lines show as they come, unchanged; each other worker's
  last TAIL_LINES lines are kept, and shown if it fails. A worker is stopped with SIGTERM to its
  process group, then SIGKILL grace seconds later; it gets SIGTERM when this process ends,
  even by SIGKILL (pipeline.child_process). Call it from the main thread.
  """
  addresses = ["%s:%d" % (LOOPBACK, port) for port in free_ports(count)]
  _say("workers: %d local workers on %s; worker 0 (the chief) reports, the others' logs are "
       "shown if they fail" % (count, ", ".join(addresses)))
  sys.stdout.flush()  # what this process printed comes before the chief's lines
  workers = []
  try:
    for index in range(count):
      workers.append(_start(command, index, addresses, env))
    # Reading threads start once every fork is done: the fork's preexec runs in a child forked
    # from a process with no thread of this module busy.
    for worker in workers[1:]:
      worker.start_reading()
    return _supervise(workers, grace)
  except stopping.Stopped as stopped:
    _, killed = _stop(workers, grace)  # pipeline.stopping has sent them SIGTERM
    ended = [worker for worker in workers
             if worker not in killed and worker.status() == 128 + signal.SIGTERM]
    stopping.subject = "workers:"
    raise stopping.Stopped(stopped.number, _stopped_words(ended, killed, grace)) from None
  finally:
    _stop(workers, grace)  # none left running, after an error too
    for worker in workers:
      worker.finish_reading()
