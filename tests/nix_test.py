"""The Nix flake, checked offline with Debian's nix-bin (./dev installs it).

nixpkgs cannot be fetched here, so evaluation, `nix flake check` and `nix develop` run with
nixpkgs overridden by the strict stub in tests/nix/stub-nixpkgs. Each test works on a plain
copy of the flake's files (Bazel's runfiles are symlinks, which Nix would copy as links).
"""

import importlib.metadata
import json
import os
import re
import runpy
import shutil
import subprocess
import sys

from absl.testing import absltest

from pipeline import code
from pipeline import commands
from pipeline import version
from tools import build_kernels
from tools import nix_wheels
from tools import wheel_libraries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAKE_FILES = ("flake.nix", "flake.lock", "nix/python-wheels.nix", "nix/python-wheels-cuda.nix",
               "nix/wheel-libraries.json", "nix/wheel-libraries-cuda.json",
               "tools/build_kernels.py", "requirements.lock")
# The packages' folders the flake's app is made from (its source filter keeps what they need);
# here, as Bazel's runfiles of the stage binaries hold them.
APP_FOLDERS = code.PACKAGES
STUB = "tests/nix/stub-nixpkgs"
# The packaged binaries: wrapper name (reproseg-NAME) -> the script it runs.
WRAPPERS = {"train": "seg/train_main.py", "calibrate": "seg/calibrate_main.py",
            "evaluate": "seg/evaluate_main.py", "export": "seg/export_main.py",
            "predict": "seg/predict_main.py", "release": "seg/release_main.py",
            "tune": "seg/tune_main.py", "download": "data_tools/download_main.py",
            "partition": "data_tools/partition_main.py", "store": "pipeline/store_main.py"}
STORE_PATH = r"/nix/store/[a-z0-9]{32}-"
NIX_OPTIONS = ["--extra-experimental-features", "nix-command flakes",
               "--option", "substituters", "", "--option", "sandbox", "false"]
# What public lock files record for this nixos-25.11 revision.
PINNED = {"rev": "e576e3c9cf9bad747afcddd9e34f51d18c855b4e",
          "narHash": "sha256-tlFqNG/uzz2++aAmn4v8J0vAkV3z7XngeIIB3rM3650=",
          "lastModified": 1770136044, "owner": "NixOS", "repo": "nixpkgs", "type": "github"}


def lock_entries(lock_names):
  entries = []
  for name in lock_names:
    with open(os.path.join(ROOT, name)) as f:
      entries += [{"name": e["name"], "version": e["version"], "sha256": e["sha256"]}
                  for e in nix_wheels.read_lock(f.read())]
  return entries


def differences(lock, flake):
  """What one list of {name, version, sha256} has that the other lacks, both ways."""
  as_set = lambda entries: {(e["name"], e["version"], e["sha256"]) for e in entries}
  return (sorted(as_set(lock) - as_set(flake)), sorted(as_set(flake) - as_set(lock)))


