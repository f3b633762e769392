"""Drawing the PNGs a person looks at, with Pillow only: a white canvas, the class colours, a mask
blended over a photo, and a saver whose equal inputs give equal bytes (no time or text chunks).
Shared by evaluation's figures, prediction's overlays and the search picture."""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# Class colours, in partition.CLASS_NAMES order: pet, background, border.
PALETTE = np.array([[255, 140, 0], [40, 60, 120], [255, 235, 80]], np.uint8)
WHITE, GREY, DARK = (255, 255, 255), (200, 200, 200), (30, 30, 30)
FONT = ImageFont.load_default(size=14)


def save(image, path):
  """Writes a PIL image to path (or a file object) as a PNG without optimisation."""
  image.save(path, format="PNG", optimize=False)


def canvas(width, height):
  """(a white RGB image of width x height pixels, its ImageDraw)."""
  image = Image.new("RGB", (width, height), WHITE)
  return image, ImageDraw.Draw(image)


def colour_mask(mask):
  """[h, w] class ids → [h, w, 3] uint8 colours."""
  return PALETTE[np.asarray(mask, np.intp)]


def overlay(image, mask, alpha=0.5):
  """The mask's colours blended over an RGB uint8 image (integer arithmetic: exact)."""
  blend = (image.astype(np.uint16) * round((1 - alpha) * 256) +
           colour_mask(mask).astype(np.uint16) * round(alpha * 256)) >> 8
  return blend.astype(np.uint8)
