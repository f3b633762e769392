"""Masks for a user's own photos, from an exported SavedModel (seg.export).

Each image is read as a person would expect (EXIF orientation applied; CMYK, grey, palette
and alpha images converted to RGB), segmented at the model's size and brought back to its
own size, and written as three files: <name>.mask.png (class ids as a palette PNG: the pixel
values are the ids, viewers show the class colours), <name>.probabilities.npy (float32
[h, w, classes], calibrated), and <name>.overlay.png (the mask blended over the photo).
"""

import dataclasses
import io
import os

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from pipeline import errors
from pipeline import store
from seg import pictures

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Written:
  source: str
  files: tuple


# --- Inputs ---------------------------------------------------------------------------------------
def image_paths(images, folder):
  """The --image paths, then the image files of --images (sorted); an error if none."""
  paths = list(images or [])
  if folder:
    if not os.path.isdir(folder):
      raise errors.Error("--images=%s is not a folder" % folder)
    found = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_SUFFIXES))
    if not found:
      raise errors.Error("--images=%s holds no image files (%s)"
                         % (folder, " ".join(IMAGE_SUFFIXES)))
    paths += found
  if not paths:
    raise errors.Error("give --image=PATH (repeatable) or --images=DIR")
  return paths


def read_image(path):
  """uint8 [h, w, 3] RGB, upright; errors.Error naming the file if it cannot be read."""
  try:
    with Image.open(path) as image:
      return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
  except FileNotFoundError as e:
    raise errors.Error("%s: no such file" % path) from e
  except UnidentifiedImageError as e:
    raise errors.Error("%s: not an image that Pillow can read" % path) from e
  except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
    raise errors.Error("%s: unreadable image (%s)" % (path, e)) from e


# --- Outputs --------------------------------------------------------------------------------------
def _png(image):
  buffer = io.BytesIO()
  pictures.save(image, buffer)
  return buffer.getvalue()


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


def write(output_dir, name, image, class_ids, probabilities):
  """The three files of one image, each written atomically; returns their paths."""
  npy = io.BytesIO()
  np.save(npy, probabilities.astype(np.float32), allow_pickle=False)
  files = {name + ".mask.png": mask_png(class_ids),
           name + ".probabilities.npy": npy.getvalue(),
           name + ".overlay.png": _png(Image.fromarray(pictures.overlay(image, class_ids)))}
  for file_name, data in files.items():
    store.write_file_atomically(os.path.join(output_dir, file_name), data)
  return tuple(os.path.join(output_dir, n) for n in files)


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


def predict(serve, paths, output_dir, log):
  """Segments every readable image; returns ([Written], [error lines]). An unreadable image
  is reported and skipped, and the others are still done."""
  os.makedirs(output_dir, exist_ok=True)
  written, failed = [], []
  for path, name in zip(paths, output_names(paths)):
    try:
      image = read_image(path)
    except errors.Error as e:
      failed.append(str(e))
      print("error: %s" % e, file=log, flush=True)
      continue
    result = serve(images=image[None])
    files = write(output_dir, name, image, result["class_ids"].numpy()[0],
                  result["probabilities"].numpy()[0])
    written.append(Written(path, files))
    print("%s → %s.{mask.png, probabilities.npy, overlay.png} (%dx%d)"
          % (path, os.path.join(output_dir, name), image.shape[1], image.shape[0]), flush=True)
  return written, failed
