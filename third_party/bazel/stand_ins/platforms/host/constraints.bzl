"""The host platform's constraint values, as @platforms//host:constraints.bzl exports them."""

load("@host_platform//:constraints.bzl", _host_constraints = "HOST_CONSTRAINTS")

HOST_CONSTRAINTS = _host_constraints
