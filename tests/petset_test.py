"""The petset's quirk policy, run on synthetic archives that carry the real quirks."""

import io
import json
import os

from absl.testing import absltest
from PIL import Image

from data_tools import archive
from data_tools import petset
from data_tools import synthetic
from pipeline import digest
from pipeline import errors


class PetsetTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.folder = absltest.get_default_test_tmpdir()
    cls.archives = os.path.join(cls.folder, "archives")
    os.makedirs(cls.archives, exist_ok=True)
    synthetic.write_archives(cls.archives, 3, 40, 48)

  def write_petset(self):
    extracted, out = self.create_tempdir().full_path, self.create_tempdir().full_path
    for name in ("images.tar.gz", "annotations.tar.gz"):
      archive.extract(os.path.join(self.archives, name), extracted)
    return petset.write_petset(extracted, out), out

  def test_each_quirk_is_handled_and_counted(self):
    details, out = self.write_petset()
    quirky = {q: synthetic._pet_ids(40)[i] for i, q in synthetic.QUIRKS.items()}
    self.assertEqual(details["skipped"]["no trimap"], [quirky["no_trimap"] + ".jpg"])
    self.assertEqual(details["skipped"]["not a .jpg file"], ["Abyssinian_101.mat"])
    self.assertLen(details["skipped"]["AppleDouble file"], 2)
    self.assertEqual(details["normalised"], {
        "PNG RGB": [quirky["png_data"]], "PNG RGBA": [quirky["rgba_png"]],
        "JPEG CMYK": [quirky["cmyk"]], "JPEG L": [quirky["grayscale"]]})
    self.assertEqual(details["metadata_from_file_name"], [quirky["no_list_row"]])
    self.assertEqual(details["pets"], 39)
    self.assertLen(os.listdir(out), 39)
    for pet_id in (quirky["cmyk"], quirky["rgba_png"]):
      with Image.open(os.path.join(out, pet_id, "image.jpg")) as picture:
        self.assertEqual((picture.format, picture.mode), ("JPEG", "RGB"))
    with open(os.path.join(out, quirky["no_list_row"], "metadata.json")) as f:
      self.assertEqual(json.load(f)["metadata_source"], "file_name")

  def test_plain_images_and_trimaps_are_kept_byte_for_byte(self):
    _, out = self.write_petset()
    extracted = self.create_tempdir().full_path
    archive.extract(os.path.join(self.archives, "images.tar.gz"), extracted)
    with open(os.path.join(extracted, "images", "Abyssinian_1.jpg"), "rb") as f:
      original = f.read()
    with open(os.path.join(out, "Abyssinian_1", "image.jpg"), "rb") as f:
      self.assertEqual(f.read(), original)
    with open(os.path.join(out, "Abyssinian_1", "metadata.json")) as f:
      self.assertEqual(json.load(f), {
          "pet_id": "Abyssinian_1", "class_id": 1, "species": 1, "species_name": "cat",
          "breed_id": 1, "breed_name": "Abyssinian", "metadata_source": "list.txt"})

  def test_petset_is_deterministic(self):
    (_, one), (_, two) = self.write_petset(), self.write_petset()
    self.assertEqual(digest.tree_digest(one), digest.tree_digest(two))

  def test_bad_trimap_is_skipped_with_its_reason(self):
    extracted, out = self.create_tempdir().full_path, self.create_tempdir().full_path
    for name in ("images.tar.gz", "annotations.tar.gz"):
      archive.extract(os.path.join(self.archives, name), extracted)
    bad = io.BytesIO()
    Image.new("L", (5, 5), 7).save(bad, format="PNG")
    with open(os.path.join(extracted, "annotations/trimaps/Abyssinian_1.png"), "wb") as f:
      f.write(bad.getvalue())
    details = petset.write_petset(extracted, out)
    self.assertEqual(details["skipped"]["trimap size differs from image size"],
                     ["Abyssinian_1.jpg"])
    self.assertEqual(details["pets"], 38)

  def test_missing_folders_are_named(self):
    with self.assertRaisesRegex(errors.Error, "no images"):
      petset.write_petset(self.create_tempdir().full_path, self.create_tempdir().full_path)


if __name__ == "__main__":
  absltest.main()