@absltest.skipIf(os.environ.get("REPROSEG_IN_NIX_BUILD"), "no Nix inside a Nix build")
class FlakeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not shutil.which("nix"):
      raise AssertionError("nix is not installed: ./dev installs Debian's nix-bin")
    cls.nix_version = subprocess.run(["nix", "--version"], capture_output=True, text=True,
                                     check=True).stdout.split()[-1]

  def setUp(self):
    super().setUp()
    # Python writes no bytecode into the store paths a test runs (this may run as root, whom
    # the store's read-only modes do not stop).
    self.env = dict(os.environ, NIX_REMOTE="", HOME=self.create_tempdir().full_path,
                    PYTHONDONTWRITEBYTECODE="1")

  def copy_flake(self):
    """A plain folder holding the flake and the stub, to run Nix on or to break."""
    folder = self.create_tempdir().full_path
    for name in FLAKE_FILES:
      os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
      shutil.copyfile(os.path.join(ROOT, name), os.path.join(folder, name))
    for name in APP_FOLDERS:
      shutil.copytree(os.path.join(ROOT, name), os.path.join(folder, name),
                      ignore=shutil.ignore_patterns("__pycache__"))
    stub = os.path.join(folder, STUB)
    shutil.copytree(os.path.join(ROOT, STUB), stub)
    # The stub's Python environment runs this interpreter, the lock's, so `nix run` can run a
    # wrapper (the real environment holds the same wheels).
    with open(os.path.join(stub, "host-python"), "w") as f:
      f.write(sys.executable)
    # The stub checks each wheel's libraries as autoPatchelfHook would, from the same tables.
    for _, table in (wheel_libraries.CPU, wheel_libraries.CUDA):
      shutil.copyfile(os.path.join(ROOT, table), os.path.join(stub, os.path.basename(table)))
    # Like nixpkgs 25.11 the stub refuses Nix < 2.18; Debian 12's is 2.8: lower the floor.
    with open(os.path.join(stub, "minimum-nix-version"), "w") as f:
      f.write(self.nix_version)
    return folder

  def nix(self, folder, *args, check=True):
    command = ["nix"] + NIX_OPTIONS + list(args)
    if "--override-input" in args:
      command = [a.replace("@STUB@", "path:" + os.path.join(folder, STUB)) for a in command]
    result = subprocess.run(command, cwd=folder, env=self.env, capture_output=True, text=True,
                            check=False)
    if check:
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    return result

  def stub_nix(self, folder, words, attribute="", extra=(), check=True):
    """`nix WORDS --override-input nixpkgs STUB path:FOLDER[#ATTRIBUTE] EXTRA...`"""
    return self.nix(folder, *words, "--override-input", "nixpkgs", "@STUB@",
                    "path:" + folder + ("#" + attribute if attribute else ""), *extra,
                    check=check)

  def test_nix_files_parse(self):
    nix_files = [name for name in FLAKE_FILES if name.endswith(".nix")]
    for name in nix_files + [STUB + "/flake.nix", STUB + "/default.nix"]:
      result = subprocess.run(["nix-instantiate", "--parse", os.path.join(ROOT, name)],
                              env=self.env, capture_output=True, text=True, check=False)
      self.assertEqual(result.returncode, 0, name + ": " + result.stderr)

  def test_lock_pins_a_real_nixos_25_11_revision(self):
    folder = self.copy_flake()
    metadata = json.loads(self.nix(folder, "flake", "metadata", "--json",
                                   "path:" + folder).stdout)
    node = metadata["locks"]["nodes"]["nixpkgs"]
    self.assertEqual(node["locked"], PINNED)
    self.assertEqual(node["original"]["ref"], "nixos-25.11")

  def test_flake_check_passes_against_the_stub(self):
    self.stub_nix(self.copy_flake(), ["flake", "check", "--no-build"])

  def test_develop_enters_the_shell_offline_and_runs_a_command(self):
    result = self.stub_nix(self.copy_flake(), ["develop"], extra=[
        "--command", "bash", "-c", 'echo "$IN_NIX_SHELL $REPROSEG_TOOLCHAIN $BAZEL_PYTHON"; '
        '"$BAZEL_PYTHON" -c "print(6 * 7)"'])
    shell, toolchain, python, answer = result.stdout.split()
    self.assertEqual((shell, toolchain, answer), ("impure", "nix", "42"))
    self.assertRegex(python, r"^/nix/store/[a-z0-9]{32}-python3-3\.11-env/bin/python3$")

  def test_the_shells_bazel_is_nixpkgs_bazel_7(self):
    result = self.stub_nix(self.copy_flake(), ["develop"], extra=[
        "--command", "bash", "-c", 'command -v bazel && bazel && echo "$USE_BAZEL_VERSION"'])
    path, said, version = result.stdout.strip().splitlines()[-3:]
    self.assertRegex(path, r"^/nix/store/[a-z0-9]{32}-bazel-7/bin/bazel$")
    self.assertEqual(said, "bazel 7 stub")
    # Its launcher is told to run it (the stub is 7.6.0), not the Bazel .bazelversion names.
    self.assertEqual(version, "7.6.0")

  def test_the_cuda_shell_finds_the_cuda_wheels_libraries_and_ptxas(self):
    result = self.stub_nix(self.copy_flake(), ["develop"], "cuda", extra=[
        "--command", "bash", "-c", 'echo "$LD_LIBRARY_PATH"; echo "$PATH"'])
    libraries, path = result.stdout.strip().splitlines()[-2:]
    site = r"/nix/store/[a-z0-9]{32}-python3-3\.11-env/lib/python3\.11/site-packages/nvidia/"
    with open(os.path.join(ROOT, wheel_libraries.CUDA[1])) as f:
      files = [path for row in json.load(f).values() for path in row["files"]]
    self.assertEqual(
        sorted(re.sub("^" + site, "nvidia/", folder) for folder in libraries.split(":")),
        sorted({os.path.dirname(path) for path in files if ".so" in path}))
    self.assertIn("/nvidia/cudnn/lib:", libraries)
    self.assertRegex(path.split(":")[0], "^" + site + "cuda_nvcc/bin$")
    self.assertIn("no libcuda.so.1 in /run/opengl-driver/lib", result.stderr)

  def flake_wheels(self, folder, shell):
    apply = "shell: (builtins.head shell.packages).wheels"
    return json.loads(self.stub_nix(folder, ["eval", "--json"],
                                    "devShells.x86_64-linux." + shell,
                                    extra=["--apply", apply]).stdout)

  def test_flake_installs_exactly_the_locked_wheels(self):
    folder = self.copy_flake()
    self.assertEqual(differences(lock_entries(["requirements.lock"]),
                                 self.flake_wheels(folder, "default")), ([], []))
    self.assertEqual(differences(lock_entries(["requirements.lock", "requirements-cuda.lock"]),
                                 self.flake_wheels(folder, "cuda")), ([], []))

  def test_a_wheel_changed_on_one_side_is_caught(self):
    folder = self.copy_flake()
    path = os.path.join(folder, "nix", "python-wheels.nix")
    with open(path) as f:
      lines = f.readlines()
    numpy = next(i for i, l in enumerate(lines) if 'name = "numpy"' in l)
    sha = lines[numpy].split('sha256 = "')[1][:64]
    lines[numpy] = lines[numpy].replace(sha, "0" * 64)          # re-hashed on one side
    del lines[next(i for i, l in enumerate(lines) if 'name = "six"' in l)]  # removed
    with open(path, "w") as f:
      f.writelines(lines)
    missing, extra = differences(lock_entries(["requirements.lock"]),
                                 self.flake_wheels(folder, "default"))
    self.assertEqual(sorted(name for name, _, _ in missing), ["numpy", "six"])
    self.assertEqual(extra, [("numpy", extra[0][1], "0" * 64)])

  def test_generated_wheel_lists_are_current(self):
    for lock, output in nix_wheels.PAIRS:
      with open(os.path.join(ROOT, lock)) as f:
        expected = nix_wheels.render(nix_wheels.read_lock(f.read()), lock)
      with open(os.path.join(ROOT, output)) as f:
        self.assertEqual(f.read(), expected, "%s is stale: python3 tools/nix_wheels.py" % output)

  def wheel_inputs(self, folder, shell):
    """{wheel: [names of its buildInputs]} of a shell's Python environment, as evaluated."""
    apply = ("shell: builtins.listToAttrs (map (p: { name = p.wheel.name; value = p.inputNames; })"
             " (builtins.head shell.packages).packages)")
    return json.loads(self.stub_nix(folder, ["eval", "--json"],
                                    "devShells.x86_64-linux." + shell,
                                    extra=["--apply", apply]).stdout)

  def test_wheels_that_link_across_wheels_get_those_wheels(self):
    inputs = self.wheel_inputs(self.copy_flake(), "cuda")
    system = ["gcc-lib", "zlib"]
    self.assertEqual(inputs["nvidia-cusolver-cu12"], system + [
        "python3.11-nvidia-cublas-cu12-12.5.3.2", "python3.11-nvidia-cusparse-cu12-12.5.1.3",
        "python3.11-nvidia-nvjitlink-cu12-12.5.82"])
    self.assertEqual(inputs["nvidia-cusparse-cu12"], system + [
        "python3.11-nvidia-nvjitlink-cu12-12.5.82"])
    self.assertEqual(inputs["tensorflow"], system)

  def test_the_flake_as_it_was_fails_on_the_cuda_wheels(self):
    """Only gcc's libraries and zlib as buildInputs: what nixpkgs' autoPatchelfHook refused."""
    folder = self.copy_flake()
    path = os.path.join(folder, "flake.nix")
    with open(path) as f:
      text = f.read()
    cross_wheel = "\n          ++ map (name: packages.${name}) (linkedWheels wheel.name);"
    self.assertIn(cross_wheel, text)
    with open(path, "w") as f:
      f.write(text.replace(cross_wheel, ";"))
    self.stub_nix(folder, ["eval", "--raw"], "devShells.x86_64-linux.default.drvPath")
    result = self.stub_nix(folder, ["eval", "--raw"], "devShells.x86_64-linux.cuda.drvPath",
                           check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr, r"auto-patchelf could not satisfy dependency "
                     r"libnvJitLink\.so\.12 wanted by nvidia/cus(olver|parse)/lib/")

  def test_a_library_no_input_holds_fails(self):
    folder = self.copy_flake()
    path = os.path.join(folder, STUB, "wheel-libraries.json")
    with open(path) as f:
      table = json.load(f)
    files = table["numpy"]["files"]
    files[sorted(files)[0]]["needed"].append("libopenblas.so.0")
    with open(path, "w") as f:
      json.dump(table, f)
    result = self.stub_nix(folder, ["flake", "check", "--no-build"], check=False)
    self.assertIn("auto-patchelf could not satisfy dependency libopenblas.so.0 wanted by "
                  + sorted(files)[0] + " (wheel numpy", result.stderr)

  def test_nix_older_than_2_18_is_refused(self):
    if [int(part) for part in self.nix_version.split(".")[:2]] >= [2, 18]:
      self.skipTest("Nix %s is recent enough" % self.nix_version)
    folder = self.copy_flake()
    os.remove(os.path.join(folder, STUB, "minimum-nix-version"))
    result = self.stub_nix(folder, ["flake", "check", "--no-build"], check=False)
    self.assertIn("This version of Nixpkgs requires Nix >= 2.18, please upgrade (this is Nix "
                  + self.nix_version + ")", result.stderr)

  def eval_json(self, folder, attribute, apply=None):
    return json.loads(self.stub_nix(folder, ["eval", "--json"], attribute,
                                    extra=["--apply", apply] if apply else []).stdout)

  def eval_raw(self, folder, attribute):
    return self.stub_nix(folder, ["eval", "--raw"], attribute).stdout

  def test_apps_run_the_wrappers_of_the_default_package(self):
    folder = self.copy_flake()
    package = self.eval_raw(folder, "packages.x86_64-linux.default.outPath")
    self.assertRegex(package, "^" + STORE_PATH + re.escape("reproseg-" + version.VERSION) + "$")
    apps = self.eval_json(folder, "apps.x86_64-linux")
    self.assertEqual(set(apps), set(WRAPPERS) | {"default"})
    for name in WRAPPERS:
      self.assertEqual(apps[name], {"type": "app",
                                    "program": package + "/bin/reproseg-" + name}, name)
    self.assertEqual(apps["default"], apps["train"])
    self.assertEqual(self.eval_raw(folder, "apps.x86_64-linux.train.program"),
                     package + "/bin/reproseg-train")

  def test_the_wrappers_run_each_script_with_the_shells_python(self):
    folder = self.copy_flake()
    result = os.path.join(folder, "result")
    self.stub_nix(folder, ["build", "--out-link", result], "packages.x86_64-linux.default")
    python = self.eval_raw(folder, "devShells.x86_64-linux.default.BAZEL_PYTHON")
    app = self.eval_raw(folder, "packages.x86_64-linux.default.app.outPath")
    self.assertRegex(app, "^" + STORE_PATH + re.escape("reproseg-app-" + version.VERSION) + "$")
    self.assertEqual(sorted(os.listdir(os.path.join(result, "bin"))),
                     sorted("reproseg-" + name for name in WRAPPERS))
    # pipeline/commands.py names the same wrappers in the lines that suggest a command, each
    # for the Bazel target whose main is the wrapper's script.
    self.assertEqual({"reproseg-" + name for name in WRAPPERS},
                     set(commands.PACKAGED_NAMES.values()))
    for target, wrapper in commands.PACKAGED_NAMES.items():
      package, name = target[2:].split(":")
      self.assertEqual(WRAPPERS[wrapper[len("reproseg-"):]], "%s/%s_main.py" % (package, name))
    for name, script in WRAPPERS.items():
      with open(os.path.join(result, "bin", "reproseg-" + name)) as f:
        self.assertEqual(f.read().splitlines()[1:], [
            "export PYTHONPATH=%s REPROSEG_PACKAGED=1" % app,
            'exec %s -P %s/%s "$@"' % (python, app, script)], name)

  def test_nix_run_runs_the_packaged_code(self):
    """`nix run .#store -- --version`: the wrapper, on the stub's copy of the filtered source,
    prints the source digest and count of this tree (the kernels are not built by the stub)."""
    result = self.stub_nix(self.copy_flake(), ["run"], "store", extra=["--", "--version"])
    self.assertEqual(result.stdout, "reproseg %s, code %s (%d source files)\n" % (
        version.VERSION, *version.code_digest()))

  def code_records(self, tree):
    """{every .py of tree: digest of its file_record}, the lock's digest and code_digest(),
    computed by a Python whose reproseg is tree's."""
    script = ("import json, os\n"
              "from pipeline import code, digest, runtime, version\n"
              "paths = [os.path.join(f, n) for p in code.PACKAGES\n"
              "         for f, _, names in os.walk(os.path.join(code.ROOT, p))\n"
              "         for n in names if n.endswith('.py')]\n"
              "print(json.dumps({'code': {os.path.relpath(p, code.ROOT): digest.record_digest("
              "code.file_record(p)) for p in paths}, 'lock': runtime.lock_digest(),"
              " 'version': version.code_digest()}))\n")
    result = subprocess.run([sys.executable, "-P", "-c", script], cwd="/",
                            env=dict(self.env, PYTHONPATH=tree), capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)

  def test_the_source_holds_what_the_stage_keys_read(self):
    folder = self.copy_flake()
    decoys = ["seg/__pycache__/launch.cpython-311.pyc", "seg/BUILD.bazel", "seg/notes.txt",
              "kernels/fixed_order_ops.so", "tests/store_test.py", "README.md"]
    for decoy in decoys:
      os.makedirs(os.path.dirname(os.path.join(folder, decoy)), exist_ok=True)
      with open(os.path.join(folder, decoy), "w") as f:
        f.write("not the app's\n")
    source = self.eval_raw(folder, "packages.x86_64-linux.default.source")
    self.assertRegex(source, "^" + STORE_PATH + "reproseg-source$")
    held = sorted(os.path.relpath(os.path.join(f, n), source)
                  for f, _, names in os.walk(source) for n in names)
    wanted = ["requirements.lock"]
    for package in APP_FOLDERS:
      for f, _, names in os.walk(os.path.join(folder, package)):
        if os.path.basename(f) == "__pycache__":
          continue
        wanted += [os.path.relpath(os.path.join(f, n), folder) for n in names
                   if n.endswith(".py") or (package == "seg" and n.endswith(".json"))]
        wanted += [os.path.relpath(p, folder) for p in code.native_sources(f)]
    self.assertEqual(held, sorted(wanted))
    self.assertIn("kernels/flags.bzl", held)
    self.assertIn("kernels/BUILD.bazel", held)
    self.assertIn("seg/configs/search_spaces/synthetic.json", held)
    # Every module's code record (what a stage key holds of the code), the lock's digest
    # (in every key's runtime record) and --version's digest: the same as this tree's.
    here, packaged = self.code_records(ROOT), self.code_records(source)
    self.assertEqual(packaged, here)
    self.assertIsNotNone(packaged["lock"])
    self.assertIn("seg/training/train.py", packaged["code"])

  def test_the_image_is_tagged_with_the_version_and_runs_the_wrappers(self):
    folder = self.copy_flake()
    image = "packages.x86_64-linux.image"
    package = self.eval_raw(folder, "packages.x86_64-linux.default.outPath")
    self.assertEqual(self.eval_raw(folder, image + ".imageName"), "reproseg")
    self.assertEqual(self.eval_raw(folder, image + ".imageTag"), version.VERSION)
    arguments = self.eval_json(folder, image + ".arguments")
    self.assertEqual(arguments["tag"], version.VERSION)
    contents = arguments["contents"]
    self.assertEqual(contents[0], package)  # its bin/ holds the wrappers: the image's /bin
    self.assertEqual([re.sub("^" + STORE_PATH, "", path) for path in contents[1:]],
                     ["bash", "coreutils", "nss-cacert"])
    env = dict(entry.split("=", 1) for entry in arguments["config"]["Env"])
    self.assertEqual(env, {"PATH": "/bin", "REPROSEG_STORE": "/store", "HOME": "/tmp",
                           "SSL_CERT_FILE": contents[3] + "/etc/ssl/certs/ca-bundle.crt"})
    self.assertEqual(arguments["config"]["Cmd"], ["reproseg-train", "--help"])
    self.assertEqual(arguments["extraCommands"], "mkdir -m 1777 tmp store")

  def test_the_tag_is_read_from_pipeline_version_py(self):
    folder = self.copy_flake()
    path = os.path.join(folder, "pipeline", "version.py")
    with open(path) as f:
      text = f.read()
    line = 'VERSION = "%s"' % version.VERSION
    self.assertIn("\n" + line + "\n", text)
    for new, expected in (("2.0.1", "2.0.1"),
                          ("2.0.1+local", "VERSION 2.0.1+local is not a valid image tag")):
      with open(path, "w") as f:
        f.write(text.replace(line, 'VERSION = "%s"' % new))
      result = self.stub_nix(folder, ["eval", "--raw"], "packages.x86_64-linux.image.imageTag",
                             check=False)
      self.assertIn(expected, result.stdout if result.returncode == 0 else result.stderr, new)
    with open(path, "w") as f:
      f.write(text.replace(line, "VERSION = '2.0.1'"))
    result = self.stub_nix(folder, ["flake", "check", "--no-build"], check=False)
    self.assertIn('expected one line VERSION = "...", found 0', result.stderr)

  def test_the_stub_is_strict(self):
    for right, wrong, message in (
        ("pkgs.bazel_7", "pkgs.bazel7", "attribute 'bazel7' missing"),
        ("pkgs.python311", "pkgs.python310", "attribute 'python310' missing"),
        ("sha256\n", "sha265\n", "without required argument 'sha256'"),
        ("pythonImportsCheck = [ ];", "pythonImportsCheck = [ ];\n          doCheck = false;",
         "unexpected argument 'doCheck'"),
        ("dockerTools.buildLayeredImage", "dockerTools.buildLayredImage",
         "attribute 'buildLayredImage' missing"),
        ("extraCommands = ", "extraCommand = ", "without required argument 'extraCommands'"),
        ("extraCommands = ", 'extraCommnds = "";\n        extraCommands = ',
         "unexpected argument 'extraCommnds'"),
        ("pkgs.runCommandCC", "pkgs.runCommandCc", "attribute 'runCommandCc' missing"),
        ("pkgs.cacert", "pkgs.cacerts", "attribute 'cacerts' missing"),
        ("paths = builtins.attrValues", "path = builtins.attrValues",
         "without required argument 'paths'"),
    ):
      folder = self.copy_flake()
      path = os.path.join(folder, "flake.nix")
      with open(path) as f:
        text = f.read()
      self.assertIn(right, text)
      with open(path, "w") as f:
        f.write(text.replace(right, wrong, 1))
      result = self.stub_nix(folder, ["flake", "check", "--no-build"], check=False)
      self.assertNotEqual(result.returncode, 0, wrong)
      self.assertIn(message, result.stderr, wrong)


