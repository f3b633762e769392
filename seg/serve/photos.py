"""The user's photos: which files a run tries, and each image's pixels as a viewer shows it.

Files. Every --image, then every file of --images=DIR in name order, whatever its suffix:
Pillow decides from the content whether it is an image. In the folder, hidden files (".*"),
macOS AppleDouble files ("._*"), subfolders and other entries that are not regular files
are skipped with a note, and a file Pillow cannot identify is skipped as not an image.

Pixels. Each image becomes uint8 RGB [h, w, 3] as a viewer shows it:
- EXIF orientation applied (Pillow's ImageOps.exif_transpose); of an animation or a
  multi-page file, the first frame.
- 1-bit: 0 black, 1 white; grey (L) and RGB as stored; palette (P): the palette's colours;
  CMYK, YCbCr, LAB, HSV: Pillow's conversions (CMYK: R = (255 - C)(255 - K) / 255, ...).
  16-bit RGB(A) PNGs reach us as 8-bit RGB(A): Pillow keeps each value's high byte
  (floor(value / 256), at most 1 off round(value / 257)).
  Embedded ICC profiles are not applied, as the download stage's conversion of the
  training photos (data_tools/petset.py) applies none.
- 16-bit grey (I;16, I;16L, I;16B, I;16N): round(value / 257), 0..65535 onto 0..255.
- 32-bit int (I): as 16-bit grey if every value is in 0..65535 (tools hold 16-bit grey in
  this mode); else the image's own min..max stretched onto 0..255 (rounded; a constant
  image black), as no wider range is standard.
- float (F): 0.0 black to 1.0 white, round(value * 255), outside values clipped, NaN black:
  the range of float TIFFs from scientific tools, as GIMP and ImageMagick show them.
  (Own arithmetic for these three: Pillow's conversions clamp the values at 255, which shows
  most 16-bit, 32-bit and float images as white or black.)
- Transparency (RGBA, LA, PA, La, RGBa, a palette with transparent entries, a tRNS colour of
  a grey, RGB or 16-bit grey PNG) is composited over white, as a browser page shows a
  cut-out picture: a fully transparent pixel is white exactly.

Size. Memory grows with the photo: at peak about 60 bytes a pixel (mostly full-size tensors:
the model's input cast to float32 and its probabilities resized back, float32 [h, w, 3]) on
top of about 0.7 GB for TensorFlow and the model. Measured (peak RSS): 1.4 GB for a
4000x3000 photo, 2.9 GB for 8000x6000; writing the probabilities adds up to 12 bytes a
pixel (3.4 GB for 8000x6000). An image over max_pixels is refused before it is decoded,
with an error naming its pixel count, the limit and the memory it would take.
"""

import contextlib
import dataclasses
import os

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from pipeline import errors

BACKGROUND = (255, 255, 255)  # behind transparent pixels: white, as a browser page shows them
# Pillow's decompression-bomb threshold, 89478485: it warns above it and refuses above twice
# it. Here the one limit, so that the default bounds memory (about 6 GB, MEMORY_* below).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# Peak memory of predict, measured: this much a photo pixel, plus this much for TensorFlow.
MEMORY_BYTES_PER_PIXEL, MEMORY_BASE_BYTES = 60, 0.7e9


class NotAnImage(errors.Error):
  """A file Pillow cannot identify as an image."""


@dataclasses.dataclass(frozen=True)
class Inputs:
  """The files of a run: named (--image paths: each must be an image), found (the regular
  files of --images=DIR, by name: one that is not an image is skipped) and skipped ("PATH:
  reason" lines: the folder's hidden, AppleDouble and non-regular entries)."""
  named: tuple
  found: tuple
  skipped: tuple

  def count(self):
    return len(self.named) + len(self.found) + len(self.skipped)


# --- Which files ----------------------------------------------------------------------------------
def _skip_reason(folder, name):
  """Why --images leaves a folder entry alone, or None if it is a file to try."""
  path = os.path.join(folder, name)
  if name.startswith("._"):
    return "AppleDouble file"
  if name.startswith("."):
    return "hidden file"
  if os.path.isdir(path):
    return "a folder (--images does not look inside folders)"
  if not os.path.isfile(path):
    return "not a regular file"
  return None


