"""The C++ headers and link flags of the TensorFlow that the Python interpreter imports, as
the repository @tensorflow_headers: what a custom op library compiles and links against.

They come from tf.sysconfig (get_include, get_compile_flags, get_link_flags) of the same
interpreter that python_interpreter.bzl registers ($BAZEL_PYTHON, else python3 on PATH), so
the op library is built for the TensorFlow of requirements.lock that loads it.

Targets: //:headers, a cc_library with TensorFlow's include folder and its preprocessor
defines (-D flags), and //:framework, the libtensorflow_framework library to link against.
"""

load(":python_interpreter.bzl", "interpreter_path")

_QUERY = """
import json, tensorflow as tf
print(json.dumps({"include": tf.sysconfig.get_include(), "lib": tf.sysconfig.get_lib(),
                  "compile": tf.sysconfig.get_compile_flags(),
                  "link": tf.sysconfig.get_link_flags()}))
"""

def _tensorflow_headers_impl(ctx):
    python = interpreter_path(ctx)
    result = ctx.execute([python, "-c", _QUERY], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.return_code != 0:
        fail("%s could not import tensorflow to find its C++ headers: %s" % (python, result.stderr))
    info = json.decode(result.stdout.strip().splitlines()[-1])
    ctx.symlink(info["include"], "include")
    defines, libraries = [], []
    for flag in info["compile"]:
        if flag.startswith("-D"):
            defines.append(flag[2:])
        elif not (flag.startswith("-I") or flag.startswith("--std=") or flag.startswith("-std=")):
            fail("tf.sysconfig.get_compile_flags() gave %r, which this rule does not place" % flag)
    for flag in info["link"]:
        if flag.startswith("-l:"):
            libraries.append(flag[3:])
        elif not flag.startswith("-L"):
            fail("tf.sysconfig.get_link_flags() gave %r, which this rule does not place" % flag)
    if len(libraries) != 1:
        fail("tf.sysconfig.get_link_flags() named %d libraries, not one: %s" % (len(libraries), info["link"]))
    # cc_import takes a plain .so name; the linker records the library's own soname (.so.2).
    linked = libraries[0].split(".so")[0] + ".so"
    ctx.symlink(info["lib"] + "/" + libraries[0], linked)
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("BUILD.bazel", """\
cc_library(
    name = "headers",
    hdrs = glob(["include/**"]),
    defines = {defines},
    includes = ["include"],
    visibility = ["//visibility:public"],
)

cc_import(
    name = "framework",
    shared_library = "{library}",
    visibility = ["//visibility:public"],
)
""".format(defines = repr(defines), library = linked))

tensorflow_headers = repository_rule(
    implementation = _tensorflow_headers_impl,
    environ = ["BAZEL_PYTHON", "PATH"],
    local = True,
)
