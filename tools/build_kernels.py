"""Builds the fixed-order kernels' library, kernels/fixed_order_ops.so, without Bazel: what the
flake's packages run (Nix builds it with the pinned Python and stdenv's compiler), and what
anyone can run in the pinned environment (`./dev python tools/build_kernels.py --tree=DIR`).

It builds what kernels/BUILD.bazel has Bazel build: one translation unit per instruction set,
kernels_<isa>.cc with COPTS + ISA_COPTS[isa], and ops.cc with COPTS, all from
kernels/flags.bzl, which is read as data (its assignments of literals; nothing in it runs), each
with the compile flags of the TensorFlow that this interpreter imports
(tf.sysconfig.get_compile_flags(): its headers, as -isystem, and its -D flags, as
third_party/bazel/tensorflow_headers.bzl gives them to Bazel), linked as a shared library
against its libtensorflow_framework (tf.sysconfig.get_link_flags()). Like Bazel it adds
-fPIC and `-iquote TREE` (the sources include "kernels/....h"); Bazel's other toolchain flags
(warnings, -fstack-protector, -fno-omit-frame-pointer, -Wl,-S) are left out: with Debian's
g++ 12 the library this builds gave the golden digests of tests/golden/fixed_order.json on
every path, as Bazel's does (docs/what-was-run.md).

  python3 tools/build_kernels.py --tree=DIR            # DIR/kernels/fixed_order_ops.so
  python3 tools/build_kernels.py --tree=DIR --dry_run  # print the commands, run none

kernels/fixed_order.py loads the library beside it before any other, without comparing its
time with the sources', so build into a copy of the tree (the flake's app, a scratch copy),
not into a working tree you edit: there Bazel builds it (`./dev bazel build //kernels:all`).

The compiler is --cxx, else $CXX (Nix's stdenv sets it), else g++.
"""

import argparse
import ast
import concurrent.futures
import os
import shlex
import subprocess
import sys
import tempfile

FLAGS_FILE = os.path.join("kernels", "flags.bzl")
LIBRARY = os.path.join("kernels", "fixed_order_ops.so")
# What kernels/BUILD.bazel builds: each instruction set's file, and ops.cc, which picks one.
OPS = "ops.cc"


def read_flags(path):
  """{name: value} of the top-level assignments of kernels/flags.bzl, each a literal.

  Raises ValueError for any other statement (a load, a def): the file is read as data."""
  with open(path) as f:
    tree = ast.parse(f.read(), filename=path)
  values = {}
  for node in tree.body:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
      continue  # the docstring
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)):
      try:
        values[node.targets[0].id] = ast.literal_eval(node.value)
      except ValueError:
        raise ValueError("%s:%d: %s is not a literal" % (path, node.lineno,
                                                         node.targets[0].id)) from None
      continue
    raise ValueError("%s:%d: only assignments of literals are read here, not %s"
                     % (path, node.lineno, type(node).__name__))
  return values


def _strings(value, what):
  if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
    raise ValueError("%s is not a list of strings: %r" % (what, value))
  return value


def units(tree):
  """[(source path relative to tree, its flags from flags.bzl)], as kernels/BUILD.bazel has
  them. Raises ValueError if flags.bzl lacks COPTS or ISA_COPTS, or if kernels/ holds a .cc
  file that is not one of them (BUILD.bazel would have to say what it gets)."""
  values = read_flags(os.path.join(tree, FLAGS_FILE))
  copts = _strings(values.get("COPTS"), "COPTS")
  isa_copts = values.get("ISA_COPTS")
  if not isinstance(isa_copts, dict) or not isa_copts:
    raise ValueError("ISA_COPTS is not a dict of instruction sets: %r" % (isa_copts,))
  found = [("kernels/kernels_%s.cc" % isa, copts + _strings(flags, "ISA_COPTS[%r]" % isa))
           for isa, flags in isa_copts.items()] + [("kernels/" + OPS, copts)]
  on_disk = sorted("kernels/" + n for n in os.listdir(os.path.join(tree, "kernels"))
                   if n.endswith(".cc"))
  if sorted(source for source, _ in found) != on_disk:
    raise ValueError("kernels/ holds %s, but flags.bzl and kernels/BUILD.bazel give %s"
                     % (on_disk, sorted(source for source, _ in found)))
  return found


def tensorflow_flags():
  """(compile flags, link flags, library folder) of the TensorFlow this interpreter imports."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags(),
          tf.sysconfig.get_lib())


def _system(flag):
  """TensorFlow's -I as -isystem, as Bazel gives a cc_library's includes: no warnings from
  its headers."""
  return "-isystem" + flag[2:] if flag.startswith("-I") else flag


def commands(tree, output, objects, cxx, tf_flags):
  """([compile command per unit], link command): the argv lists."""
  compile_flags, link_flags, library_folder = tf_flags
  compiles, objects_out = [], []
  for source, flags in units(tree):
    obj = os.path.join(objects, os.path.basename(source)[:-len(".cc")] + ".o")
    compiles.append([cxx, "-fPIC"] + [_system(f) for f in compile_flags] + ["-iquote", tree]
                    + flags
                    + ["-c", os.path.join(tree, source), "-o", obj])
    objects_out.append(obj)
  # The run path names TensorFlow's folder, so the library loads outside a TensorFlow
  # process too; inside one, libtensorflow_framework is already loaded under its soname.
  link = ([cxx, "-shared", "-o", output] + objects_out + link_flags
          + ["-Wl,-rpath," + library_folder])
  return compiles, link


def build(tree, output, cxx, jobs, dry_run=False, out=sys.stdout):
  """Compiles and links the library at output; prints each command; raises
  subprocess.CalledProcessError for a failed one (the compiler's output is above)."""
  tf_flags = tensorflow_flags()
  with tempfile.TemporaryDirectory(prefix="kernels-") as objects:
    compiles, link = commands(tree, output if dry_run else output + ".tmp", objects, cxx,
                              tf_flags)
    for command in compiles + [link]:
      print(shlex.join(command), file=out, flush=True)
    if dry_run:
      return
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
      for result in list(pool.map(lambda c: subprocess.run(c, check=False), compiles)):
        if result.returncode:
          raise subprocess.CalledProcessError(result.returncode, result.args)
    subprocess.run(link, check=True)
    os.replace(output + ".tmp", output)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tree", required=True,
                      help="the tree to build in: a copy holding kernels/ (see above)")
  parser.add_argument("--output", help="the library (default: TREE/%s)" % LIBRARY)
  parser.add_argument("--cxx", default=os.environ.get("CXX") or "g++",
                      help="the C++ compiler (default: $CXX, else g++)")
  parser.add_argument("--jobs", type=int,
                      default=int(os.environ.get("NIX_BUILD_CORES") or 0) or os.cpu_count(),
                      help="compilers at once (default: $NIX_BUILD_CORES, else the CPU count)")
  parser.add_argument("--dry_run", action="store_true", help="print the commands, run none")
  args = parser.parse_args(argv)
  tree = os.path.abspath(args.tree)
  output = os.path.abspath(args.output or os.path.join(tree, LIBRARY))
  try:
    build(tree, output, args.cxx, max(args.jobs, 1), args.dry_run)
  except (ValueError, OSError) as e:
    sys.exit("build_kernels: error: %s" % e)
  except subprocess.CalledProcessError as e:
    sys.exit("build_kernels: error: %s failed (exit status %d; its output is above)"
             % (e.cmd[0], e.returncode))


if __name__ == "__main__":
  main()
