"""How every binary stops at SIGINT or SIGTERM: one `error:` line, exit status 128 + N,
nothing half-written left, and no process it started left running.

Every main imports pipeline.signals_blocked before anything else, which blocks SIGINT and
SIGTERM before any thread starts, so that every thread inherits the mask and watch()'s thread
takes them (sigwait), whatever the others do; TensorFlow's coordination service installs a
SIGTERM handler of its own, which never runs. watch() blocks them too, in the main thread. A
thread that does not block them (seen: one with SIGTERM unblocked in a //seg:tune process)
passes a signal to Python's handler in the main thread instead, which acts the same.

At the first signal that thread sends SIGTERM to every child process started through
pipeline.child_process, and raises Stopped in the main thread (_thread.interrupt_main), so
that the main thread unwinds: staging folders and temporary files are removed by the code
that made them, and pipeline.cli prints the line. A main thread that does not take it within
RESPONSE_SECONDS (it waits in TensorFlow's C++, in a step or a collective op whose peer is
gone) is ended by exit_now, as is any process at a second signal. After exit_now, the store's
staging folders of the dead process are removed the next time the store is opened
(pipeline.store), and the temporary files of pipeline.files are removed by exit_now itself.

A signal this process ignores when watch() starts (SIGINT in a shell's background job)
stays ignored.
"""

import _thread
import os
import signal
import sys
import threading

from pipeline import child_process

RESPONSE_SECONDS = 5  # from the first signal to exit_now, if the main thread does not respond
CHILD_GRACE = 2  # seconds exit_now gives children to end after SIGTERM, before SIGKILL

# Who stops, as the line names it: "tune:" by default; a worker of a cluster says which.
subject = os.path.basename(sys.argv[0]).replace("_main.py", "").replace(".py", "") + ":"
_responded = threading.Event()  # the main thread has taken the first signal
_taken = []  # its number
# A child that pipeline.child_process started prints no line when it stops: its parent, which
# stopped it, reports. The variable is for this process only: its own children are told anew.
_REPORTED_BY_PARENT = os.environ.pop(child_process.REPORTED_BY_PARENT, None) == "1"


class Stopped(BaseException):
  """Raised in the main thread at a stop signal (a BaseException, as KeyboardInterrupt is:
  `except Exception` lets it pass). number: the signal; details: words the line ends with
  ("; stopped worker 0, worker 1")."""

  def __init__(self, number, details=""):
    super().__init__(number, details)
    self.number, self.details = number, details

  @property
  def status(self):
    return 128 + self.number

  def line(self):
    """"error: tune: stopped by SIGINT; ...\n", or "" in a child whose parent reports."""
    if _REPORTED_BY_PARENT:
      return ""
    return "error: %s stopped by %s%s\n" % (subject, signal.Signals(self.number).name,
                                            self.details)


def _raise_stopped(number, unused_frame):
  """The main thread's handler: raised by watch()'s thread (interrupt_main), or by Python
  itself for a signal that reached a thread that does not block it (a thread some library
  started before the mask was set): either way the first stops, a second ends at once."""
  if _responded.is_set():
    exit_now(Stopped(number, " again: ended at once"))
  _taken.append(number)
  _responded.set()
  child_process.terminate_all()
  raise Stopped(number)


def check():
  """Raises the Stopped of a signal the main thread has taken, if any: where a stage would
  publish its output or start the next piece of work. Python drops an exception raised where
  it cannot propagate (in a __del__, in Python code that C code calls and whose errors it
  clears), so the Stopped that the handler raised may never unwind; this makes the run stop
  at the next such point, storing nothing."""
  if _taken:
    raise Stopped(_taken[0])


def taken():
  """The Stopped of the signal the main thread has taken, or None. An exception that unwinds
  after it is its consequence: Stopped raised inside TensorFlow's Python code, called from
  its C++, can reach the caller as another exception (pipeline.cli.ended reports it so)."""
  return Stopped(_taken[0]) if _taken else None


def watch():
  """Starts taking the stop signals (see the module's docstring). Call it from the main thread,
  once, before the work starts."""
  signal.pthread_sigmask(signal.SIG_BLOCK, child_process.STOP_SIGNALS)
  waited = [number for number in child_process.STOP_SIGNALS
            if signal.getsignal(number) is not signal.SIG_IGN]
  for number in waited:
    signal.signal(number, _raise_stopped)
  if waited:
    threading.Thread(target=_wait, args=(waited,), name="stop-signals", daemon=True).start()


def _wait(waited):
  number = signal.sigwait(waited)
  if _responded.is_set():  # the first came by a thread that did not block it: a second
    exit_now(Stopped(number, " again: ended at once"))
  child_process.terminate_all()
  _thread.interrupt_main(number)
  if not _responded.wait(RESPONSE_SECONDS):
    exit_now(Stopped(number, " (it did not respond within %ds: ended at once)"
                     % RESPONSE_SECONDS))
  again = signal.sigwait(waited)
  exit_now(Stopped(again, " again: ended at once"))


def exit_now(stopped):
  """Ends the process at once, whatever its other threads do, with stopped's line and status,
  once its children have ended (SIGKILL to those still running CHILD_GRACE seconds after
  SIGTERM) and its temporary files (pipeline.files) are removed."""
  child_process.stop_all(CHILD_GRACE)
  files = sys.modules.get("pipeline.files")
  if files:
    files.remove_pending()
  os.write(sys.stderr.fileno(), stopped.line().encode("utf-8"))
  # stdout may hold lines not yet written; flushing waits for its lock, which a blocked
  # thread could hold: give it a second.
  flusher = threading.Thread(target=sys.stdout.flush, daemon=True)
  flusher.start()
  flusher.join(1)
  os._exit(stopped.status)  # pylint: disable=protected-access
