"""The errors a binary reports as one `error:` line, without a traceback, and the exit status of
each kind (STATUSES; docs/failures.md explains each). Scripts may rely on them.
"""

REFUSED = 1
USAGE = 2
DAMAGED = 3
NO_SPACE = 4
NOT_WRITABLE = 5
CHECK_FAILED = 6
INTERNAL = 70


# (status, what it means), as --help lists them.
STATUSES = (
    (0, "done"),
    (REFUSED, "an input was refused (a flag's value, a file, a config) or the run cannot go on "
              "(training diverged); the line names the input and the fix"),
    (USAGE, "the command line does not parse: an unknown flag, a value of the wrong type, a "
            "stray argument"),
    (DAMAGED, "a stored output's bytes are not those its digest names"),
    (NO_SPACE, "no space left on the file system being written"),
    (NOT_WRITABLE, "the store (or an output folder) is read-only, and the command must write"),
    (CHECK_FAILED, "the command ran and its check said no: the release gate refused the "
                   "model's metrics, or `store check` rebuilt other bits"),
    (INTERNAL, "internal error: a traceback, which is a bug to report (sysexits.h's "
               "EX_SOFTWARE)"),
    ("128+N", "stopped by signal N: 130 for SIGINT (Ctrl-C), 143 for SIGTERM"),
)


class Error(Exception):
  """A problem with the inputs that the user can act on; the message names the bad input
  and says what to do. exit_status: the process's exit status when it ends the process;
  reason: one word for it, in --result_json's "exit"."""
  exit_status = REFUSED
  reason = "refused"


class UsageError(Error):
  """A command line that does not parse: an unknown flag, a bad flag value, a stray argument."""
  exit_status = USAGE
  reason = "usage"


class DamagedError(Error):
  """A stored output whose files no longer hash to its digest."""
  exit_status = DAMAGED
  reason = "damaged"


class NoSpaceError(Error):
  """A write that found its file system full (ENOSPC, or EDQUOT: over a disk quota)."""
  exit_status = NO_SPACE
  reason = "no_space"


class NotWritableError(Error):
  """A command that must write found its folder read-only (EROFS, or EACCES/EPERM)."""
  exit_status = NOT_WRITABLE
  reason = "not_writable"


class CheckFailed(Error):
  """A check that ran and said no: the release gate refused the model, or a rebuild gave
  other bits."""
  exit_status = CHECK_FAILED
  reason = "check_failed"


class Diverged(Error):
  """A training run whose weights or loss became NaN or infinite (seg.training.train
  check_finite): a tune trial that ends so is a failed trial, not a failed search."""
  reason = "diverged"
