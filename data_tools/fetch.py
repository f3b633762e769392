"""Fetches pinned files into the store's blobs: mirrors in order, resumable, with progress.

A file is named by its sha256 and size; whatever mirror serves it, the bytes are checked
before they enter the store. A partial download is kept in the store's tmp/ and resumed
with an HTTP Range request on the next try.
"""

import dataclasses
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request

from pipeline import digest
from pipeline import errors


class FetchError(errors.Error):
  pass


@dataclasses.dataclass(frozen=True)
class Pinned:
  name: str
  size: int
  sha256: str


def _progress(name, done, total, started, out):
  rate = done / max(time.monotonic() - started, 1e-6)
  out.write("\r  %s: %5.1f%% of %.1f MB, %.1f MB/s" % (name, 100.0 * done / total, total / 1e6,
                                                        rate / 1e6))
  out.flush()


def _download(url, part_path, pinned, timeout, out):
  """Appends the missing bytes of url to part_path; returns when the file is whole."""
  have = os.path.getsize(part_path) if os.path.exists(part_path) else 0
  if have >= pinned.size:
    return
  request = urllib.request.Request(url, headers={"Range": "bytes=%d-" % have} if have else {})
  with urllib.request.urlopen(request, timeout=timeout) as response:
    if have and response.status != 206:  # the server ignored Range: start again
      have = 0
    started, last = time.monotonic(), 0.0
    with open(part_path, "ab" if have else "wb") as f:
      while True:
        try:
          chunk = response.read(1 << 20)
        except http.client.IncompleteRead as e:
          f.write(e.partial)  # keep what arrived: the next try resumes after it
          raise
        if not chunk:
          break
        f.write(chunk)
        have += len(chunk)
        if time.monotonic() - last > 1.0:
          _progress(pinned.name, have, pinned.size, started, out)
          last = time.monotonic()
    _progress(pinned.name, have, pinned.size, started, out)
    out.write("\n")
  if have < pinned.size:  # kept: the next try resumes after it
    raise ConnectionError("the connection closed after %d of %d bytes" % (have, pinned.size))


def fetch(store, pinned, mirrors, timeout=60, out=None):
  """Returns the store path of the pinned file, downloading it from the first mirror that
  serves the right bytes. Raises FetchError naming every mirror's failure."""
  out = out or sys.stderr
  if store.has_blob(pinned.sha256):
    return store.blob_path(pinned.sha256)
  part = os.path.join(store.root, "tmp", "download-%s.part" % pinned.sha256)
  failures = []
  for mirror in mirrors:
    url = mirror.rstrip("/") + "/" + pinned.name
    for _ in range(2):
      resumed = os.path.exists(part) and os.path.getsize(part) > 0
      try:
        _download(url, part, pinned, timeout, out)
      except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        if isinstance(e, urllib.error.HTTPError):
          failures.append("%s: HTTP %d %s" % (url, e.code, e.reason))
        else:
          failures.append("%s: %s" % (url, getattr(e, "reason", e)))
        break
      size = os.path.getsize(part)
      sha256 = digest.file_digest(part)
      if size == pinned.size and sha256 == pinned.sha256:
        return store.blob_path(store.put_blob(part))
      os.unlink(part)  # wrong bytes: never resume from them
      if not resumed:
        failures.append("%s: got %d bytes with sha256 %s, want %d bytes with sha256 %s"
                        % (url, size, sha256, pinned.size, pinned.sha256))
        break
      # The bytes this resumed from may have come from elsewhere: try this mirror afresh.
  raise FetchError(
      "could not download %s from any mirror:\n  %s\nWithout network, pass the archives you "
      "have with --source=DIR, or train offline on --dataset=synthetic."
      % (pinned.name, "\n  ".join(failures)))


def import_file(store, path, check=None):
  """Copies a local file into the store's blobs; returns (blob path, size, sha256).

  check(size, sha256), if given, may raise to refuse the file; nothing is stored then.
  """
  tmp = os.path.join(store.root, "tmp", "import-%d-%s" % (os.getpid(), os.path.basename(path)))
  h = hashlib.sha256()
  try:
    with open(path, "rb") as src, open(tmp, "wb") as dst:
      for chunk in iter(lambda: src.read(1 << 20), b""):
        h.update(chunk)
        dst.write(chunk)
    size, sha256 = os.path.getsize(tmp), h.hexdigest()
    if check:
      check(size, sha256)
    if not store.has_blob(sha256):
      store.put_blob(tmp)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return store.blob_path(sha256), size, sha256
