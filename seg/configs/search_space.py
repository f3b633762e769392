"""//seg:tune's search space: a JSON file that names, for each hyperparameter it searches, the
values a trial may take. Only the hyperparameters of the seed's file format are searched (the
best trial is written in that format, which //seg:train --hyperparam_fn_path reads):

  {"model_arch":      {"choices": ["mobilenetv2", "vgg19"]},
   "batch_size":      {"choices": [20, 40, 60]},
   "epochs":          {"low": 4, "high": 16},
   "steps_per_epoch": {"low": 40, "high": 120, "step": 4},
   "learning_rate":   {"low": 0.0001, "high": 0.01, "log": true}}

A parameter is either {"choices": [...]} (categorical) or a range {"low", "high"} with optional
"log" (log-uniform: low > 0) and, for an integer hyperparameter, "step" (the grid low, low + step,
..., high; not with log). A range is of integers or of numbers as the hyperparameter is
(seg.configs.config's TrainConfig). Every value a trial may take must pass seg.configs.config's
checks of the training config (batch_size ≥ 1, divided by micro_batches, ...): every choice, every
value of an integer range, and both ends of a number range are checked.
"""

import dataclasses
import json
import typing

from pipeline import errors
from pipeline import user_input
from seg.configs import config
from seg.configs import hyperparam_file

NAMES = hyperparam_file.SEARCHABLE
_RANGE_KEYS = {"low", "high", "step", "log"}


@dataclasses.dataclass(frozen=True)
class Parameter:
  """One searched hyperparameter: kind "categorical" with choices (a tuple), or kind "int" or
  "float" (its training config field's type) with a range [low, high]."""
  name: str
  kind: str
  choices: typing.Optional[tuple] = None
  low: typing.Union[int, float, None] = None
  high: typing.Union[int, float, None] = None
  step: typing.Union[int, float, None] = None
  log: bool = False

  def values_to_check(self):
    """The values whose training configs load checks: the choices, every value of an integer
    range (a batch size that --micro_batches does not divide may lie inside), or the two ends
    of a number range."""
    if self.choices is not None:
      return list(self.choices)
    if self.kind == "int":
      return list(range(self.low, self.high + 1, self.step or 1))
    return [self.low, self.high]

  def record(self):
    """Its JSON form: the space file's keys (unset ones left out) and its kind."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if v is not None and k != "name" and not (k == "log" and not v)}


@dataclasses.dataclass(frozen=True)
class Space:
  """A validated search space (load): parameters in NAMES order, and the file it came from."""
  parameters: tuple
  path: str

  def record(self):
    """{name: parameter record}: what the tune stage's key holds (not the file's path)."""
    return {p.name: p.record() for p in self.parameters}

  @property
  def names(self):
    return tuple(p.name for p in self.parameters)


def _number(value):
  return type(value) in (int, float)  # not bool


def _field_type(name):
  """int, float or str: the type of the training config field of that name."""
  fields = dataclasses.fields(config.ModelConfig) + dataclasses.fields(config.TrainConfig)
  return next(f.type for f in fields if f.name == name)


def _parameter(name, spec, where):
  """A Parameter from a space file's entry; raises errors.Error naming what is wrong."""
  if not isinstance(spec, dict):
    raise errors.Error("%s: %r must be an object such as {\"choices\": [...]} or "
                       "{\"low\": ..., \"high\": ...}, not %s" % (where, name, json.dumps(spec)))
  if "choices" in spec:
    choices = spec["choices"]
    if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
      raise errors.Error("%s: %r: \"choices\" takes a non-empty list and no other key (got %s)"
                         % (where, name, json.dumps(spec)))
    if len(set(map(json.dumps, choices))) != len(choices):
      raise errors.Error("%s: %r lists a choice twice: %s" % (where, name, json.dumps(choices)))
    return Parameter(name, "categorical", choices=tuple(choices))
  unknown = set(spec) - _RANGE_KEYS
  low, high, step, log = (spec.get(k) for k in ("low", "high", "step", "log"))
  if unknown or not (_number(low) and _number(high)):
    raise errors.Error("%s: %r needs \"choices\", or numbers \"low\" and \"high\" (optional "
                       "\"step\", \"log\"); got %s" % (where, name, json.dumps(spec)))
  if not low < high:
    raise errors.Error("%s: %r has low %s ≥ high %s: give low < high" % (where, name, low, high))
  if log not in (None, True, False) or (step is not None and not (_number(step) and step > 0)):
    raise errors.Error("%s: %r: \"log\" is true or false, \"step\" a number > 0 (got %s)"
                       % (where, name, json.dumps(spec)))
  if log and (step is not None or low <= 0):
    raise errors.Error("%s: %r: a log-uniform range needs low > 0 and no step (got %s)"
                       % (where, name, json.dumps(spec)))
  kind = _field_type(name).__name__
  if kind == "str" or (kind == "int" and not all(type(v) is int for v in (low, high, step or 1))):
    raise errors.Error("%s: %r is %s: give it %s (got %s)" % (
        where, name, "a name" if kind == "str" else "an integer",
        "\"choices\"" if kind == "str" else "integer \"low\", \"high\" and \"step\", or "
        "\"choices\"", json.dumps(spec)))
  if step is not None and (kind == "float" or (high - low) % step):
    raise errors.Error("%s: %r: \"step\" is for integer ranges, and must divide high - low "
                       "(got %s)" % (where, name, json.dumps(spec)))
  if kind == "float":
    low, high = float(low), float(high)  # as seg.configs.config stores a float field's JSON integer
  return Parameter(name, kind, low=low, high=high, step=step, log=bool(log))


def load(path, check_config, shown=None):
  """The Space of a JSON file; raises errors.Error naming the file, the parameter and the fix.

  check_config(overrides): raises errors.Error if the training config with these flag
  overrides ({name: value}) is invalid; load calls it with every value of
  Parameter.values_to_check, each parameter alone, so that a value no trial could train with
  is refused here.
  shown: how errors and Space.path name the file (default: path).
  """
  where = "search space " + (shown or path)
  specs = user_input.read_json(path, "search space", shown=shown)
  if not specs:
    raise errors.Error("%s must hold a JSON object of parameters, e.g. {\"learning_rate\": "
                       "{\"low\": 0.0001, \"high\": 0.01, \"log\": true}}" % where)
  unknown = sorted(set(specs) - set(NAMES))
  if unknown:
    raise errors.Error("%s: unknown hyperparameter %s: it can search %s"
                       % (where, ", ".join(map(repr, unknown)), ", ".join(NAMES)))
  parameters = tuple(_parameter(name, specs[name], where) for name in NAMES if name in specs)
  for parameter in parameters:
    for value in parameter.values_to_check():
      try:
        check_config({parameter.name: value})
      except errors.Error as e:
        raise errors.Error("%s: %r can take %s, which training refuses: %s"
                           % (where, parameter.name, json.dumps(value), e)) from e
  return Space(parameters, shown or path)
