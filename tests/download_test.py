"""Fetching pinned archives (mirrors, resume, checks) and taking them from --source."""

import hashlib
import http.server
import io
import os
import shutil
import threading

from absl.testing import absltest

from data_tools import archive
from data_tools import dataset
from data_tools import fetch
from data_tools import synthetic
from pipeline import determinism
from pipeline import errors
from pipeline import store as storelib


class Server:
  """An HTTP server on 127.0.0.1 serving fixed bytes, with Range support; it can cut the
  first response short to exercise resuming."""

  def __init__(self, files):
    self.files, self.requests, self.cut_next = files, [], False
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path.lstrip("/"))
        if data is None:
          self.send_error(404)
          return
        start = 0
        if self.headers.get("Range"):
          start = int(self.headers["Range"].split("=")[1].rstrip("-"))
          self.send_response(206)
        else:
          self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_next:
          server.cut_next = False
          self.wfile.write(body[:len(body) // 2])
          self.wfile.flush()
          self.close_connection = True
          return
        self.wfile.write(body)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = "http://127.0.0.1:%d/" % self.httpd.server_address[1]
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


def pinned(name, data):
  return fetch.Pinned(name, len(data), hashlib.sha256(data).hexdigest())


class FetchTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    self.data = os.urandom(300000)
    self.server = Server({"a.tar.gz": self.data, "bad.tar.gz": b"not it"})
    self.addCleanup(self.server.close)

  def test_fetch_checks_and_stores_by_sha256(self):
    p = pinned("a.tar.gz", self.data)
    path = fetch.fetch(self.store, p, [self.server.url], out=io.StringIO())
    self.assertEqual(path, self.store.blob_path(p.sha256))
    with open(path, "rb") as f:
      self.assertEqual(f.read(), self.data)
    # Stored: a second fetch asks no server.
    before = len(self.server.requests)
    fetch.fetch(self.store, p, ["http://127.0.0.1:1/"], out=io.StringIO())
    self.assertLen(self.server.requests, before)

  def test_a_cut_download_resumes_with_a_range_request(self):
    self.server.cut_next = True
    p = pinned("a.tar.gz", self.data)
    path = fetch.fetch(self.store, p, [self.server.url, self.server.url], out=io.StringIO())
    with open(path, "rb") as f:
      self.assertEqual(f.read(), self.data)
    self.assertEqual(self.server.requests[0][1], None)
    self.assertEqual(self.server.requests[1][1], "bytes=%d-" % (len(self.data) // 2))

  def test_wrong_bytes_are_refused_and_the_next_mirror_is_tried(self):
    self.server.files["b/a.tar.gz"] = b"wrong bytes"
    p = pinned("a.tar.gz", self.data)
    out = io.StringIO()
    fetch.fetch(self.store, p, [self.server.url + "b/", self.server.url], out=out)
    self.assertTrue(self.store.has_blob(p.sha256))
    self.assertFalse(self.store.has_blob(hashlib.sha256(b"wrong bytes").hexdigest()))

  def test_unreachable_mirrors_point_to_the_offline_options(self):
    p = pinned("a.tar.gz", self.data)
    with self.assertRaises(fetch.FetchError) as caught:
      fetch.fetch(self.store, p, ["http://127.0.0.1:1/", self.server.url + "missing/"],
                  out=io.StringIO())
    message = str(caught.exception)
    self.assertIn("http://127.0.0.1:1/a.tar.gz", message)
    self.assertIn("404", message)
    self.assertIn("--source", message)
    self.assertIn("--dataset=synthetic", message)
    self.assertEqual(os.listdir(self.store.root + "/blobs"), [])


class SourceTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = os.path.join(absltest.get_default_test_tmpdir(), "source")
    os.makedirs(cls.source, exist_ok=True)
    synthetic.write_archives(cls.source, 5, 30, 40)

  def setUp(self):
    super().setUp()
    self.store = storelib.Store(self.create_tempdir().full_path)
    self.settings = determinism.Settings()

  def test_unpinned_archives_need_the_flag(self):
    config = dataset.DataConfig(source=self.source, image_size=32)
    with self.assertRaisesRegex(errors.Error, r"not the pinned 67195c5e.*--allow_unpinned"):
      dataset.download_stage(self.store, config, self.settings)
    for folder in ("objects", "blobs", "keys", "tmp"):
      self.assertEqual(os.listdir(os.path.join(self.store.root, folder)), [], folder)

  def test_unpinned_archives_with_the_flag_are_recorded(self):
    config = dataset.DataConfig(source=self.source, image_size=32, allow_unpinned_archives=True)
    _, result = dataset.download_stage(self.store, config, self.settings)
    archives = result.manifest["details"]["archives"]
    with open(os.path.join(self.source, "images.tar.gz"), "rb") as f:
      self.assertEqual(archives["images.tar.gz"],
                       {"sha256": hashlib.sha256(f.read()).hexdigest(), "pinned": False})
    self.assertEqual(result.manifest["key_record"]["inputs"]["images.tar.gz"],
                     archives["images.tar.gz"]["sha256"])
    self.assertEqual(result.manifest["details"]["pets"], 29)

  def test_source_and_synthetic_give_the_same_petset(self):
    config = dataset.DataConfig(dataset="synthetic", synthetic_images=30,
                                synthetic_image_size=40)
    settings = determinism.Settings(seed=1)
    made, from_synthetic = dataset.download_stage(self.store, config, settings)
    source = self.create_tempdir().full_path
    for name in ("images.tar.gz", "annotations.tar.gz"):
      shutil.copy(os.path.join(made.path, name), source)
    _, from_source = dataset.download_stage(
        storelib.Store(self.create_tempdir().full_path),
        dataset.DataConfig(source=source, allow_unpinned_archives=True), settings)
    self.assertEqual(from_source.digest, from_synthetic.digest)
    self.assertEqual(from_source.key, from_synthetic.key)

  def test_a_hostile_archive_is_named_as_the_user_knows_it(self):
    source = self.create_tempdir().full_path
    shutil.copy(os.path.join(self.source, "annotations.tar.gz"), source)
    hostile = os.path.join(source, "images.tar.gz")
    archive.write_tar_gz(hostile, {"/tmp/evil": b"x"})
    with open(hostile, "rb") as f:
      sha256 = hashlib.sha256(f.read()).hexdigest()
    config = dataset.DataConfig(source=source, allow_unpinned_archives=True)
    with self.assertRaises(errors.Error) as raised:
      dataset.download_stage(self.store, config, self.settings)
    self.assertEqual(str(raised.exception),
                     "images.tar.gz (sha256 %s…): member '/tmp' has an absolute path; "
                     "refusing to extract this archive" % sha256[:12])
    self.assertEqual(os.listdir(os.path.join(self.store.root, "objects")), [])

  def test_a_damaged_synthetic_archive_is_refused_and_nothing_is_built(self):
    config = dataset.DataConfig(dataset="synthetic", synthetic_images=20,
                                synthetic_image_size=40)
    made, _ = dataset.archives(self.store, config, self.settings)
    archive_path = os.path.join(made.path, "annotations.tar.gz")
    os.chmod(made.path, 0o755)
    os.chmod(archive_path, 0o644)
    with open(archive_path, "ab") as f:
      f.write(b"\0")
    with self.assertRaisesRegex(errors.Error, r"annotations\.tar\.gz at .* has changed since "
                                r"its digest was taken .*--remove_damaged"):
      dataset.download_stage(self.store, config, self.settings)
    self.assertEqual(os.listdir(os.path.join(self.store.root, "keys")),
                     [made.key + ".json"])  # no download output

  def test_a_missing_archive_is_named(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(errors.Error, r"holds no images\.tar\.gz"):
      dataset.download_stage(self.store, dataset.DataConfig(source=empty), self.settings)

  def test_source_must_be_a_folder(self):
    with self.assertRaisesRegex(errors.Error, "is not a folder"):
      dataset.DataConfig(source="/nonexistent/reproseg")


if __name__ == "__main__":
  absltest.main()
