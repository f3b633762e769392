"""Masks for a user's own photos, from an exported SavedModel (seg.serve.export).

Files and pixels: seg.serve.photos says which files a run tries and how each image is read. A
run ends by listing every file it did not segment and why, skipped and failed apart, then the
count of files segmented.

Exit status 1 if a file failed (an image that does not decode or is over the pixel limit, an
--image that is missing or not an image) or if no file was segmented; else 0, also when the
folder held files that are not images: a photo folder often holds notes and sidecar files,
and the listing names them.

Outputs, at the photo's own size, each written atomically with the user's umask:
<name>.mask.png (class ids as a palette PNG: the pixel values are the ids, viewers show the
class colours), <name>.overlay.png (the mask blended over the photo), and when asked
<name>.probabilities.npy (float32 [h, w, classes], calibrated).
"""

import dataclasses
import io
import os

import numpy as np
from PIL import Image

from pipeline import errors
from pipeline import files
from seg.drawing import canvas
from seg.serve import photos


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


# --- Outputs --------------------------------------------------------------------------------------
def _png(image):
  buffer = io.BytesIO()
  canvas.save(image, buffer)
  return buffer.getvalue()


def _npy(array):
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(array, np.float32), allow_pickle=False)
  return buffer.getbuffer()  # the buffer itself: no second photo-sized copy


def mask_png(class_ids):
  """A palette PNG whose pixel values are the class ids."""
  image = Image.fromarray(class_ids.astype(np.uint8), mode="P")
  image.putpalette(canvas.PALETTE.ravel().tolist())
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
              name + ".overlay.png": _png(Image.fromarray(canvas.overlay(image, class_ids)))}
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


def predict(serve, inputs, output_dir, log, max_pixels=photos.DEFAULT_MAX_PIXELS,
            probabilities=False):
  """Segments every image of inputs (a photos.Inputs) and returns a Report. A file not segmented
  gets one line on log ("note: skipped PATH: reason" or "failed: PATH: reason"), and the
  others are still done. probabilities: also write <name>.probabilities.npy."""
  os.makedirs(output_dir, exist_ok=True)
  report = Report([], list(inputs.skipped), [])
  for line in inputs.skipped:
    print("note: skipped %s" % line, file=log, flush=True)
  paths = inputs.named + inputs.found
  for index, (path, name) in enumerate(zip(paths, output_names(paths))):
    try:
      image = photos.read_image(path, max_pixels)
    except errors.Error as e:
      # Not an image: skipped in a folder (sidecar files are common), failed if named.
      skip = isinstance(e, photos.NotAnImage) and index >= len(inputs.named)
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
