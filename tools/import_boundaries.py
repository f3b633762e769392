"""Refuses an import that crosses a library's boundary.

Bazel's py_library does not read imports, so the build runs this for every library made with
tools/import_boundaries.bzl: a reproseg module may import the modules of its own Bazel package
and of the packages its library's deps name, and nothing else of reproseg's. The stage keys
follow imports (pipeline/code.py), so the deps a BUILD file declares bound the keys of the
stages whose code is in its folder (tune's key also holds the train stage's code, which
//seg/tuning reads as files: its data, not its deps).

usage: import_boundaries.py --target=//seg/serve:serve --checked=seg/serve/export.py,...
                            --allowed=seg/model,pipeline --out=STAMP FILE...
  FILE...  the target's sources and its deps' sources.
Exit status 1, with one line per refused import, if any import is refused; otherwise STAMP is
written with the number of imports checked.
"""

import argparse
import ast
import os
import sys

from pipeline import imports


def module_name(path):
  """"seg/model/unet.py" → "seg.model.unet"; "seg/model/__init__.py" → "seg.model"."""
  parts = path[:-len(".py")].split("/")
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def refusals(path, modules, target, allowed):
  """The lines saying which imports of the file at path target may not make; modules maps each
  module name known to the build to its file, allowed holds the packages target may use."""
  found = []
  build_file = "%s/BUILD.bazel" % allowed[0]
  for line, names in imports.statements(path):
    where = "%s:%d" % (path, line)
    if names is None:
      found.append("%s: a relative import: write it absolute (from seg.model import unet), since "
                   "the stage keys (pipeline/code.py) read only absolute imports" % where)
      continue
    if not imports.is_reproseg(names[0]):
      continue
    homes = {os.path.dirname(modules[name]) for name in names if name in modules}
    if not homes:
      found.append("%s imports %s, which is in no dep of %s: add the library that holds it to "
                   "its deps in %s, or move the code" % (where, names[0], target, build_file))
    for home in sorted(homes - set(allowed)):
      found.append("%s imports %s, from //%s, which is not in the deps of %s: add it in %s, or "
                   "move the code" % (where, names[0], home, target, build_file))
  return found


def code_in_init(path):
  """A line refusing an __init__.py that holds more than its docstring, or None: a folder's
  __init__.py is in the key of every stage that imports a module of the folder."""
  with open(path, "rb") as f:
    body = ast.parse(f.read(), filename=path).body
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    body = body[1:]
  if body:
    return ("%s:%d holds code: a folder's __init__.py is in the key of every stage that imports "
            "the folder, so it holds its docstring only; move the code to a module"
            % (path, body[0].lineno))
  return None


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--target", required=True, help="the target's label, //seg/serve:serve")
  parser.add_argument("--checked", default="", help="its sources, comma-separated")
  parser.add_argument("--allowed", default="", help="the packages of its deps, comma-separated")
  parser.add_argument("--out", required=True, help="the stamp file to write when all pass")
  parser.add_argument("files", nargs="*", help="its sources and its deps' sources")
  args = parser.parse_args(argv)
  files = [f for f in args.files if f.endswith(".py") and imports.is_reproseg(f.split("/")[0])]
  modules = {module_name(f): f for f in files}
  package = args.target[2:].split(":")[0]
  allowed = [package] + [p for p in args.allowed.split(",") if p]
  checked = [f for f in args.checked.split(",") if f.endswith(".py")]
  found = [line for f in checked for line in refusals(f, modules, args.target, allowed)]
  found += [line for f in checked if os.path.basename(f) == "__init__.py"
            for line in [code_in_init(f)] if line]
  for line in found:
    print("error: " + line, file=sys.stderr)
  if found:
    return 1
  with open(args.out, "w") as f:
    f.write("%d files of %s checked: every import is within its deps\n"
            % (len(checked), args.target))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
