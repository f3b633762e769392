"""Readable names for stored outputs and runs.

Releases: releases/<name>/<version>/, the layout TensorFlow Serving and KServe load (a stable
base path whose numeric subfolders are versions; the highest is served). Stored outputs are
content-addressed and never change; a name is what moves. Publishing an output under a name
gives it the next version (1, 2, ...), or the version it already has there: publishing is
idempotent, and versions are never reused. A version folder holds hard links to the output's
files (no bytes copied; copies where the file system has no hard links; read-only, as the
output is; whole when only the name's folder is mounted, where a symlink out of it would
dangle). releases/<name>/versions.json maps each version to its output digest; the servers
skip entries whose names are not numbers.

Runs: run_names.json maps a name to a stage's key (a run: `store runs` lists them), as a git
branch names a commit: naming another run with it moves it there.
"""

import json
import os
import re
import shutil

from pipeline import errors
from pipeline import files
from pipeline import store as storelib

RELEASES = "releases"
_VERSIONS = "versions.json"
_RUN_NAMES = "run_names.json"
# A DNS-1123 label: what Kubernetes (and so KServe) takes as an object's name.
MAX_LENGTH = 63
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,%d}[a-z0-9])?$" % (MAX_LENGTH - 2))


def check_name(name, kind="release"):
  """Raises errors.Error unless name is a DNS-1123 label (KServe's InferenceService names);
  kind: what the name is for, as the error says it."""
  if not _NAME.match(name or ""):
    raise errors.Error("%r is not a %s name: use 1-%d lower-case letters, digits and '-', "
                       "starting and ending with a letter or digit (a Kubernetes name)"
                       % (name, kind, MAX_LENGTH))


def check_run_name(name):
  """Raises errors.Error unless name is a Kubernetes name (check_name) that cannot be read as a
  digest prefix, which the store's commands also take."""
  check_name(name, "run")
  if re.match(r"^[0-9a-f]+$", name):
    raise errors.Error("%r could be read as a key or digest prefix: give a run a name with a "
                       "letter from g to z or a '-' in it" % name)


def run_names(store):
  """{run name: the stage key it names}; empty if no run has a name."""
  try:
    with open(os.path.join(store.root, _RUN_NAMES)) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


def rename_runs(store, given, dropped=None):
  """Gives runs names, given: {name: stage key}, and removes the other names that match the
  regular expression dropped; returns {name: the key it was on before, or None}. Raises
  errors.Error for a bad name."""
  for name in given:
    check_run_name(name)
  store.must_write("naming a run (%s)" % ", ".join(sorted(given)))
  with store.lock("run-names"):
    named = run_names(store)
    before = {name: named.get(name) for name in given}
    named = {name: key for name, key in named.items()
             if not (dropped and re.fullmatch(dropped, name))}
    named.update(given)
    files.write_json(os.path.join(store.root, _RUN_NAMES), dict(sorted(named.items())))
  return before


def name_run(store, name, key):
  """Gives a run (its stage key) a name; returns the key the name was on before, or None.
  Raises errors.Error for a bad name."""
  return rename_runs(store, {name: key})[name]


def names_by_key(store):
  """{stage key: [its run names, sorted]}."""
  found = {}
  for name, key in sorted(run_names(store).items()):
    found.setdefault(key, []).append(name)
  return found


def folder(store, name):
  """releases/<name>: the stable base path a model server is given."""
  return os.path.join(store.root, RELEASES, name)


def versions(store, name):
  """{version (int): output digest} published under a name; empty if none."""
  try:
    with open(os.path.join(folder(store, name), _VERSIONS)) as f:
      return {int(v): digest for v, digest in json.load(f).items()}
  except FileNotFoundError:
    return {}


def _link_or_copy(source, target):
  """A hard link; a copy where the file system has none."""
  try:
    os.link(source, target)
  except OSError:
    shutil.copy2(source, target)


def _staging(base, version):
  return os.path.join(base, ".staging-%d" % version)


def _finish_interrupted(base, published):
  """Renames the staged copy of a listed version whose folder is missing: what a publish that
  stopped between listing the version and renaming its copy left."""
  for version in published:
    final = os.path.join(base, str(version))
    if not os.path.exists(final) and os.path.isdir(_staging(base, version)):
      os.rename(_staging(base, version), final)


def publish(store, name, digest):
  """Publishes a stored output as the next version of releases/<name> (or finds the version
  it already is); returns (version, its folder). Raises errors.Error for a bad name.

  The copy is made in a staging folder, the version listed, then the copy renamed: a publish
  cut short before the listing leaves no version (its copy is made again), and one cut short
  after it is finished by the next publish under the name."""
  check_name(name)
  base = folder(store, name)
  with store.lock("%s-%s" % (RELEASES, name)):
    published = versions(store, name)
    _finish_interrupted(base, published)
    version = next((v for v, d in published.items() if d == digest), None)
    if version is None:
      version = max(published, default=0) + 1
      os.makedirs(base, exist_ok=True)
      staged = _staging(base, version)
      storelib.remove_tree(staged)  # a copy cut short: its version was never listed
      shutil.copytree(store.object_path(digest), staged, copy_function=_link_or_copy)
      published[version] = digest
      files.write_json(os.path.join(base, _VERSIONS),
                       {str(v): d for v, d in sorted(published.items())})
      os.rename(staged, os.path.join(base, str(version)))
  return version, os.path.join(base, str(version))


def listing(store):
  """[(ref "releases/<name>/<version>", output digest)], by name, then version."""
  root = os.path.join(store.root, RELEASES)
  names = sorted(os.listdir(root)) if os.path.isdir(root) else []
  return [("%s/%s/%d" % (RELEASES, name, version), digest) for name in names
          for version, digest in sorted(versions(store, name).items())]


def resolve(store, ref):
  """The output digest of "releases/<name>" (its newest version) or "releases/<name>/<n>";
  errors.Error naming what exists if there is none."""
  parts = ref.strip("/").split("/")
  if parts[0] != RELEASES or len(parts) not in (2, 3):
    raise errors.Error("%r is not a name: give releases/<name> or releases/<name>/<version> "
                       "(see `store ls`)" % ref)
  check_name(parts[1])
  published = versions(store, parts[1])
  if not published:
    raise errors.Error("no release is named %s in %s (see `store ls`)" % (parts[1], store.root))
  if len(parts) == 2:
    return published[max(published)]
  if not parts[2].isdigit() or int(parts[2]) not in published:
    raise errors.Error("%s has versions %s, not %s" % (
        parts[1], ", ".join(map(str, sorted(published))), parts[2]))
  return published[int(parts[2])]