class WheelLibrariesTest(absltest.TestCase):
  """The tables of each wheel's shared libraries (tools/wheel_libraries.py)."""

  def test_the_cpu_table_is_what_the_installed_wheels_hold(self):
    lock, table = wheel_libraries.CPU
    with open(os.path.join(ROOT, table)) as f:
      self.assertEqual(f.read(), wheel_libraries.render(wheel_libraries.table(
          lock, wheel_libraries.installed_files)),
                       "%s is stale: ./dev python3 tools/wheel_libraries.py" % table)

  def test_the_cuda_table_is_of_the_cuda_lock(self):
    lock, table = wheel_libraries.CUDA
    with open(os.path.join(ROOT, table)) as f:
      rows = json.load(f)
    self.assertEqual(differences(lock_entries([lock]), [
        {"name": name, "version": row["version"], "sha256": row["sha256"]}
        for name, row in rows.items()]), ([], []),
                     "%s is stale: see python3 tools/wheel_libraries.py --help" % table)
    self.assertIn("libcublasLt.so.12", rows["nvidia-cusolver-cu12"]["files"][
        "nvidia/cusolver/lib/libcusolver.so.11"]["needed"])

  def test_elf_dynamic_entries(self):
    path = os.path.join(os.path.dirname(tensorflow_file()), "libtensorflow_framework.so.2")
    with open(path, "rb") as f:
      soname, needed = wheel_libraries.dynamic_entries(f.read())
    self.assertEqual(soname, "libtensorflow_framework.so.2")
    self.assertIn("libc.so.6", needed)
    with self.assertRaisesRegex(ValueError, "64-bit little-endian"):
      wheel_libraries.dynamic_entries(b"\x7fELF\x01\x01" + bytes(58))


