"""The content-addressed store: every stage output lives here under its content digest.

Layout under the store root:

  objects/<digest>/           an output tree, read-only, named by its tree digest
  objects/<digest>.sha256     its listing in `sha256sum` format (see digest.py)
  keys/<key>.json             a stage's manifest: key record, output digest, provenance
  blobs/<sha256>              single files fetched from outside (dataset archives)
  runs/<key>/                 side files of a stage run that are not results: checkpoints to
                              resume from, TensorBoard logs (stage.LOGS_FOLDER; they carry
                              wall-clock times, and `store gc` keeps them)
  tmp/                        staging; never read by anyone else

Writers stage into tmp/ and publish with one rename, so a reader sees a whole tree or none.
"""

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import tempfile

from absl import logging

from pipeline import commands
from pipeline import digest as digestlib
from pipeline import errors
from pipeline import file_systems
from pipeline import files
from pipeline import user_input

STORE_ENV = "REPROSEG_STORE"
_LOCK_SUFFIX = ".lock"
_GC_LOCK = "store.lock"
_FOLDERS = ("objects", "keys", "blobs", "runs", "tmp", "locks")


def default_root():
  """$REPROSEG_STORE, else $XDG_CACHE_HOME/reproseg/store, else ~/.cache/reproseg/store.

  The same for `bazel run` (which keeps the caller's environment) and for a shell. A leading
  ~ in $REPROSEG_STORE is expanded (user_input.expand_path).
  """
  if os.environ.get(STORE_ENV):
    return user_input.expand_path(os.environ[STORE_ENV], "$" + STORE_ENV)
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "reproseg", "store")


class StoreError(errors.Error):
  pass


def _make_read_only(root):
  for dirpath, dirnames, filenames in os.walk(root):
    for name in filenames:
      os.chmod(os.path.join(dirpath, name), 0o444)
    os.chmod(dirpath, 0o555)


def _make_writable(root):
  for dirpath, dirnames, _ in os.walk(root):
    os.chmod(dirpath, 0o755)


def remove_tree(path):
  """Removes a tree, read-only parts included."""
  if os.path.isdir(path):
    _make_writable(path)
    shutil.rmtree(path)


def _fsync_tree(root):
  """Flushes every file and folder of a tree, so a rename after it publishes whole bytes."""
  for dirpath, _, filenames in os.walk(root):
    for name in filenames:
      files.fsync_path(os.path.join(dirpath, name))
    files.fsync_path(dirpath)


