"""The one exception type a stage's main reports as a plain message, without a traceback."""


class Error(Exception):
  """A problem with the inputs that the user can act on; the message names the bad input
  and says what to do."""


# How the error of a training run that diverged begins (seg.training.check_finite): a tune trial
# that ends so is a failed trial, not a failed search (seg.tuning).
DIVERGED = "training diverged"
