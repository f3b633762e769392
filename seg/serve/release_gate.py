"""The release gate: evaluate's test metrics against thresholds, before anything is released.

Its default policy is the seed's: the seed's release step served a model only if its calibrated
model's "Accuracy" was above 0.92, and refused it otherwise. Temperature scaling does not move
the most probable class, so that accuracy is evaluate's pixel accuracy; here a bound is met
when equal (at least 0.92). The other bounds are off by default.
"""

import dataclasses

from pipeline import errors

# (Gate field, the metrics.json value it bounds by dotted path, what it is called, kind of
# bound). A field set to its "off" value does not appear in the gate's checks.
BOUNDS = (("min_pixel_accuracy", "pixel_accuracy", "pixel accuracy", "min"),
          ("min_mean_iou", "mean_iou", "mean IoU", "min"),
          ("max_calibrated_ece", "ece.calibrated", "calibrated ECE", "max"))
_OFF = {"min": 0.0, "max": 1.0}


@dataclasses.dataclass(frozen=True)
class Check:
  """One bound measured: the flag, the metric's name and value, the bound, and whether the
  value is on the right side of it."""
  flag: str
  metric: str
  value: float
  bound: float
  passed: bool

  def line(self):
    """"pixel accuracy 0.9480 ≥ 0.92 (--min_pixel_accuracy)": the sign says which side."""
    sign = {(True, True): "≥", (True, False): "<", (False, True): "≤", (False, False): ">"}[
        (self.flag.startswith("min_"), self.passed)]
    return "%s %.4f %s %g (--%s)" % (self.metric, self.value, sign, self.bound, self.flag)


@dataclasses.dataclass(frozen=True)
class Gate:
  """Bounds on evaluate's test metrics, each a fraction in [0, 1]; 0 (a minimum) or 1 (a
  maximum) turns a bound off. Raises errors.Error naming a bound outside [0, 1]."""
  min_pixel_accuracy: float = 0.92
  min_mean_iou: float = 0.0
  max_calibrated_ece: float = 1.0

  def __post_init__(self):
    for name, value in self.record().items():
      if not 0.0 <= value <= 1.0:
        raise errors.Error("--%s=%g: a bound on a fraction lies in [0, 1] (%g turns it off)"
                           % (name, value, _OFF[name[:3]]))

  def record(self):
    return dataclasses.asdict(self)


def checks(gate, metrics):
  """[Check] of every bound of a Gate that is on, against metrics.json's content (a dict)."""
  found = []
  for field, path, name, kind in BOUNDS:
    bound = getattr(gate, field)
    if bound == _OFF[kind]:
      continue
    value = metrics
    for part in path.split("."):
      value = value[part]
    found.append(Check(field, name, value, bound,
                       value >= bound if kind == "min" else value <= bound))
  return found
