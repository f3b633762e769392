"""Stand-in for @rules_python//python:defs.bzl: Bazel's native Python rules under the names
rules_python exports. Bazel 7's own tools (@bazel_tools//tools/jdk) load them from here."""

py_binary = native.py_binary
py_library = native.py_library
py_runtime = native.py_runtime
py_test = native.py_test
