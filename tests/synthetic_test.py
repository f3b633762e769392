"""The synthetic twin of the Oxford-IIIT Pet archives: layout and byte-identity."""

import hashlib
import io
import os
import tarfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from data_tools import oxford
from data_tools import synthetic


def digests(out_dir):
  return {name: hashlib.sha256(open(os.path.join(out_dir, name), "rb").read()).hexdigest()
          for name in sorted(os.listdir(out_dir))}


class SyntheticTest(absltest.TestCase):

  def make(self, seed, count=40, size=48, quirks=True):
    out = self.create_tempdir().full_path
    synthetic.write_archives(out, seed, count, size, quirks)
    return out

  def test_same_seed_same_bytes(self):
    self.assertEqual(digests(self.make(7)), digests(self.make(7)))

  def test_other_seed_other_bytes(self):
    one, two = digests(self.make(7)), digests(self.make(8))
    for name in one:
      self.assertNotEqual(one[name], two[name], name)

  def test_layout_is_oxfords(self):
    out = self.make(1)
    self.assertEqual(sorted(os.listdir(out)), ["annotations.tar.gz", "images.tar.gz"])
    with tarfile.open(os.path.join(out, "annotations.tar.gz")) as tar:
      names = set(tar.getnames())
      list_txt = tar.extractfile("annotations/list.txt").read().decode()
      trimap = np.asarray(Image.open(io.BytesIO(
          tar.extractfile("annotations/trimaps/Abyssinian_1.png").read())))
    for needed in ("annotations/trimaps", "annotations/xmls", "annotations/trainval.txt",
                   "annotations/test.txt"):
      self.assertIn(needed, names)
    lines = list_txt.splitlines()
    self.assertEqual([l for l in lines if l.startswith("#")], oxford.LIST_HEADER.splitlines())
    self.assertLen([l for l in lines if l.startswith("#")], 6)
    self.assertEqual(lines[6].split()[1:], ["1", "1", "1"])  # Abyssinian: class 1, cat, breed 1
    self.assertEqual(set(np.unique(trimap).tolist()), {1, 2, 3})
    with tarfile.open(os.path.join(out, "images.tar.gz")) as tar:
      info = tar.getmember("images/Abyssinian_1.jpg")
      self.assertEqual((info.mtime, info.uid, info.uname), (0, 0, ""))
      self.assertEqual(Image.open(tar.extractfile(info)).format, "JPEG")

  def test_quirks_are_in_the_archives(self):
    out = self.make(1)
    with tarfile.open(os.path.join(out, "images.tar.gz")) as tar:
      formats = {}
      for member in tar.getmembers():
        if member.name.endswith(".jpg"):
          picture = Image.open(io.BytesIO(tar.extractfile(member).read()))
          formats[(picture.format, picture.mode)] = member.name
      self.assertIn("images/Abyssinian_101.mat", tar.getnames())
    self.assertIn(("PNG", "RGB"), formats)
    self.assertIn(("PNG", "RGBA"), formats)
    self.assertIn(("JPEG", "CMYK"), formats)
    self.assertIn(("JPEG", "L"), formats)

  def test_too_few_images_for_quirks_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "at least"):
      synthetic.archives(1, 5, 48, quirks=True)


if __name__ == "__main__":
  absltest.main()
