"""Masks for a user's own photos, from an exported SavedModel (seg.export).

Files. Every --image, then every file of --images=DIR in name order, whatever its suffix:
Pillow decides from the content whether it is an image. In the folder, hidden files (".*"),
macOS AppleDouble files ("._*"), subfolders and other entries that are not regular files
are skipped with a note, and a file Pillow cannot identify is skipped as not an image. A run
ends by listing every file it did not segment and why, skipped and failed apart, then the
count of files segmented.

Exit status 1 if a file failed (an image that does not decode or is over the pixel limit, an
--image that is missing or not an image) or if no file was segmented; else 0, also when the
folder held files that are not images: a photo folder often holds notes and sidecar files,
and the listing names them.

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

Outputs, at the photo's own size, each written atomically with the user's umask:
<name>.mask.png (class ids as a palette PNG: the pixel values are the ids, viewers show the
class colours), <name>.overlay.png (the mask blended over the photo), and when asked
<name>.probabilities.npy (float32 [h, w, classes], calibrated).
"""

import contextlib
import dataclasses
import io
import os

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from pipeline import errors
from pipeline import files
from seg import pictures

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


@dataclasses.dataclass(frozen=True)
class Written:
  """An image segmented: its path and its output files' paths."""
  source: str
  files: tuple


@dataclasses.dataclass
class Report:
  """What a run did with each file: written ([Written]), skipped and failed ("PATH: reason")."""
  written: list
  skipped: list
  failed: list


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


# --- Outputs --------------------------------------------------------------------------------------
def _png(image):
  buffer = io.BytesIO()
  pictures.save(image, buffer)
  return buffer.getvalue()


def _npy(array):
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(array, np.float32), allow_pickle=False)
  return buffer.getbuffer()  # the buffer itself: no second photo-sized copy


def mask_png(class_ids):
  """A palette PNG whose pixel values are the class ids."""
  image = Image.fromarray(class_ids.astype(np.uint8), mode="P")
  image.putpalette(pictures.PALETTE.ravel().tolist())
  return _png(image)


def output_names(paths):
  """A distinct output name per input: its file name without suffix (-2, -3... on clashes)."""
  names, used = [], set()
  for path in paths:
    base = name = os.path.splitext(os.path.basename(path))[0]
    count = 1
    while name in used:
      count += 1
      name = "%s-%d" % (base, count)
    used.add(name)
    names.append(name)
  return names


def write(output_dir, name, image, class_ids, probabilities=None):
  """The mask and overlay PNGs of one image, and its probabilities if given (float32
  [h, w, classes] → .npy), each written atomically; returns their paths."""
  contents = {name + ".mask.png": mask_png(class_ids),
              name + ".overlay.png": _png(Image.fromarray(pictures.overlay(image, class_ids)))}
  if probabilities is not None:
    contents[name + ".probabilities.npy"] = _npy(probabilities)
  for file_name, data in contents.items():
    files.write_atomically(os.path.join(output_dir, file_name), data)
  return tuple(os.path.join(output_dir, n) for n in contents)


# --- The model ------------------------------------------------------------------------------------
def saved_model_dir(path):
  """--model: a SavedModel folder, or an export output that holds saved_model/."""
  for candidate in (path, os.path.join(path, "saved_model")):
    if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
      return candidate
  raise errors.Error("--model=%s is not a SavedModel (no saved_model.pb in it or in its "
                     "saved_model/): give the export stage's output folder" % path)


def load(path):
  """The serving function of a SavedModel: uint8 [1, h, w, 3] → dict of tensors."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (after determinism.apply)
  return tf.saved_model.load(saved_model_dir(path)).signatures["serving_default"]


def _segment(serve, image, probabilities):
  """(class ids int [h, w], calibrated probabilities float32 [h, w, classes] or None)."""
  result = serve(images=image[None])
  return (result["class_ids"].numpy()[0],
          result["probabilities"].numpy()[0] if probabilities else None)


def _written_line(path, output_dir, name, written, image):
  """"PHOTO → OUT/NAME.{mask.png, overlay.png} (WIDTHxHEIGHT)"."""
  suffixes = ", ".join(os.path.basename(f)[len(name) + 1:] for f in written)
  return "%s → %s.{%s} (%dx%d)" % (path, os.path.join(output_dir, name), suffixes,
                                   image.shape[1], image.shape[0])


def predict(serve, inputs, output_dir, log, max_pixels=DEFAULT_MAX_PIXELS,
            probabilities=False):
  """Segments every image of inputs (an Inputs) and returns a Report. A file not segmented
  gets one line on log ("note: skipped PATH: reason" or "failed: PATH: reason"), and the
  others are still done. probabilities: also write <name>.probabilities.npy."""
  os.makedirs(output_dir, exist_ok=True)
  report = Report([], list(inputs.skipped), [])
  for line in inputs.skipped:
    print("note: skipped %s" % line, file=log, flush=True)
  paths = inputs.named + inputs.found
  for index, (path, name) in enumerate(zip(paths, output_names(paths))):
    try:
      image = read_image(path, max_pixels)
    except errors.Error as e:
      # Not an image: skipped in a folder (sidecar files are common), failed if named.
      skip = isinstance(e, NotAnImage) and index >= len(inputs.named)
      (report.skipped if skip else report.failed).append(str(e))
      print("%s %s" % ("note: skipped" if skip else "failed:", e), file=log, flush=True)
      continue
    written = write(output_dir, name, image, *_segment(serve, image, probabilities))
    report.written.append(Written(path, written))
    print(_written_line(path, output_dir, name, written, image), flush=True)
  return report


def summary(report, inputs, output_dir):
  """The lines closing a run: every file not segmented and why, skipped and failed apart,
  then the count."""
  lines = []
  for title, entries in (("skipped", report.skipped), ("failed", report.failed)):
    if entries:
      lines.append("%s (%d):" % (title, len(entries)))
      lines += ["  " + entry for entry in entries]
  lines.append("%d of %d files segmented; files in %s"
               % (len(report.written), inputs.count(), os.path.abspath(output_dir)))
  return lines
