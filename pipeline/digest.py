"""sha256 digests of bytes, files, file trees and canonical records.

A tree's digest is the sha256 of its listing: one line per regular file, sorted by relative
POSIX path, in `sha256sum` format ("<file sha256>  <path>\\n"). The listing is written beside
the tree in the store, so `sha256sum -c` checks a stored output with no reproseg code at all.
"""

import hashlib
import json
import os

_CHUNK = 1 << 20


def bytes_digest(data):
  return hashlib.sha256(data).hexdigest()


def file_digest(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      h.update(chunk)
  return h.hexdigest()


def canonical_json(record):
  """The one byte encoding of a JSON-able record: sorted keys, no spaces, UTF-8."""
  return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                    allow_nan=False).encode("utf-8")


def readable_json(value):
  """The bytes of a JSON file in a stage output: sorted keys, indent 1, ASCII, a final
  newline. One encoding everywhere, so equal values give equal files.

  Strict JSON, as strict parsers read it: a NaN or ±Infinity anywhere in value raises
  ValueError (json's "Out of range float values are not JSON compliant"). The stages refuse
  a diverged model with their own error (naming the fix) before they get here.
  """
  return (json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("ascii")


def record_digest(record):
  return bytes_digest(canonical_json(record))


def tree_files(root):
  """Relative POSIX paths of the regular files under root, sorted; refuses anything else."""
  paths = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in dirnames + filenames:
      full = os.path.join(dirpath, name)
      if os.path.islink(full):
        raise ValueError("%s is a symbolic link: stage outputs hold regular files only" % full)
    for name in filenames:
      full = os.path.join(dirpath, name)
      if not os.path.isfile(full):
        raise ValueError("%s is not a regular file: stage outputs hold regular files only" % full)
      paths.append(os.path.relpath(full, root).replace(os.sep, "/"))
  return sorted(paths)


def tree_listing(root):
  """The `sha256sum`-format listing of a tree (see the module docstring)."""
  return "".join("%s  %s\n" % (file_digest(os.path.join(root, p)), p)
                 for p in tree_files(root))


def tree_digest(root):
  return bytes_digest(tree_listing(root).encode("utf-8"))
