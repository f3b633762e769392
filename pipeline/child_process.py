"""The child processes a binary starts: their environment, and their start, such that none
outlives the binary (pipeline.stopping stops them with it).

Each child runs in a session (and process group) of its own, so that signals reach it through
its parent only; it gets SIGTERM when the thread that started it ends, with its parent,
however the parent ends (prctl PR_SET_PDEATHSIG); and it starts with SIGINT and SIGTERM
unblocked, whatever its parent's mask (pipeline.stopping blocks them).
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import weakref

# Set in a child's environment: its parent reports the child's stop (pipeline.stopping).
REPORTED_BY_PARENT = "REPROSEG_STOP_REPORTED_BY_PARENT"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.2  # a waiting main thread's slice: it takes a stop signal between two
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what stops a binary (pipeline.stopping)
GRACE_SECONDS = 5  # from SIGTERM to SIGKILL for a child that does not end
_running = set()  # the Popen objects started here that may still run
_terminated = weakref.WeakSet()  # those sent SIGTERM: a second ends one of ours at once
_lock = threading.Lock()


def environment(base=None):
  """base (default os.environ) with PYTHONPATH set to this process's module path (sys.path's
  non-empty entries, absolute), so that the child imports what this process does: from the
  runfiles tree under `bazel run`, from the source tree as `PYTHONPATH=. python ...`."""
  path = []
  for entry in sys.path:
    if entry and os.path.abspath(entry) not in path:
      path.append(os.path.abspath(entry))
  return dict(os.environ if base is None else base, PYTHONPATH=os.pathsep.join(path))


def _preexec():
  """A preexec_fn for subprocess.Popen (see the module's docstring). Everything it calls is
  looked up here, before the fork; the child dies at once if its parent is already gone."""
  libc = ctypes.CDLL(None, use_errno=True)
  prctl, default_action = libc.prctl, libc.signal
  parent, sigterm, sigkill = os.getpid(), int(signal.SIGTERM), int(signal.SIGKILL)
  getppid, kill, getpid, unblock = os.getppid, os.kill, os.getpid, signal.pthread_sigmask

  def preexec():
    # SIGTERM's default action before it is unblocked: the parent's handler only sets a flag
    # that no Python code in this child will read before exec.
    default_action(sigterm, 0)  # SIG_DFL
    unblock(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0) != 0:
      raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if getppid() != parent:  # the parent died before prctl: no signal would come
      kill(getpid(), sigkill)

  return preexec


def start(command, env=None, **kwargs):
  """subprocess.Popen(command, env=env, **kwargs) in a session of its own, with the
  parent-death signal and the stop signals unblocked; terminate_all and stop_all reach it
  until run() has waited for it (a caller of start() waits itself). Its environment (env, default os.environ) says that this process reports its
  stop (REPORTED_BY_PARENT)."""
  env = dict(os.environ if env is None else env, **{REPORTED_BY_PARENT: "1"})
  process = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_preexec(),
                             **kwargs)
  with _lock:
    _running.add(process)
  return process


def run(command, timeout=None, input=None,  # pylint: disable=redefined-builtin
        capture_output=False, **kwargs):
  """subprocess.run(command, check=False, ...) through start(): the CompletedProcess; the child
  is killed (its process group) if it runs longer than timeout seconds, and then
  subprocess.TimeoutExpired is raised, as subprocess.run raises it. If this process is
  stopped meanwhile (an exception), the child is stopped (stop) before it propagates."""
  if input is not None:
    kwargs["stdin"] = subprocess.PIPE
  if capture_output:
    kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  process = start(command, **kwargs)
  deadline = None if timeout is None else time.monotonic() + timeout
  try:
    while True:  # in slices, so that a stop signal reaches the main thread (pipeline.stopping)
      try:
        stdout, stderr = process.communicate(input, timeout=_slice(deadline))
        break
      except subprocess.TimeoutExpired:
        if deadline is not None and time.monotonic() >= deadline:
          signal_group(process, signal.SIGKILL)
          process.wait()
          raise subprocess.TimeoutExpired(command, timeout) from None
        input = None  # given once: communicate() keeps it
  except BaseException:
    stop(process, GRACE_SECONDS)
    raise
  finally:
    with _lock:
      _running.discard(process)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _slice(deadline):
  """Seconds to wait next: POLL_SECONDS, or less to end at deadline (time.monotonic())."""
  return POLL_SECONDS if deadline is None else max(0, min(POLL_SECONDS,
                                                           deadline - time.monotonic()))


def signal_group(process, number):
  """Sends signal number to a child's process group (the child and what it started)."""
  try:
    os.killpg(process.pid, number)
  except ProcessLookupError:  # the whole group has exited meanwhile
    pass


def terminate(process):
  """SIGTERM to a child's process group, unless it was sent before (a second SIGTERM ends a
  binary of this project at once, without its cleanup)."""
  with _lock:
    if process in _terminated:
      return
    _terminated.add(process)
  signal_group(process, signal.SIGTERM)


def terminate_all():
  """terminate() every child started here still running."""
  with _lock:
    running = [process for process in _running if process.poll() is None]
  for process in running:
    terminate(process)


def stop(process, grace):
  """terminate(process), and SIGKILL to its group if it still runs grace seconds later;
  returns whether it had to be killed, once it has ended (or a second more has passed)."""
  return bool(stop_all(grace, [process]))


def stop_all(grace, processes=None):
  """stop() for processes (default: every child started here still running) at once; returns
  those that had to be killed."""
  if processes is None:
    with _lock:
      processes = list(_running)
  running = [process for process in processes if process.poll() is None]
  for process in running:
    terminate(process)
  _wait_for(running, grace)
  killed = [process for process in running if process.poll() is None]
  for process in killed:
    signal_group(process, signal.SIGKILL)
  _wait_for(killed, 1)
  return killed


def _wait_for(processes, seconds):
  deadline = time.monotonic() + seconds
  while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
    time.sleep(0.05)
