"""The evaluation's figures: the gallery, the confusion matrix and the reliability diagram
(seg.drawing.canvas draws them)."""

import numpy as np
from PIL import Image

from seg.drawing import canvas

ERROR = np.array([230, 30, 30], np.uint8)
CELL = 128  # gallery cell size in pixels
GALLERY_SIZE = 12  # pets in the gallery by default: the split's first, by pet id
_TEXT = {"fill": canvas.DARK, "font": canvas.FONT}  # dark text


def errors_image(image, truth, prediction):
  """The image in grey, with wrongly classified pixels in red."""
  grey = (image.astype(np.uint16).sum(-1) // 3).astype(np.uint8)
  out = np.repeat(grey[..., None], 3, -1)
  out[truth != prediction] = ERROR
  return out


def _legend(draw, x, y, class_names):
  for i, name in enumerate(class_names):
    draw.rectangle([x, y + 2, x + 14, y + 16], fill=tuple(canvas.PALETTE[i].tolist()),
                   outline=canvas.DARK)
    draw.text((x + 20, y), name, **_TEXT)
    x += 40 + int(draw.textlength(name, font=canvas.FONT))
  draw.rectangle([x, y + 2, x + 14, y + 16], fill=tuple(ERROR.tolist()), outline=canvas.DARK)
  draw.text((x + 20, y), "wrong", **_TEXT)


def gallery(outputs, count, class_names, title):
  """Rows of pets: photo, true mask, predicted mask, errors (from inference.SplitOutputs)."""
  count = min(count, len(outputs.pet_ids))
  predictions = outputs.predictions()
  columns = ("photo", "true mask", "predicted", "errors (red)")
  label_width, top = 170, 60
  image, draw = canvas.canvas(label_width + CELL * len(columns), top + CELL * count + 30)
  draw.text((8, 6), title, **_TEXT)
  for c, name in enumerate(columns):
    draw.text((label_width + c * CELL + 6, top - 20), name, **_TEXT)
  for r in range(count):
    photo, truth, predicted = outputs.images[r], outputs.masks[r], predictions[r]
    pixels = np.mean(truth == predicted) * 100
    draw.text((8, top + r * CELL + 8), outputs.pet_ids[r][:20], **_TEXT)
    draw.text((8, top + r * CELL + 28), "%.1f%% right" % pixels, **_TEXT)
    for c, cell in enumerate((photo, canvas.colour_mask(truth), canvas.colour_mask(predicted),
                              errors_image(photo, truth, predicted))):
      tile = Image.fromarray(cell).resize((CELL - 4, CELL - 4), Image.NEAREST)
      image.paste(tile, (label_width + c * CELL + 2, top + r * CELL + 2))
  _legend(draw, label_width, top + count * CELL + 6, class_names)
  return image


def _heat(fraction):
  """White (0) to dark blue (1)."""
  return tuple(int(round(255 - fraction * (255 - v))) for v in (20, 60, 140))


def confusion_matrix(matrix, class_names, title):
  """A [true, predicted] matrix as coloured cells with counts and row percentages."""
  matrix = np.asarray(matrix, np.int64)
  n, size, left, top = len(class_names), 130, 120, 70
  image, draw = canvas.canvas(left + n * size + 20, top + n * size + 40)
  draw.text((8, 6), title, **_TEXT)
  draw.text((left, top - 40), "predicted class (columns)", **_TEXT)
  draw.text((8, top - 40), "true class", **_TEXT)
  draw.text((8, top - 20), "(rows)", **_TEXT)
  for j, name in enumerate(class_names):
    draw.text((left + j * size + 8, top - 20), name, **_TEXT)
  for i, name in enumerate(class_names):
    draw.text((8, top + i * size + size // 2 - 8), name, **_TEXT)
    row_total = max(1, int(matrix[i].sum()))
    for j in range(n):
      fraction = int(matrix[i, j]) / row_total
      box = [left + j * size, top + i * size, left + (j + 1) * size - 2,
             top + (i + 1) * size - 2]
      draw.rectangle(box, fill=_heat(fraction), outline=canvas.GREY)
      ink = canvas.WHITE if fraction > 0.5 else canvas.DARK
      draw.text((box[0] + 8, box[1] + size // 2 - 20), "%.1f%%" % (100 * fraction), fill=ink,
                font=canvas.FONT)
      draw.text((box[0] + 8, box[1] + size // 2), "%d px" % matrix[i, j], fill=ink,
                font=canvas.FONT)
  draw.text((left, top + n * size + 10), "each row: the true class's pixels, by prediction",
            **_TEXT)
  return image


def reliability_diagram(before, after, temperature, title):
  """Accuracy against confidence per bin, before and after temperature scaling
  (metrics.reliability dicts), with the diagonal of perfect calibration."""
  bins = len(before["count"])
  width, height, left, bottom, top = 620, 470, 60, 80, 60
  plot_w, plot_h = width - left - 20, height - top - bottom
  image, draw = canvas.canvas(width, height)
  draw.text((8, 6), title, **_TEXT)
  x0, y0 = left, top + plot_h

  def point(x, y):
    return (x0 + x * plot_w, y0 - y * plot_h)

  draw.rectangle([x0, top, x0 + plot_w, y0], outline=canvas.DARK)
  for tick in range(0, 11, 2):
    x, y = point(tick / 10, tick / 10)
    draw.line([x, y0, x, y0 + 4], fill=canvas.DARK)
    draw.text((x - 10, y0 + 6), "%.1f" % (tick / 10), **_TEXT)
    draw.line([x0 - 4, y, x0, y], fill=canvas.DARK)
    draw.text((8, y - 8), "%.1f" % (tick / 10), **_TEXT)
  draw.line([point(0, 0), point(1, 1)], fill=canvas.GREY, width=2)
  colours = ((before, (150, 150, 150), "before: ECE %.4f" % before["ece"]),
             (after, (30, 90, 200), "after (T = %.3f): ECE %.4f" % (temperature, after["ece"])))
  bar = 1.0 / bins / 2
  for k, (curve, colour, _) in enumerate(colours):
    for b in range(bins):
      if curve["count"][b]:
        x = b / bins + k * bar
        draw.rectangle([point(x, curve["accuracy"][b]), point(x + bar, 0)], fill=colour)
  draw.text((x0 + plot_w // 2 - 130, y0 + 26), "confidence (top-class probability, per pixel)",
            **_TEXT)
  draw.text((8, top - 24), "accuracy", **_TEXT)
  for k, (_, colour, label) in enumerate(colours):
    x = x0 + 10 + 280 * k
    draw.rectangle([x, y0 + 50, x + 14, y0 + 64], fill=colour)
    draw.text((x + 20, y0 + 48), label, **_TEXT)
  return image
