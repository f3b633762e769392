"""Registers the Python interpreter that ./dev set up as Bazel's Python 3 toolchain.

The interpreter is $BAZEL_PYTHON when set (./dev points it at the virtualenv built from
requirements.lock, or at the Nix shell's Python), else the first python3 on PATH. Bazel
re-runs this rule when BAZEL_PYTHON or PATH changes, so a new lock means a new toolchain.
"""

def interpreter_path(ctx):
    """The interpreter a repository rule runs: $BAZEL_PYTHON, else the first python3 on PATH."""
    python = ctx.os.environ.get("BAZEL_PYTHON", "")
    if python:
        return python
    found = ctx.which("python3")
    if not found:
        fail("No Python interpreter: set BAZEL_PYTHON or run Bazel through ./dev.")
    return str(found)

def _python_interpreter_impl(ctx):
    python = interpreter_path(ctx)
    result = ctx.execute([python, "-c", "import sys; print(sys.version_info[0])"])
    if result.return_code != 0 or result.stdout.strip() != "3":
        fail("BAZEL_PYTHON=%s is not a working Python 3 interpreter: %s" % (python, result.stderr))
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("BUILD.bazel", """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(python = python))

python_interpreter = repository_rule(
    implementation = _python_interpreter_impl,
    environ = ["BAZEL_PYTHON", "PATH"],
    local = True,
)
