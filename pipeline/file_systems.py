"""What a file system says when a write fails: full (ENOSPC, EDQUOT) or read-only (EROFS,
EACCES, EPERM), and the words that name it: its type, mount point and free space."""

import errno
import os
import shutil

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# How TensorFlow's C++ words these errors in its OpErrors, which carry no errno.
_NO_SPACE_WORDS = ("No space left on device", "Disk quota exceeded")


class NoSpace(OSError):
  """An OSError of a full file system (errno ENOSPC or EDQUOT) that knows the size of the
  write it cut short: size, in bytes."""

  def __init__(self, error_number, filename, size):
    super().__init__(error_number, os.strerror(error_number), filename)
    self.size = size


def _unescape(field):
  r"""A /proc/self/mounts field: octal escapes (\040 for a space) decoded."""
  return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def mount_of(path):
  """(mount point, file system type, read-only?) of the file system that holds path (or its
  nearest existing parent): the longest mount point in /proc/self/mounts above it; ("/",
  "unknown", False) where /proc is not mounted."""
  path = os.path.realpath(path)
  best = ("/", "unknown", False)
  try:
    with open("/proc/self/mounts") as f:
      for line in f:
        fields = line.split()
        if len(fields) < 4:
          continue
        point = _unescape(fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
          best = (point, fields[2], "ro" in fields[3].split(","))
  except OSError:
    pass
  return best


def _existing(path):
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def size_words(size):
  """"1.5 GB", "20.0 MB", "512 bytes" (powers of 1000)."""
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if size >= scale:
      return "%.1f %s" % (size / scale, unit)
  return "%d bytes" % size


def describe(path):
  """"the tmpfs file system at /tmp/x (0 bytes free of 20.0 MB)", "the read-only ext4 file
  system at /data (...)", for the file system of path."""
  point, kind, read_only = mount_of(_existing(os.path.abspath(path)))
  try:
    usage = shutil.disk_usage(_existing(os.path.abspath(path)))
    space = " (%s free of %s)" % (size_words(usage.free), size_words(usage.total))
  except OSError:
    space = ""
  return "the %s%s file system at %s%s" % ("read-only " if read_only else "", kind, point, space)


def tree_size(path):
  """Bytes in the files under path (a file or a folder); 0 where it is gone."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  total = 0
  for dirpath, _, filenames in os.walk(path):
    for name in filenames:
      try:
        total += os.lstat(os.path.join(dirpath, name)).st_size
      except OSError:
        pass
  return total


def _causes(error):
  """error and the exceptions it was raised from or during, outermost first."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def is_no_space(error):
  """Whether error, or an error it came from, is a full file system: an OSError with errno
  ENOSPC or EDQUOT, or a TensorFlow error that says so."""
  return bool(os_error(error, NO_SPACE)) or any(
      type(e).__module__.startswith("tensorflow") and
      any(words in str(e) for words in _NO_SPACE_WORDS) for e in _causes(error))


def failed_write_size(error):
  """The bytes of the write that a full file system cut short (NoSpace.size), or 0."""
  return next((e.size for e in _causes(error) if isinstance(e, NoSpace)), 0)


def os_error(error, numbers):
  """The OSError among error and the errors it came from whose errno is one of numbers, or
  None."""
  return next((e for e in _causes(error) if isinstance(e, OSError) and e.errno in numbers),
              None)
