"""The digest of a stage's source code: the module of the function that builds its output,
and every reproseg module that module imports.

The closure is found by reading import statements (no code runs; an import inside a function
counts), so a change to training code gives train a new key but leaves the keys of download
and partition alone. A stage's build module therefore imports only modules whose code its
stage runs, but for what every stage shares (pipeline/stage.py and its imports are in every
key); the deps each folder's BUILD.bazel declares bound what its modules may import, and the
build checks them (tools/import_boundaries.bzl).

Compiled code counts too: in a folder with C++ sources beside a module, those sources, its
.bzl files (the compiler flags, kernels/flags.bzl) and its BUILD.bazel (which flags each file
gets) are part of the code of every stage that imports the module, whether or not a run calls
the compiled code (kernels/fixed_order.py is in every model stage's code).
"""

import inspect
import os

from pipeline import digest
from pipeline import imports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = imports.PACKAGES
NATIVE_SOURCES = (".cc", ".h", ".bzl", "BUILD.bazel")  # in a folder with .cc files: in its code


def _module_file(name):
  """The source file of a reproseg module name, or None if it is not one."""
  if name.split(".")[0] not in PACKAGES:
    return None
  base = os.path.join(ROOT, *name.split("."))
  if os.path.isfile(base + ".py"):
    return base + ".py"
  if os.path.isfile(os.path.join(base, "__init__.py")):
    return os.path.join(base, "__init__.py")
  return None


def native_sources(folder):
  """The NATIVE_SOURCES of a folder that holds C++ sources (*.cc), else none."""
  names = os.listdir(folder)
  if not any(name.endswith(".cc") for name in names):
    return []
  return [os.path.join(folder, name) for name in names if name.endswith(NATIVE_SOURCES)]


def _closure(paths):
  """Relative paths of the files, of every reproseg module they import, and of the native
  sources beside those modules, sorted."""
  todo, seen = list(paths), set()
  while todo:
    path = todo.pop()
    if path in seen:
      continue
    seen.add(path)
    for name in (n for _, names in imports.statements(path) for n in names or ()):
      found = _module_file(name)
      if found and found not in seen:
        todo.append(found)
  folders = {os.path.dirname(p) for p in seen}
  seen.update(source for folder in folders for source in native_sources(folder))
  return sorted(os.path.relpath(p, ROOT).replace(os.sep, "/") for p in seen)


def source_tree():
  """The reproseg tree the user works in: the workspace under `bazel run`, else ROOT."""
  return os.environ.get("BUILD_WORKSPACE_DIRECTORY") or ROOT


def module_name(script):
  """The module name of a reproseg script path ("<...>/seg/train_main.py" → "seg.train_main"),
  found from its last package folder, so a runfiles path works too; None if not one."""
  parts = os.path.normpath(script).split(os.sep)
  starts = [i for i, part in enumerate(parts[:-1]) if part in PACKAGES]
  if not starts or not parts[-1].endswith(".py"):
    return None
  return ".".join(parts[starts[-1]:])[:-len(".py")]


def defining_file(function):
  """The reproseg source file that defines a function (its module may be __main__)."""
  path = os.path.abspath(inspect.getsourcefile(function))
  relative = os.path.relpath(path, ROOT)
  if relative.split(os.sep)[0] not in PACKAGES + ("tests",):
    raise ValueError("%s is defined in %s, outside reproseg's packages" % (
        function.__qualname__, path))
  return path


def file_record(path):
  """{relative path: sha256} of a source file and its import closure."""
  return {p: digest.file_digest(os.path.join(ROOT, p)) for p in _closure([path])}


def code_record(function):
  """file_record of the file defining a function: the code that runs when it does."""
  return file_record(defining_file(function))
