"""The tune stage's picture: the best validation IoU so far against the trial number, and the
validation IoU against each searched hyperparameter. Pillow only, as seg.drawing.canvas: equal
trials give equal bytes."""

import math

from seg.drawing import canvas

PANEL_W, PANEL_H, COLUMNS = 360, 260, 3
_MARGIN = 50  # pixels left and below each plot, for its ticks
_DOT, _BEST, _LINE = (170, 170, 170), (30, 90, 200), (30, 90, 200)


def _scale(values, log=False):
  """A function mapping a value to [0, 1] over the values' range (log10 if log), and the range's
  two ends."""
  transform = math.log10 if log else float
  low, high = min(map(transform, values)), max(map(transform, values))
  if low == high:
    low, high = low - 0.5, high + 0.5
  return lambda v: (transform(v) - low) / (high - low), (low, high)


def _panel(draw, origin, title, points, x_ticks, y_scale, best_line=None):
  """One plot at origin (left, top): points [(x in [0,1], y value, the best trial?)],
  x_ticks [(x in [0,1], label)], and optionally the best-so-far line [(x, y value)]."""
  left, top = origin[0] + _MARGIN, origin[1] + 24
  width, height = PANEL_W - _MARGIN - 16, PANEL_H - 24 - _MARGIN
  scale, (low, high) = y_scale

  def at(x, y):
    return (left + x * width, top + height - scale(y) * height)

  draw.text((origin[0] + 8, origin[1] + 4), title, fill=canvas.DARK, font=canvas.FONT)
  draw.rectangle([left, top, left + width, top + height], outline=canvas.DARK)
  for fraction in (0, 0.5, 1):
    y = top + height - fraction * height
    draw.line([left - 4, y, left, y], fill=canvas.DARK)
    draw.text((origin[0] + 4, y - 8), "%.3f" % (low + fraction * (high - low)),
              fill=canvas.DARK, font=canvas.FONT)
  for x, label in x_ticks:
    draw.line([left + x * width, top + height, left + x * width, top + height + 4],
              fill=canvas.DARK)
    draw.text((left + x * width - 12, top + height + 6), label, fill=canvas.DARK,
              font=canvas.FONT)
  if best_line:
    draw.line([at(x, y) for x, y in best_line], fill=_LINE, width=2)
  for x, y, best in sorted(points, key=lambda p: p[2]):  # the best drawn last, on top
    cx, cy = at(x, y)
    draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=_BEST if best else _DOT,
                 outline=canvas.DARK)


def _parameter_axis(parameter):
  """(x of a value in [0, 1], ticks) for a searched parameter: categorical values evenly
  spaced, a range from its low to its high end (log10 for a log range)."""
  if parameter.choices is not None:
    spots = {str(c): (i + 0.5) / len(parameter.choices) for i, c in enumerate(parameter.choices)}
    return (lambda v: spots[str(v)]), [(x, label[:10]) for label, x in spots.items()]
  scale, _ = _scale([parameter.low, parameter.high], parameter.log)
  ends = (parameter.low, parameter.high)
  return scale, [(scale(v), "%.3g" % v) for v in ends]


def _best_so_far(valued, trial_x):
  """The best-so-far line as points, a step: the best holds until a trial beats it."""
  best, line = None, []
  for r in valued:
    if best is not None and r["value"] > best:
      line.append((trial_x(r["trial"]), best))
    best = r["value"] if best is None else max(best, r["value"])
    line.append((trial_x(r["trial"]), best))
  return line


def save_search(rows, best, space, path):
  """Writes the picture of a search's trials (seg.tuning.tune's rows) to path: the best row in
  blue; failed trials (no value) left out and counted in the title."""
  valued = [r for r in rows if r["value"] is not None]
  panels = 1 + len(space.parameters)
  image, draw = canvas.canvas(PANEL_W * min(COLUMNS, panels),
                              PANEL_H * math.ceil(panels / COLUMNS) + 30)
  failed = len(rows) - len(valued)
  draw.text((8, 6), "tune: %d trials%s; validation IoU of each trial (dots; the best in blue)"
            % (len(rows), ", %d diverged" % failed if failed else ""), fill=canvas.DARK,
            font=canvas.FONT)
  y_scale = _scale([r["value"] for r in valued])
  trial_x, _ = _scale([1, len(rows)])
  _panel(draw, (0, 30), "best so far (line), by trial",
         [(trial_x(r["trial"]), r["value"], r is best) for r in valued],
         [(trial_x(1), "1"), (trial_x(len(rows)), str(len(rows)))], y_scale,
         best_line=_best_so_far(valued, trial_x))
  for k, parameter in enumerate(space.parameters, 1):
    x_of, ticks = _parameter_axis(parameter)
    _panel(draw, ((k % COLUMNS) * PANEL_W, 30 + (k // COLUMNS) * PANEL_H),
           parameter.name + (" (log scale)" if parameter.log else ""),
           [(x_of(r["params"][parameter.name]), r["value"], r is best) for r in valued], ticks,
           y_scale)
  canvas.save(image, path)
