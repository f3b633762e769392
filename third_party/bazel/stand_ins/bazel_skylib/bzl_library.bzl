"""Stand-in for @bazel_skylib//:bzl_library.bzl, which Bazel 7's own rules_java loads.

A bzl_library only groups .bzl files for documentation tools: a filegroup does as much here.
"""

def bzl_library(name, srcs = [], deps = [], **kwargs):
    native.filegroup(name = name, srcs = srcs + deps, **kwargs)
