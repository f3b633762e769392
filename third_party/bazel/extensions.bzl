"""The repositories WORKSPACE makes for Bazel 4.2.3, made by a module extension for Bzlmod."""

load(":python_interpreter.bzl", "python_interpreter")
load(":tensorflow_headers.bzl", "tensorflow_headers")

def _local_repositories_impl(module_ctx):
    python_interpreter(name = "python_interpreter")
    tensorflow_headers(name = "tensorflow_headers")

local_repositories = module_extension(implementation = _local_repositories_impl)
