"""seg.serve.prediction without TensorFlow: user images decoded by content into the RGB a viewer
shows (every pixel format, transparency, the pixel limit), folders of mixed files, and the
output files' modes under the umask. A stand-in serving function replaces the model."""

import builtins
import io
import os
import shutil
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from pipeline import errors
from pipeline import files
from seg.serve import photos
from seg.serve import prediction

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "cases")
WHITE = (255, 255, 255)


class _Tensor:

  def __init__(self, array):
    self._array = array

  def numpy(self):
    return self._array


class _Serve:
  """The serving signature's interface: uint8 [1, h, w, 3] → class ids and probabilities;
  keeps the images it was given."""

  def __init__(self):
    self.images = []

  def __call__(self, images):
    self.images.append(images[0])
    height, width = images.shape[1:3]
    return {"class_ids": _Tensor(np.zeros((1, height, width), np.int32)),
            "probabilities": _Tensor(np.full((1, height, width, 3), 1 / 3, np.float32))}


def _expected_grey(grey):
  """uint8 [h, w, 3] of uint8 grey [h, w]."""
  return np.repeat(grey[..., None], 3, -1)


class PixelFormatTest(parameterized.TestCase):

  def saved(self, image, name, **options):
    path = os.path.join(self.create_tempdir().full_path, name)
    image.save(path, **options)
    return path

  def test_16_bit_grey_case_is_value_over_257_not_white(self):
    path = os.path.join(CASES, "grey16.png")
    with Image.open(path) as image:
      self.assertEqual(image.mode, "I;16")
      values = np.asarray(image).astype(np.float64)
    rgb = photos.read_image(path)
    np.testing.assert_array_equal(rgb, _expected_grey(np.rint(values / 257).astype(np.uint8)))
    self.assertLess(rgb.max(), 255)  # Pillow's own conversion gives all white here

  @parameterized.parameters("<u2", ">u2")  # Pillow modes I;16 and I;16B
  def test_16_bit_grey_rounds_each_value(self, dtype):
    values = np.array([[0, 128, 129, 385, 386, 32767, 65535]], dtype)
    rgb = photos.to_rgb(Image.fromarray(values))
    self.assertEqual(rgb.dtype, np.uint8)
    np.testing.assert_array_equal(rgb, _expected_grey(np.array([[0, 0, 1, 1, 2, 127, 255]])))

  def test_32_bit_int_in_16_bit_range_and_wider(self):
    within = np.array([[0, 257, 65535]], np.int32)
    path = self.saved(Image.fromarray(within), "within.tif")
    with Image.open(path) as image:
      self.assertEqual(image.mode, "I")
    np.testing.assert_array_equal(photos.read_image(path),
                                  _expected_grey(np.array([[0, 1, 255]])))
    wider = np.array([[-1000, 0, 99000]], np.int32)  # min..max onto 0..255
    np.testing.assert_array_equal(
        photos.read_image(self.saved(Image.fromarray(wider), "wider.tif")),
        _expected_grey(np.array([[0, 3, 255]])))
    constant = Image.fromarray(np.full((1, 2), -5, np.int32))
    np.testing.assert_array_equal(photos.to_rgb(constant), np.zeros((1, 2, 3)))

  def test_float_is_0_to_1_clipped_nan_black(self):
    values = np.array([[0.0, 0.25, 1.0, 2.0, -1.0, np.nan]], np.float32)
    path = self.saved(Image.fromarray(values), "float.tif")
    with Image.open(path) as image:
      self.assertEqual(image.mode, "F")
    np.testing.assert_array_equal(photos.read_image(path),
                                  _expected_grey(np.array([[0, 64, 255, 255, 0, 0]])))

  def test_1_bit_is_black_and_white(self):
    bits = np.array([[True, False, True]])
    path = self.saved(Image.fromarray(bits), "bits.png")
    with Image.open(path) as image:
      self.assertEqual(image.mode, "1")
    np.testing.assert_array_equal(photos.read_image(path),
                                  _expected_grey(np.array([[255, 0, 255]])))

  def test_cmyk_and_palette_convert_as_pillow_does(self):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
    for image in (Image.fromarray(rgb).convert("CMYK"), Image.fromarray(rgb).quantize(8)):
      np.testing.assert_array_equal(photos.to_rgb(image),
                                    np.asarray(image.convert("RGB")), image.mode)

  def test_rgba_case_transparent_half_is_white(self):
    path = os.path.join(CASES, "rgba_half_transparent.png")
    with Image.open(path) as image:
      rgba = np.asarray(image)
    rgb = photos.read_image(path)
    transparent = rgba[..., 3] == 0
    self.assertTrue(transparent[:, :48].all() and not transparent[:, 48:].any())
    np.testing.assert_array_equal(rgb[transparent], np.full((transparent.sum(), 3), 255))
    np.testing.assert_array_equal(rgb[~transparent], rgba[~transparent][:, :3])

  def test_grey_alpha_blends_over_white(self):
    grey_alpha = np.array([[[10, 0], [10, 255], [10, 128]]], np.uint8)
    path = self.saved(Image.fromarray(grey_alpha, mode="LA"), "la.png")
    # 10 * 128/255 + 255 * 127/255 = 132.0
    np.testing.assert_array_equal(photos.read_image(path),
                                  _expected_grey(np.array([[255, 10, 132]])))

  def test_palette_with_a_transparent_index_and_with_alphas(self):
    indices = np.array([[0, 1, 2]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([200, 0, 0, 0, 200, 0, 0, 0, 200])
    expected = np.array([[WHITE, (0, 200, 0), (0, 0, 200)]])
    for name, transparency in (("index.png", 0), ("alphas.png", bytes([0, 255, 255]))):
      path = self.saved(image, name, transparency=transparency)
      np.testing.assert_array_equal(photos.read_image(path), expected, name)

  def test_16_bit_grey_with_a_transparent_value(self):
    values = np.array([[1000, 2000, 1000]], np.uint16)
    path = self.saved(Image.fromarray(values), "trns16.png", transparency=1000)
    np.testing.assert_array_equal(photos.read_image(path),
                                  _expected_grey(np.array([[255, 8, 255]])))

  def test_exif_orientation_turns_the_picture(self):
    image = Image.fromarray(np.zeros((4, 9), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    path = self.saved(image, "turned.jpg", exif=exif)
    self.assertEqual(photos.read_image(path).shape, (9, 4, 3))


class FilesTest(absltest.TestCase):

  def bomb(self, folder):
    """A 1-bit PNG of 300x200 = 60000 pixels: a bomb for a limit of 50000."""
    path = os.path.join(folder, "bomb.png")
    Image.new("1", (300, 200)).save(path)
    return path

  def test_a_bomb_gets_one_error_line_and_the_next_image_is_done(self):
    folder = self.create_tempdir().full_path
    bomb = self.bomb(folder)
    photo = os.path.join(folder, "photo.png")
    shutil.copy(os.path.join(CASES, "mixed_dir", "a.png"), photo)
    inputs = photos.Inputs((bomb, photo), (), ())
    log, out = io.StringIO(), self.create_tempdir().full_path
    report = prediction.predict(_Serve(), inputs, out, log, max_pixels=50000)
    self.assertEqual(log.getvalue().splitlines(), [
        "failed: %s: 60000 pixels (300x200), over the limit of 50000: "
        "--max_image_pixels=60000 segments it, with about 0.7 GB of memory" % bomb])
    self.assertEqual([w.source for w in report.written], [photo])
    lines = prediction.summary(report, inputs, out)
    self.assertEqual(lines[:2], ["failed (1):", "  " + log.getvalue()[len("failed: "):-1]])
    self.assertEqual(lines[-1], "1 of 2 files segmented; files in %s" % out)

  def test_own_limit_replaces_pillows(self):
    self.addCleanup(setattr, Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    Image.MAX_IMAGE_PIXELS = 1000  # Pillow alone raises DecompressionBombError over 2000
    bomb = self.bomb(self.create_tempdir().full_path)
    self.assertEqual(photos.read_image(bomb, max_pixels=60000).shape, (200, 300, 3))
    self.assertEqual(Image.MAX_IMAGE_PIXELS, 1000)
    with self.assertRaisesRegex(errors.Error, "60000 pixels"):
      photos.read_image(bomb, max_pixels=59999)

  def test_mixed_folder_by_content(self):
    folder = os.path.join(self.create_tempdir().full_path, "in")
    shutil.copytree(os.path.join(CASES, "mixed_dir"), folder)
    open(os.path.join(folder, ".DS_Store"), "wb").close()
    os.mkdir(os.path.join(folder, "sub"))
    inputs = photos.find_inputs(None, folder)
    path = lambda name: os.path.join(folder, name)  # pylint: disable=unnecessary-lambda-assignment
    self.assertEqual(inputs.found, (path("IMG_0001"), path("a.png"), path("notes.txt")))
    self.assertEqual(inputs.skipped, (
        path(".DS_Store") + ": hidden file", path("._b.JPG") + ": AppleDouble file",
        path("sub") + ": a folder (--images does not look inside folders)"))
    log, out = io.StringIO(), self.create_tempdir().full_path
    report = prediction.predict(_Serve(), inputs, out, log)
    self.assertEqual([w.source for w in report.written], [path("IMG_0001"), path("a.png")])
    self.assertEqual(sorted(os.listdir(out)), ["IMG_0001.mask.png", "IMG_0001.overlay.png",
                                               "a.mask.png", "a.overlay.png"])
    not_image = path("notes.txt") + ": not an image (Pillow cannot identify it)"
    self.assertEqual(report.skipped, list(inputs.skipped) + [not_image])
    self.assertEqual(report.failed, [])
    self.assertEqual(log.getvalue().splitlines(),
                     ["note: skipped " + line for line in report.skipped])
    self.assertEqual(prediction.summary(report, inputs, out), [
        "skipped (4):"] + ["  " + line for line in report.skipped] + [
            "2 of 6 files segmented; files in %s" % out])

  def test_a_named_file_that_is_not_an_image_fails(self):
    notes = os.path.join(CASES, "mixed_dir", "notes.txt")
    report = prediction.predict(_Serve(), photos.Inputs((notes,), (), ()),
                                self.create_tempdir().full_path, io.StringIO())
    self.assertEqual(report.failed, [notes + ": not an image (Pillow cannot identify it)"])

  def test_folders_without_files_to_try(self):
    folder = self.create_tempdir().full_path
    shutil.copy(os.path.join(CASES, "mixed_dir", "._b.JPG"), folder)
    with self.assertRaisesRegex(errors.Error, "--images=%s holds no files to segment" % folder):
      photos.find_inputs(None, folder)
    with self.assertRaisesRegex(errors.Error, "give --image=PATH"):
      photos.find_inputs(None, None)


class OutputsTest(absltest.TestCase):

  def write(self, probabilities=None):
    out = self.create_tempdir().full_path
    image = np.zeros((3, 4, 3), np.uint8)
    return prediction.write(out, "cat", image, np.zeros((3, 4), np.int32), probabilities)

  def test_probabilities_only_when_asked(self):
    self.assertEqual([os.path.basename(f) for f in self.write()],
                     ["cat.mask.png", "cat.overlay.png"])
    probabilities = np.random.default_rng(0).random((3, 4, 3)).astype(np.float32)
    files = self.write(probabilities)
    self.assertEqual(os.path.basename(files[-1]), "cat.probabilities.npy")
    np.testing.assert_array_equal(np.load(files[-1]), probabilities)

  def test_files_follow_the_umask(self):
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
      previous = os.umask(umask)
      try:
        self.assertEqual(files._umask(), umask)  # pylint: disable=protected-access
        with mock.patch.object(builtins, "open", side_effect=OSError):  # no /proc
          self.assertEqual(files._umask(), umask)  # pylint: disable=protected-access
        written = self.write(np.zeros((3, 4, 3), np.float32))
      finally:
        os.umask(previous)
      for path in written:
        self.assertEqual(oct(os.stat(path).st_mode & 0o777), oct(mode), path)


if __name__ == "__main__":
  absltest.main()
