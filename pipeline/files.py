"""Files written whole or not at all: through a temporary file in the same folder, one rename,
and fsync, under the user's umask. The store's listings and manifests, the JSON files of stage
outputs and the files predict writes for users go through here (the store publishes whole
output trees by a rename of its own)."""

import contextlib
import os
import tempfile

from pipeline import digest
from pipeline import file_systems

_pending = set()  # the temporary files of write_atomically calls under way


def fsync_path(path):
  """Flushes a file's or folder's data to disk (a folder: its entries)."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_json(path, value):
  """A JSON file of an output, in digest.readable_json's encoding, written atomically."""
  write_atomically(path, digest.readable_json(value))


def _umask():
  """The process's umask. /proc/self/status shows it without changing it; os.umask can only
  read it by setting it, which another thread creating a file meanwhile would get."""
  with contextlib.suppress(OSError):
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_atomically(path, data):
  """Writes bytes to path through a temporary file in the same folder and one rename, and
  flushes both to disk. The file gets mode 0o666 & ~umask, as open() would give it (mkstemp
  makes 0o600). A full file system raises file_systems.NoSpace, which knows len(data)."""
  folder = os.path.dirname(path) or "."
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    _pending.add(tmp)
    with os.fdopen(fd, "wb") as f:
      os.fchmod(f.fileno(), 0o666 & ~_umask())
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    if isinstance(e, OSError) and e.errno in file_systems.NO_SPACE:
      raise file_systems.NoSpace(e.errno, path, len(data)) from e
    raise
  finally:
    _pending.discard(tmp)
  fsync_path(folder)


def remove_pending():
  """Removes the temporary files of writes under way: for a process that ends at once
  (pipeline.stopping.exit_now), whose writes will not finish."""
  for tmp in list(_pending):
    with contextlib.suppress(OSError):
      os.unlink(tmp)
