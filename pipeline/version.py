"""reproseg's version, as `--version` prints it beside the digest of its source files
(code_digest). No stage key holds this module: a new version number re-keys nothing.
VERSION follows PEP 440, with .dev0 until the first release (CHANGELOG.md's "Unreleased")."""

import os

from pipeline import code
from pipeline import digest

VERSION = "0.1.0.dev0"


def code_digest():
  """(sha256 of every reproseg source file's path and bytes, the file count) in
  code.source_tree(): the code, whatever git says. The files: every *.py of code.PACKAGES,
  and the native sources of their folders with C++ sources (code.native_sources)."""
  root, paths = code.source_tree(), []
  for package in code.PACKAGES:
    for folder, _, names in os.walk(os.path.join(root, package)):
      paths += [os.path.join(folder, n) for n in names if n.endswith(".py")]
      paths += code.native_sources(folder)
  record = {os.path.relpath(p, root).replace(os.sep, "/"): digest.file_digest(p)
            for p in paths}
  return digest.record_digest(record), len(record)
