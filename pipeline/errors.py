"""The one exception type a stage's main reports as a plain message, without a traceback."""


class Error(Exception):
  """A problem with the inputs that the user can act on; the message names the bad input
  and says what to do."""
