"""Checked-in generated files: write them, or check that they are current."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_or_check(relative_path, text, check, command, count_label):
  """Writes text to ROOT/relative_path atomically, or with check exits 1 if it differs.

  command is what regenerates the file, named in the message; count_label describes text
  (e.g. "12 wheels") in the line printed after writing.
  """
  path = os.path.join(ROOT, relative_path)
  if check:
    with open(path) as f:
      if f.read() != text:
        sys.exit("%s is out of date: run %s" % (relative_path, command))
    return
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  print("wrote %s (%s)" % (relative_path, count_label))
