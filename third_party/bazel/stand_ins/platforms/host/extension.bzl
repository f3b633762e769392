"""The host platform's constraints, as bazelbuild/platforms' host extension names them."""

_CPUS = {"aarch64": "aarch64", "amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64"}
_OSES = {"linux": "linux", "mac os x": "osx"}

def _host_platform_repo_impl(rctx):
    cpu = _CPUS.get(rctx.os.arch)
    os = _OSES.get(rctx.os.name.lower())
    if not (cpu and os):
        fail("This stand-in knows no host platform for %s on %s; add it to %s" % (
            rctx.os.name,
            rctx.os.arch,
            "third_party/bazel/platforms/host/extension.bzl",
        ))
    rctx.file("BUILD.bazel", 'exports_files(["constraints.bzl"])\n')
    rctx.file("constraints.bzl", "HOST_CONSTRAINTS = %r\n" % [
        "@platforms//cpu:" + cpu,
        "@platforms//os:" + os,
    ])

_host_platform_repo = repository_rule(implementation = _host_platform_repo_impl)

def _host_platform_impl(module_ctx):
    _host_platform_repo(name = "host_platform")

host_platform = module_extension(implementation = _host_platform_impl)