class BuildKernelsTest(absltest.TestCase):
  """tools/build_kernels.py, which builds the kernels of the flake's app: the translation units
  and flags of kernels/BUILD.bazel and kernels/flags.bzl, with TensorFlow's flags."""

  def test_the_units_get_the_flags_of_flags_bzl(self):
    flags = runpy.run_path(os.path.join(ROOT, "kernels", "flags.bzl"))  # valid Python too
    self.assertEqual(build_kernels.units(ROOT), [
        ("kernels/kernels_%s.cc" % isa, flags["COPTS"] + extra)
        for isa, extra in flags["ISA_COPTS"].items()] + [("kernels/ops.cc", flags["COPTS"])])
    self.assertEqual(sorted(source for source, _ in build_kernels.units(ROOT)),
                     sorted("kernels/" + n for n in os.listdir(os.path.join(ROOT, "kernels"))
                            if n.endswith(".cc")))

  def test_the_commands(self):
    tf_flags = (["-I/tf/include", "-D_GLIBCXX_USE_CXX11_ABI=1", "--std=c++17"],
                ["-L/tf", "-l:libtensorflow_framework.so.2"], "/tf")
    compiles, link = build_kernels.commands(ROOT, "/out/ops.so", "/obj", "c++", tf_flags)
    flags = dict(build_kernels.units(ROOT))
    self.assertEqual(compiles[1], [
        "c++", "-fPIC", "-isystem/tf/include", "-D_GLIBCXX_USE_CXX11_ABI=1", "--std=c++17",
        "-iquote", ROOT] + flags["kernels/kernels_avx2.cc"] + [
            "-c", os.path.join(ROOT, "kernels/kernels_avx2.cc"), "-o", "/obj/kernels_avx2.o"])
    self.assertIn("-mavx2", compiles[1])
    self.assertEqual(link, ["c++", "-shared", "-o", "/out/ops.so"] + [
        "/obj/%s.o" % os.path.basename(source)[:-3] for source in flags] + [
            "-L/tf", "-l:libtensorflow_framework.so.2", "-Wl,-rpath,/tf"])

  def test_flags_bzl_is_read_as_data(self):
    tree = self.create_tempdir().full_path
    shutil.copytree(os.path.join(ROOT, "kernels"), os.path.join(tree, "kernels"))
    path = os.path.join(tree, "kernels", "flags.bzl")
    with open(path) as f:
      text = f.read()
    for added, message in (('load(":more.bzl", "MORE")\n', "only assignments of literals"),
                           ("EXTRA = COPTS + []\n", "EXTRA is not a literal"),
                           ('print("hi")\n', "only assignments of literals")):
      with open(path, "w") as f:
        f.write(text + added)
      with self.assertRaisesRegex(ValueError, message):
        build_kernels.units(tree)
    with open(path, "w") as f:
      f.write(text)
    with open(os.path.join(tree, "kernels", "kernels_neon.cc"), "w") as f:
      f.write("")
    with self.assertRaisesRegex(ValueError, "kernels_neon.cc"):
      build_kernels.units(tree)


