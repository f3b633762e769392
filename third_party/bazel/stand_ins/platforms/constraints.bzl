"""Stand-in for the constraint names of bazelbuild/platforms 0.0.10, which Bazel's own tools
and the host platform name (@platforms//os:linux, @platforms//cpu:x86_64, ...)."""

OS = ["android", "chromiumos", "emscripten", "freebsd", "fuchsia", "haiku", "ios", "linux",
      "netbsd", "nixos", "none", "openbsd", "osx", "qnx", "tvos", "visionos", "vxworks", "wasi",
      "watchos", "windows"]

CPU = ["aarch32", "aarch64", "all", "arm64_32", "arm64e", "armv6-m", "armv7", "armv7-m",
       "armv7e-m", "armv7e-mf", "armv7k", "armv8-m", "cortex-r52", "cortex-r82", "i386",
       "loongarch64", "mips64", "ppc", "ppc32", "ppc64le", "riscv32", "riscv64", "s390x",
       "wasm32", "wasm64", "x86_32", "x86_64"]

# The names platforms 0.0.10 keeps as aliases of others.
OS_ALIASES = {"macos": "osx"}
CPU_ALIASES = {"arm": "aarch32", "arm64": "aarch64"}

def constraints(setting, values, aliases):
    """One constraint_setting named `setting`, a constraint_value per name, and the aliases."""
    native.constraint_setting(name = setting)
    for value in values:
        native.constraint_value(name = value, constraint_setting = ":" + setting)
    for alias, actual in aliases.items():
        native.alias(name = alias, actual = ":" + actual)