def find_inputs(images, folder):
  """The --image paths and the entries of --images (see Inputs); an error if there is no
  file to try."""
  found, skipped = [], []
  if folder:
    if not os.path.isdir(folder):
      raise errors.Error("--images=%s is not a folder" % folder)
    for name in sorted(os.listdir(folder)):
      reason = _skip_reason(folder, name)
      if reason:
        skipped.append("%s: %s" % (os.path.join(folder, name), reason))
      else:
        found.append(os.path.join(folder, name))
    if not found and not images:
      raise errors.Error("--images=%s holds no files to segment (hidden, AppleDouble and "
                         "non-regular entries are skipped)" % folder)
  if not images and not folder:
    raise errors.Error("give --image=PATH (repeatable) or --images=DIR")
  return Inputs(tuple(images or ()), tuple(found), tuple(skipped))


# --- Pixels ---------------------------------------------------------------------------------------
def _from_16_bit(values):
  """uint8 round(value / 257) of integer values in 0..65535 (257 * 255 = 65535: no ties)."""
  return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _from_32_bit(values):
  """uint8 of int32 values: as 16-bit if they fit in 0..65535, else min..max onto 0..255."""
  low, high = int(values.min()), int(values.max())
  if low >= 0 and high <= 65535:
    return _from_16_bit(values)
  span = max(high - low, 1)  # a constant image: black
  return (((values.astype(np.int64) - low) * 255 + span // 2) // span).astype(np.uint8)


def _from_float(values):
  """uint8 round(value * 255) of float values, 0.0..1.0 onto 0..255, clipped, NaN 0."""
  return np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


# Modes whose values are not 0..255, and their scaling to 8-bit grey.
_WIDE_GREY = {"I;16": _from_16_bit, "I;16L": _from_16_bit, "I;16B": _from_16_bit,
              "I;16N": _from_16_bit, "I": _from_32_bit, "F": _from_float}


def _eight_bit(image):
  """An image in a mode whose values are 0..255: wide grey scaled (L, or LA with a tRNS
  value's pixels transparent), other modes as they are."""
  scale = _WIDE_GREY.get(image.mode)
  if scale is None:
    return image
  values = np.asarray(image)
  grey = Image.fromarray(scale(values), mode="L")
  transparent = image.info.get("transparency")
  if transparent is not None:
    grey.putalpha(Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8)))
  return grey


def _over_background(image):
  """An RGB image: image (any mode with transparency) composited over BACKGROUND."""
  rgba = image.convert("RGBA")
  canvas = Image.new("RGB", image.size, BACKGROUND)
  canvas.paste(rgba, mask=rgba)
  return canvas


def to_rgb(image):
  """uint8 [h, w, 3]: a PIL image's pixels as a viewer shows them (see the module docstring);
  EXIF orientation is read_image's part."""
  image = _eight_bit(image)
  if image.has_transparency_data:
    image = _over_background(image)
  elif image.mode != "RGB":
    image = image.convert("RGB")
  return np.asarray(image)


# --- Reading a file -------------------------------------------------------------------------------
@contextlib.contextmanager
def _pillow_pixel_check_off():
  """Pillow's own pixel limit (a module global, read by Image.open and while decoding some
  formats) off for one read: read_image applies max_pixels instead, one limit it can name."""
  limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    yield
  finally:
    Image.MAX_IMAGE_PIXELS = limit


def _check_pixels(path, size, max_pixels):
  """errors.Error naming the file, its size, the limit and the flag if size is over it."""
  width, height = size
  pixels = width * height
  if pixels > max_pixels:
    raise errors.Error(
        "%s: %d pixels (%dx%d), over the limit of %d: --max_image_pixels=%d segments it, "
        "with about %.1f GB of memory" % (
            path, pixels, width, height, max_pixels, pixels,
            (MEMORY_BASE_BYTES + pixels * MEMORY_BYTES_PER_PIXEL) / 1e9))


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
  """uint8 [h, w, 3] RGB, upright, as a viewer shows it (see the module docstring).

  Raises NotAnImage if Pillow cannot identify the file; errors.Error if it is missing, has
  more than max_pixels pixels (checked before decoding) or does not decode. Each names the
  file."""
  try:
    with _pillow_pixel_check_off(), Image.open(path) as image:
      _check_pixels(path, image.size, max_pixels)
      ImageOps.exif_transpose(image, in_place=True)
      return to_rgb(image)
  except FileNotFoundError as e:
    raise errors.Error("%s: no such file" % path) from e
  except UnidentifiedImageError as e:
    raise NotAnImage("%s: not an image (Pillow cannot identify it)" % path) from e
  except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
    raise errors.Error("%s: unreadable image (%s)" % (path, e)) from e
