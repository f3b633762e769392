"""The Nix flake, checked offline with Debian's nix-bin (./dev installs it).

nixpkgs cannot be fetched here, so evaluation, `nix flake check` and `nix develop` run with
nixpkgs overridden by the strict stub in tests/nix/stub-nixpkgs. Each test works on a plain
copy of the flake's files (Bazel's runfiles are symlinks, which Nix would copy as links).
"""

import json
import os
import shutil
import subprocess

from absl.testing import absltest

from tools import nix_wheels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAKE_FILES = ("flake.nix", "flake.lock", "nix/python-wheels.nix", "nix/python-wheels-cuda.nix")
STUB = "tests/nix/stub-nixpkgs"
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

  def setUp(self):
    super().setUp()
    self.env = dict(os.environ, NIX_REMOTE="", HOME=self.create_tempdir().full_path)

  def copy_flake(self):
    """A plain folder holding the flake and the stub, to run Nix on or to break."""
    folder = self.create_tempdir().full_path
    for name in FLAKE_FILES:
      os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
      shutil.copyfile(os.path.join(ROOT, name), os.path.join(folder, name))
    shutil.copytree(os.path.join(ROOT, STUB), os.path.join(folder, STUB))
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
    for name in FLAKE_FILES[:1] + FLAKE_FILES[2:] + (STUB + "/flake.nix", STUB + "/default.nix"):
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

  def test_the_stub_is_strict(self):
    for right, wrong, message in (
        ("pkgs.bazel_7", "pkgs.bazel7", "attribute 'bazel7' missing"),
        ("pkgs.python311", "pkgs.python310", "attribute 'python310' missing"),
        ("sha256\n", "sha265\n", "without required argument 'sha256'"),
        ("pythonImportsCheck = [ ];", "pythonImportsCheck = [ ];\n          doCheck = false;",
         "unexpected argument 'doCheck'"),
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


if __name__ == "__main__":
  absltest.main()
