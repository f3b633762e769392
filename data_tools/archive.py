"""Tar archives: deterministic writing and extraction that lets no member escape."""

import gzip
import io
import os
import posixpath
import tarfile
import zlib

from pipeline import errors


class ArchiveError(errors.Error):
  pass


def write_tar_gz(path, files):
  """Writes {archive path: bytes} as a .tar.gz whose bytes depend on nothing but the files.

  Members are in sorted order, each folder before its contents; owners, times and gzip header
  fields are fixed, so one input always gives one byte string.
  """
  folders = set()
  for name in files:
    parts = name.split("/")[:-1]
    folders.update("/".join(parts[:i + 1]) for i in range(len(parts)))
  raw = io.BytesIO()
  with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
    for name in sorted(folders | set(files)):
      info = tarfile.TarInfo(name)
      info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
      if name in files:
        info.mode, info.size = 0o644, len(files[name])
        tar.addfile(info, io.BytesIO(files[name]))
      else:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
  with open(path, "wb") as f:
    with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
      gz.write(raw.getvalue())


def _check_member(member, archive_name):
  name = member.name
  if name.startswith("/") or os.path.isabs(name):
    raise ArchiveError("%s: member %r has an absolute path; refusing to extract this archive"
                       % (archive_name, name))
  if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
    raise ArchiveError("%s: member %r points outside the archive (..); refusing to extract it"
                       % (archive_name, name))
  if member.issym() or member.islnk():
    raise ArchiveError("%s: member %r is a link (to %r); the dataset has none, refusing to "
                       "extract this archive" % (archive_name, name, member.linkname))
  if not (member.isfile() or member.isdir()):
    raise ArchiveError("%s: member %r is not a regular file or folder; refusing to extract it"
                       % (archive_name, name))


def extract(archive_path, destination, name=None):
  """Extracts regular files and folders of a .tar.gz (or plain .tar) into destination.

  Refuses, before writing anything, archives with absolute or `..` member names, links or
  device files. Raises ArchiveError naming the archive (as `name`, the name the user knows,
  when the file is a store blob named by its digest) on any damage (e.g. truncation).
  Returns the number of files extracted.
  """
  name = name or os.path.basename(archive_path)
  destination = os.path.realpath(destination)
  try:
    with tarfile.open(archive_path, mode="r:*") as tar:
      members = tar.getmembers()  # reads the whole index, so damage shows before any write
      for member in members:
        _check_member(member, name)
      count = 0
      for member in members:
        target = os.path.realpath(os.path.join(destination, member.name))
        if os.path.commonpath([destination, target]) != destination:
          raise ArchiveError("%s: member %r would land outside %s" % (name, member.name,
                                                                        destination))
        if member.isdir():
          os.makedirs(target, exist_ok=True)
          continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tar.extractfile(member) as src, open(target, "wb") as dst:
          while True:
            chunk = src.read(1 << 20)
            if not chunk:
              break
            dst.write(chunk)
        count += 1
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise ArchiveError("%s is damaged or truncated (%s: %s; the file is %s): delete it and "
                       "download it again, or pass an intact copy with --source"
                       % (name, type(e).__name__, e, archive_path)) from e
  return count

