"""py_library, py_binary and py_test whose imports the build checks (tools/import_boundaries.py).

A reproseg library's modules may import modules of its own package and of the packages its deps
name: `bazel build` fails, naming the file and line, on any other import of reproseg's, since
Bazel's own rules do not read imports. Load them in place of the native rules:

    load("//tools:import_boundaries.bzl", "py_binary", "py_library", "py_test")
"""

def _package(label):
    """The Bazel package of a label in this repository: "//seg/model" → "seg/model"."""
    if label.startswith(":"):
        return native.package_name()
    if not label.startswith("//"):
        fail("%s: a reproseg library's deps are labels of this repository (//…)" % label)
    return label[2:].split(":")[0]

def _checked(name, srcs, deps):
    """A genrule that checks srcs' imports against deps; returns its label."""
    check = name + "_imports"
    native.genrule(
        name = check,
        srcs = srcs + deps,
        outs = [check + ".txt"],
        cmd = ("$(execpath //tools:import_boundaries) --target=//%s:%s --checked=%s " +
               "--allowed=%s --out=$@ $(SRCS)") % (
            native.package_name(),
            name,
            ",".join([native.package_name() + "/" + s for s in srcs]),
            ",".join([_package(d) for d in deps]),
        ),
        tools = ["//tools:import_boundaries"],
    )
    return ":" + check

def _with_check(rule, name, srcs, deps, data, kwargs):
    """rule(name, srcs, deps, data, ...), with the check of srcs' imports in its data, so that
    every binary and test using it runs the check."""
    check = _checked(name, srcs, deps)
    rule(name = name, srcs = srcs, deps = deps, data = data + [check], **kwargs)

def py_library(name, srcs = [], deps = [], data = [], **kwargs):
    """native.py_library, its imports checked against its deps."""
    _with_check(native.py_library, name, srcs, deps, data, kwargs)

def py_binary(name, srcs = [], deps = [], data = [], **kwargs):
    """native.py_binary, its imports checked against its deps."""
    _with_check(native.py_binary, name, srcs, deps, data, kwargs)

def py_test(name, srcs = [], deps = [], data = [], **kwargs):
    """native.py_test, its imports checked against its deps."""
    _with_check(native.py_test, name, srcs, deps, data, kwargs)
