"""Reading what a user hands a binary: JSON files (configs, hyperparameter files, search
spaces, TF_CONFIG), read strictly, and paths, with a leading ~ expanded as a shell would.

Python's json module reads NaN, Infinity and -Infinity, which are not JSON (RFC 8259, section
6), and keeps the last of a key given twice (section 4 leaves it open); either would let a
file mean something else than it says, so both are refused here. A shell expands ~ only at
the start of a word, so `--store=~/x` reaches the binary unexpanded; path flags defined here
expand it, and refuse a ~ that names no user.
"""

import json
import os
import sys

from absl import flags

from pipeline import errors


class _Refused(ValueError):
  pass


def _no_constant(name):
  raise _Refused("%s is not a JSON number: write a finite number" % name)


def _no_duplicates(pairs):
  seen = {}
  for key, value in pairs:
    if key in seen:
      raise _Refused("the key %s is given twice: keep one" % json.dumps(key))
    seen[key] = value
  return seen


def loads(text, what):
  """The JSON value of text, read strictly (no NaN, Infinity or duplicate key); raises
  errors.Error naming what (e.g. "search space spaces/x.json"), the line and the fix."""
  try:
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
  except _Refused as e:
    raise errors.Error("%s: %s" % (what, e)) from None
  except ValueError as e:  # json.JSONDecodeError names the line and column
    raise errors.Error("%s is not valid JSON: %s" % (what, e)) from None


def read_json(path, what, kind=dict, shown=None):
  """The JSON value of a user's file, read strictly (loads); raises errors.Error naming what
  and the path (or shown, how the user knows the file) if the file cannot be read, is not
  JSON, or its top level is not a kind."""
  where = "%s %s" % (what, shown or path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise errors.Error("cannot read %s: %s" % (where, e.strerror or e)) from None
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise errors.Error("%s is not UTF-8 text (byte %d): save it as UTF-8 JSON"
                       % (where, e.start)) from None
  if not text.strip():
    raise errors.Error("%s is empty: it must hold a JSON %s" % (where, _kind_words(kind)))
  value = loads(text, where)
  if not isinstance(value, kind):
    raise errors.Error("%s must hold a JSON %s, not %s" % (
        where, _kind_words(kind), _kind_words(type(value))))
  return value


def _kind_words(kind):
  return {dict: "object", list: "array", str: "string", bool: "true or false", int: "number",
          float: "number", type(None): "null"}.get(kind, kind.__name__)


def _expand(value):
  """value with a leading ~ or ~user expanded; raises ValueError if its first component is
  still a ~ (no such user, or no home)."""
  expanded = os.path.expanduser(value)
  first = expanded.split(os.sep, 1)[0]
  if first.startswith("~"):
    raise ValueError("%s names no home folder (no such user, or $HOME is unset), and a folder "
                     "named %s would be made in the current folder: give the path in full"
                     % (first, first))
  return expanded


def expand_path(value, name):
  """value with a leading ~ or ~user expanded (os.path.expanduser); raises errors.UsageError
  naming name (a flag or variable) if its first component is still a ~. "" and None pass
  unchanged."""
  if not value:
    return value
  try:
    return _expand(value)
  except ValueError as e:
    raise errors.UsageError("%s=%s: %s" % (name, value, e)) from None


class _PathParser(flags.ArgumentParser):
  """A path flag's parser: expand_path of the value given."""

  def parse(self, argument):
    return _expand(argument) if argument else argument

  def flag_type(self):
    return "path"


def define_path(name, default, help_text, multi=False):
  """A string flag holding a path, a leading ~ expanded (expand_path), defined as the calling
  module's flag (--help groups it there; seg/tune_main.py passes a group's flags on); multi:
  given once per path (a list). Returns the FlagHolder."""
  help_text += " A leading ~ is expanded."
  caller = sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
  module = sys.argv[0] if caller == "__main__" else caller  # as absl names a module
  if multi:
    return flags.DEFINE_multi(_PathParser(), flags.ArgumentSerializer(), name, default,
                              help_text, module_name=module)
  return flags.DEFINE(_PathParser(), name, default, help_text, module_name=module,
                      serializer=flags.ArgumentSerializer())