class Store:
  """A content-addressed store rooted at a folder (created on first use).

  A store this process cannot write (a read-only mount, a volume mounted readOnly, folders
  without write permission) is opened read-only: its outputs are found and read, under a
  shared lock on the store where its lock file can be read (gc by a user who can write it
  waits), and no key's lock; writing raises errors.NotWritableError (must_write).
  """

  def __init__(self, root=None, verify_on_hit=False, verify_inputs=True, planning=False):
    """verify_on_hit: re-hash a stored output whenever a stage takes it from the store.
    verify_inputs: re-hash the stored outputs a stage reads before it builds from them.
    planning: opened for a dry run (pipeline.planning): nothing is made or removed, a missing
    store is an empty one, and stages are looked up, never built (pipeline.stage.run).
    Raises errors.NotWritableError if root is missing and cannot be made."""
    self.root = os.path.abspath(root or default_root())
    self.verify_on_hit = verify_on_hit
    self.verify_inputs = verify_inputs
    self.planning = planning
    self.writable = not planning and self._make_folders()
    if self.writable:
      for path in self.remove_stale_staging():
        logging.info("store: removed %s, left by a process that died", path)

  def _make_folders(self):
    """Makes the store's folders where missing; whether this process can write them all."""
    try:
      for sub in _FOLDERS:
        os.makedirs(os.path.join(self.root, sub), exist_ok=True)
    except OSError as e:
      if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not os.path.isdir(
          os.path.join(self.root, "keys")):
        raise errors.NotWritableError(
            "cannot make the store %s (%s): give --store (or $%s) a folder you can write"
            % (self.root, e.strerror, STORE_ENV)) from None
    return all(os.access(os.path.join(self.root, sub), os.W_OK) for sub in _FOLDERS)

  def must_write(self, what):
    """Raises errors.NotWritableError naming the store and what (a phrase: "the train stage
    is not stored, and building it") unless this process can write the store."""
    if not self.writable:
      raise errors.NotWritableError(
          "%s must write to the store %s, which is read-only here (%s): give a writable store "
          "(--store or $%s), or run it where this one is mounted read-write"
          % (what, self.root, file_systems.describe(self.root), STORE_ENV))

  # --- Paths -------------------------------------------------------------------------------
  def object_path(self, digest):
    return os.path.join(self.root, "objects", digest)

  def blob_path(self, sha256):
    return os.path.join(self.root, "blobs", sha256)

  def manifest_path(self, key):
    return os.path.join(self.root, "keys", key + ".json")

  def run_dir(self, key):
    """Where a stage run may keep side files (not content-addressed); made on first use."""
    return os.path.join(self.root, "runs", key)

  # --- Staging and publishing -----------------------------------------------------------------
  @contextlib.contextmanager
  def staging(self, prefix="stage-"):
    """A fresh folder under tmp/ to build an output in; removed when the block ends.

    Its process holds a lock on <folder>.lock meanwhile, so that remove_stale_staging() can
    tell the folders of live processes from those that a killed process left behind.
    """
    fd, lock_path = tempfile.mkstemp(dir=os.path.join(self.root, "tmp"), prefix=prefix,
                                     suffix=_LOCK_SUFFIX)
    path = lock_path[:-len(_LOCK_SUFFIX)]
    with os.fdopen(fd, "w") as lock:
      try:  # from the lock file's creation on: a stop signal may come at any bytecode
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.mkdir(path)
        yield path
      finally:
        remove_tree(path)
        with contextlib.suppress(FileNotFoundError):  # a cleaner that raced our flock
          os.unlink(lock_path)

  def remove_stale_staging(self):
    """Removes the staging folders of dead processes; returns their paths."""
    tmp = os.path.join(self.root, "tmp")
    removed = []
    for name in sorted(os.listdir(tmp)):
      lock_path = os.path.join(tmp, name)
      if not name.endswith(_LOCK_SUFFIX):
        continue
      with contextlib.suppress(FileNotFoundError), open(lock_path) as lock:
        try:
          fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
          continue  # a live process holds it
        path = lock_path[:-len(_LOCK_SUFFIX)]
        remove_tree(path)
        os.unlink(lock_path)
        removed.append(path)
    return removed

  def put_tree(self, staged):
    """Moves a staged tree into objects/ under its digest and returns the digest.

    The tree becomes read-only. If the same content is already stored, the staged copy is
    dropped: equal digests mean equal bytes.
    """
    listing = digestlib.tree_listing(staged)
    digest = digestlib.bytes_digest(listing.encode("utf-8"))
    target = self.object_path(digest)
    if not os.path.isdir(target):
      _make_read_only(staged)
      _fsync_tree(staged)
      try:
        os.rename(staged, target)
      except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
          raise
        # Another process published the same content first; staging() removes ours.
      else:
        files.fsync_path(os.path.dirname(target))
    listing_path = target + ".sha256"
    if not os.path.exists(listing_path):
      files.write_atomically(listing_path, listing.encode("utf-8"))
    return digest

  def put_blob(self, staged_file):
    """Moves a file into blobs/ under its sha256 and returns the sha256."""
    sha256 = digestlib.file_digest(staged_file)
    os.chmod(staged_file, 0o444)
    os.replace(staged_file, self.blob_path(sha256))
    return sha256

  def has_blob(self, sha256):
    return os.path.isfile(self.blob_path(sha256))

  # --- Keys and manifests ----------------------------------------------------------------------
  def write_manifest(self, key, manifest):
    files.write_atomically(self.manifest_path(key),
                           (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

  def lookup(self, key):
    """The manifest stored for a key, or None; None too if its output has gone missing."""
    path = self.manifest_path(key)
    try:
      with open(path) as f:
        manifest = json.load(f)
      output = manifest["output"]
    except FileNotFoundError:
      return None
    except (OSError, ValueError, KeyError, TypeError) as e:
      logging.warning("store: ignoring the unreadable manifest %s (%s); the stage runs again "
                      "and replaces it", path, e)
      return None
    if not os.path.isdir(self.object_path(output)):
      return None
    return manifest

  def largest_output(self, stage_name):
    """Bytes of the largest output of stage_name in the store, from its manifests; 0 if none."""
    sizes = [0]
    for name in os.listdir(os.path.join(self.root, "keys")):
      manifest = self.lookup(name[:-len(".json")]) if name.endswith(".json") else None
      if manifest and manifest.get("stage") == stage_name:
        sizes.append(file_systems.tree_size(self.object_path(manifest["output"])))
    return max(sizes)

  def file_digests(self, digest):
    """{relative path: sha256} of a stored output, from its listing."""
    with open(self.object_path(digest) + ".sha256") as f:
      return {path: sha256 for sha256, path in
              (line.rstrip("\n").split("  ", 1) for line in f)}

  def damage(self, digest):
    """None if a stored output's files still hash to its digest; else what is wrong: missing,
    unreadable, or the files that were changed, added or deleted since its listing was
    written. Reads every byte of the output (1.1-1.5 s per GB here)."""
    path = self.object_path(digest)
    if not os.path.isdir(path):
      return "missing"
    try:
      listing = digestlib.tree_listing(path)
    except (OSError, ValueError) as e:
      return str(e)
    if digestlib.bytes_digest(listing.encode("utf-8")) == digest:
      return None
    try:
      with open(path + ".sha256") as f:
        recorded = set(f.read().splitlines())
    except FileNotFoundError:
      return "its files changed, and its listing %s.sha256 is missing" % path
    actual = set(listing.splitlines())
    changed = sorted({line.split("  ", 1)[1] for line in recorded ^ actual})
    return "files differ from the listing: " + ", ".join(changed)

  def verify(self, digest, use="a stage"):
    """Raises errors.DamagedError naming the output, what is wrong with it, and the fix, unless its
    files still hash to its digest. use: who needs it, for the message."""
    problem = self.damage(digest)
    if problem:
      raise errors.DamagedError(
          "stored output %s, which %s needs, is damaged (%s), so nothing was built from it. "
          "Remove it with `%s` and run again: the stage that made it runs again"
          % (digest, use, problem, self.remove_damaged_command(digest)))

  def remove_damaged_command(self, digest):
    """The command that removes a damaged output, so that its stage runs again."""
    return commands.command("//pipeline:store", "verify --remove_damaged %s --store=%s"
                            % (digest, shlex.quote(self.root)))

  def remove_output(self, digest):
    """Deletes a stored output and its listing; its manifest then finds nothing, so its
    stage runs again."""
    remove_tree(self.object_path(digest))
    with contextlib.suppress(FileNotFoundError):
      os.unlink(self.object_path(digest) + ".sha256")

  @contextlib.contextmanager
  def lock(self, key):
    """Holds an exclusive lock for a key, so two processes do not compute one stage twice,
    and a shared lock on the store, so that gc (exclusive) never runs beside a stage. A
    read-only store takes only the shared lock (_read_only_lock)."""
    if not self.writable:
      with self._read_only_lock():
        yield
      return
    with open(os.path.join(self.root, "locks", _GC_LOCK), "a") as store_lock, \
        open(os.path.join(self.root, "locks", key + ".lock"), "w") as f:
      fcntl.flock(store_lock, fcntl.LOCK_SH)
      fcntl.flock(f, fcntl.LOCK_EX)
      try:
        yield
      finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        fcntl.flock(store_lock, fcntl.LOCK_UN)

  @contextlib.contextmanager
  def _read_only_lock(self):
    """A shared lock on the store for a process that cannot write it, if its lock file
    exists and can be read (flock takes a file opened for reading)."""
    try:
      store_lock = open(os.path.join(self.root, "locks", _GC_LOCK))
    except OSError:
      yield
      return
    with store_lock:
      fcntl.flock(store_lock, fcntl.LOCK_SH)
      yield

  @contextlib.contextmanager
  def exclusive(self, command="gc"):
    """Holds the store for gc (or another command that removes things); raises StoreError at
    once, naming command, if a stage is running in it."""
    self.must_write(command)
    with open(os.path.join(self.root, "locks", _GC_LOCK), "a") as store_lock:
      try:
        fcntl.flock(store_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError as e:
        raise StoreError("a stage is running in the store %s: run %s again when it has "
                         "finished" % (self.root, command)) from e
      try:
        yield
      finally:
        fcntl.flock(store_lock, fcntl.LOCK_UN)