def tensorflow_file():
  """tensorflow/__init__.py of the installed wheel, found without importing TensorFlow."""
  return str(next(f for f in importlib.metadata.distribution("tensorflow").files
                  if str(f) == "tensorflow/__init__.py").locate())


@absltest.skipIf(os.environ.get("REPROSEG_IN_NIX_BUILD"), "no /usr/bin/env inside a Nix build")
class DevTest(absltest.TestCase):
  """./dev takes the Nix path only with a Nix that the flake's nixpkgs accepts."""

  def dev_with_nix(self, version):
    folder = self.create_tempdir().full_path
    with open(os.path.join(folder, "nix"), "w") as f:
      f.write('#!/bin/sh\n[ "$1" = --version ] && { echo "nix (Nix) %s"; exit 0; }\n'
              'echo "nix $*"\n' % version)
    os.chmod(os.path.join(folder, "nix"), 0o755)
    env = dict(os.environ, PATH=folder + ":" + os.environ["PATH"], REPROSEG_TOOLCHAIN="nix")
    return subprocess.run([os.path.join(ROOT, "dev"), "echo", "hi"], env=env,
                          capture_output=True, text=True, check=False)

  def test_a_recent_nix_runs_the_command_in_the_shell(self):
    result = self.dev_with_nix("2.24.9")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout, "nix --extra-experimental-features nix-command flakes "
                     "develop %s --command echo hi\n" % ROOT)

  def test_an_old_nix_is_refused_with_the_fix(self):
    for nix_version in ("2.8.0", "2.17.1"):
      result = self.dev_with_nix(nix_version)
      self.assertEqual(result.returncode, 1)
      self.assertEqual(result.stderr, "dev: error: REPROSEG_TOOLCHAIN=nix: Nix %s is older than "
                       "2.18, which the flake's nixpkgs needs: upgrade Nix, or use "
                       "REPROSEG_TOOLCHAIN=venv\n" % nix_version)


if __name__ == "__main__":
  absltest.main()
