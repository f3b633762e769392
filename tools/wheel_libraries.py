"""Writes the tables of the shared libraries each locked wheel needs and provides:
nix/wheel-libraries.json from requirements.lock, nix/wheel-libraries-cuda.json from
requirements-cuda.lock. flake.nix reads them to give each wheel the other wheels it links
against, and tests/nix_test.py checks that every library resolves within the flake's inputs.

For every ELF file in a wheel the table records its path, its DT_SONAME and its DT_NEEDED
entries. The CPU table is read from the installed packages of the interpreter that runs this
(the virtualenv, or the Nix shell's Python); the CUDA wheels are large and not installed
anywhere here, so their table is read from wheel files downloaded once:

  python3 tools/wheel_libraries.py                          # rewrite the CPU table
  python3 tools/wheel_libraries.py --check                  # exit 1 if it is stale
  pip download --no-deps --only-binary=:all: --require-hashes -r requirements-cuda.lock -d W
  python3 tools/wheel_libraries.py --cuda_wheels=W          # rewrite the CUDA table
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import struct
import sys
import zipfile

# Run as a script (python3 tools/X.py) and imported as tools.X alike.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generated  # pylint: disable=g-import-not-at-top,wrong-import-position
import nix_wheels  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = generated.ROOT
CPU = ("requirements.lock", "nix/wheel-libraries.json")
CUDA = ("requirements-cuda.lock", "nix/wheel-libraries-cuda.json")

# ---------------------------------------------------------------------------------------
# ELF dynamic sections. Read with struct: two tables of a 64-bit little-endian file are all
# that is needed, against a new locked dependency in every environment.
_SHT_DYNAMIC, _DT_NEEDED, _DT_SONAME = 6, 1, 14


def is_elf(head):
  return head[:4] == b"\x7fELF"


def dynamic_entries(data):
  """(soname or None, [needed...]) of a 64-bit little-endian ELF file's bytes."""
  if data[4] != 2 or data[5] != 1:
    raise ValueError("not a 64-bit little-endian ELF file")
  shoff, = struct.unpack_from("<Q", data, 0x28)
  shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
  sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
              for i in range(shnum)]
  soname, needed = None, []
  for _, kind, _, _, offset, size, link, _, _, entsize in sections:
    if kind != _SHT_DYNAMIC:
      continue
    strings_offset = sections[link][4]
    string = lambda at: data[strings_offset + at:data.index(b"\0", strings_offset + at)].decode()
    for at in range(offset, offset + size, entsize):
      tag, value = struct.unpack_from("<qQ", data, at)
      if tag == _DT_NEEDED:
        needed.append(string(value))
      elif tag == _DT_SONAME:
        soname = string(value)
  return soname, needed


def file_entry(data):
  soname, needed = dynamic_entries(data)
  return {"soname": soname, "needed": needed}


# ---------------------------------------------------------------------------------------
# Where the files come from: a wheel file, or an installed distribution.

def from_wheel(path):
  files = {}
  with zipfile.ZipFile(path) as wheel:
    for member in wheel.infolist():
      with wheel.open(member) as f:
        if is_elf(f.read(4)):
          files[member.filename] = file_entry(wheel.read(member))
  return files


def from_installed(name):
  files = {}
  for relative in importlib.metadata.distribution(name).files or ():
    path = relative.locate()
    if not os.path.isfile(path) or relative.suffix in (".py", ".pyc"):
      continue
    with open(path, "rb") as f:
      if is_elf(f.read(4)):
        f.seek(0)
        files[str(relative)] = file_entry(f.read())
  return files


def table(lock_name, files_of):
  """{wheel name: {version, sha256, files: {path: {soname, needed}}}} for a lock's wheels."""
  with open(os.path.join(ROOT, lock_name)) as f:
    entries = nix_wheels.read_lock(f.read())
  return {e["name"]: {"version": e["version"], "sha256": e["sha256"],
                      "files": dict(sorted(files_of(e).items()))} for e in entries}


def render(rows):
  return json.dumps(rows, indent=1, sort_keys=True) + "\n"


def installed_files(entry):
  version = importlib.metadata.version(entry["name"])
  if version != entry["version"]:
    sys.exit("%s %s is installed, the lock has %s: run this with the lock's environment "
             "(./dev python3 tools/wheel_libraries.py)" % (entry["name"], version,
                                                           entry["version"]))
  return from_installed(entry["name"])


def wheel_files(folder):
  def files(entry):
    path = os.path.join(folder, entry["wheel"])
    if not os.path.exists(path):
      sys.exit("%s is not in %s: download the lock's wheels there first (see --help)"
               % (entry["wheel"], folder))
    with open(path, "rb") as f:
      if hashlib.file_digest(f, "sha256").hexdigest() != entry["sha256"]:
        sys.exit("%s does not have the sha256 that %s records" % (path, CUDA[0]))
    print("reading %s" % entry["wheel"], file=sys.stderr)
    return from_wheel(path)
  return files


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 2)[2])
  parser.add_argument("--check", action="store_true",
                      help="compare the CPU table with the installed packages instead of writing")
  parser.add_argument("--cuda_wheels", metavar="FOLDER",
                      help="write the CUDA table from the wheel files of requirements-cuda.lock "
                           "in FOLDER (sha256 checked)")
  args = parser.parse_args()
  lock, output = CUDA if args.cuda_wheels else CPU
  files_of = wheel_files(args.cuda_wheels) if args.cuda_wheels else installed_files
  text = render(table(lock, files_of))
  generated.write_or_check(output, text, args.check, "./dev python3 tools/wheel_libraries.py",
                           "%d ELF files" % text.count('"needed"'))


if __name__ == "__main__":
  main()
