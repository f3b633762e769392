"""Extraction lets no member escape and names damaged archives."""

import io
import os
import tarfile

from absl.testing import absltest

from data_tools import archive


def tar_bytes(add):
  raw = io.BytesIO()
  with tarfile.open(fileobj=raw, mode="w:gz") as tar:
    add(tar)
  return raw.getvalue()


def add_file(tar, name, data=b"x"):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def add_link(tar, name, target, kind=tarfile.SYMTYPE):
  info = tarfile.TarInfo(name)
  info.type, info.linkname = kind, target
  tar.addfile(info)


class ExtractTest(absltest.TestCase):

  def extract(self, data, name="a.tar.gz"):
    folder = self.create_tempdir()
    path = os.path.join(folder.full_path, name)
    with open(path, "wb") as f:
      f.write(data)
    dest = os.path.join(folder.full_path, "dest")
    os.makedirs(dest)
    return archive.extract(path, dest), dest, folder.full_path

  def assert_refused(self, add, pattern):
    folder = self.create_tempdir().full_path
    with self.assertRaisesRegex(archive.ArchiveError, pattern):
      self.extract(tar_bytes(add))
    # Nothing was written anywhere: not in dest, not beside it.
    self.assertEqual(os.listdir(folder), [])

  def test_regular_archive_extracts(self):
    count, dest, _ = self.extract(tar_bytes(lambda t: add_file(t, "images/a.jpg", b"abc")))
    self.assertEqual(count, 1)
    with open(os.path.join(dest, "images", "a.jpg"), "rb") as f:
      self.assertEqual(f.read(), b"abc")

  def test_dot_dot_is_refused(self):
    self.assert_refused(lambda t: (add_file(t, "ok"), add_file(t, "images/../../evil")),
                        r"outside the archive")

  def test_absolute_name_is_refused(self):
    self.assert_refused(lambda t: add_file(t, "/tmp/evil"), "absolute path")

  def test_symlink_out_of_the_tree_is_refused(self):
    self.assert_refused(lambda t: add_link(t, "images/link", "/etc"), "is a link")

  def test_hard_link_is_refused(self):
    self.assert_refused(lambda t: add_link(t, "images/link", "../../etc/passwd",
                                           tarfile.LNKTYPE), "is a link")

  def test_device_is_refused(self):
    def add(tar):
      info = tarfile.TarInfo("dev")
      info.type = tarfile.CHRTYPE
      tar.addfile(info)
    self.assert_refused(add, "not a regular file")

  def test_truncated_archive_is_named(self):
    data = tar_bytes(lambda t: add_file(t, "images/a.jpg", os.urandom(50000)))
    with self.assertRaisesRegex(archive.ArchiveError, r"a\.tar\.gz is damaged or truncated"):
      self.extract(data[:len(data) // 2])

  def test_plain_tar_is_accepted(self):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
      add_file(tar, "images/a.jpg")
    count, _, _ = self.extract(raw.getvalue(), name="images.tar.gz")
    self.assertEqual(count, 1)

  def test_written_archives_are_deterministic(self):
    folder = self.create_tempdir().full_path
    files = {"b/c.txt": b"c", "a.txt": b"a"}
    archive.write_tar_gz(os.path.join(folder, "1.tar.gz"), files)
    archive.write_tar_gz(os.path.join(folder, "2.tar.gz"), dict(reversed(list(files.items()))))
    with open(os.path.join(folder, "1.tar.gz"), "rb") as one, \
        open(os.path.join(folder, "2.tar.gz"), "rb") as two:
      self.assertEqual(one.read(), two.read())
    with tarfile.open(os.path.join(folder, "1.tar.gz")) as tar:
      self.assertEqual(tar.getnames(), ["a.txt", "b", "b/c.txt"])


if __name__ == "__main__":
  absltest.main()
