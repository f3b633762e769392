"""What benchmarks/full_size.py runs, checks and reports, free of processes and TensorFlow: the
steps of the job (one stage binary each), the check that a step computed its own stages and
nothing else, the table and its ratios, the metrics of two modes side by side, and the
arithmetic of the ETA."""

import dataclasses
import typing

from pipeline import errors
from pipeline import text_table


@dataclasses.dataclass(frozen=True)
class Step:
  """One stage binary run as a child process: module, run with `python -m`; stages, those it
  must compute (the stages before them are cache hits in its store); data: whether its stages
  hold no determinism switch in their keys, so one run serves every mode."""
  name: str
  module: str
  stages: tuple
  data: bool = False


# download computes the synthetic twin's archives too: no binary makes them alone.
DATA_STEPS = (Step("download", "data_tools.download_main", ("synthetic", "download"), True),
              Step("partition", "data_tools.partition_main", ("partition",), True))
MODEL_STEPS = (Step("train", "seg.train_main", ("train",)),
               Step("calibrate", "seg.calibrate_main", ("calibrate",)),
               Step("evaluate", "seg.evaluate_main", ("evaluate",)))
# The determinism flags of each mode, as the stage binaries take them; the first of a pair is
# the numerator of the ratios.
MODES = {"portable": (), "nondeterministic": ("--nodeterministic", "--noportable")}
TEST_IOU = ("evaluate", "test_mean_iou")  # evaluate's headline metric


@dataclasses.dataclass(frozen=True)
class Measured:
  """One step's run: its command, the child's wall time, CPU time and peak RSS (os.wait4's
  rusage: the child and the processes it waited for), and --result_json's "stages" (each
  stage's key, output, cache_hit and metrics). stage_seconds: {stage: seconds} of the stages
  it computed, as their manifests record them (the build alone, without the process's start)."""
  step: str
  argv: tuple
  wall_seconds: float
  user_seconds: float
  system_seconds: float
  peak_rss_bytes: int
  stages: tuple
  stage_seconds: dict = dataclasses.field(default_factory=dict)

  @property
  def cpu_seconds(self):
    return self.user_seconds + self.system_seconds

  @property
  def computed(self):
    """The stages this run computed (not cache hits), in the order they ended."""
    return [s["stage"] for s in self.stages if not s["cache_hit"]]

  def metrics(self):
    """{"stage.metric": value} of every stage it lists, hits included."""
    return {"%s.%s" % (s["stage"], name): value
            for s in self.stages for name, value in (s.get("metrics") or {}).items()}

  def record(self):
    """For the JSON file."""
    return dict(dataclasses.asdict(self), argv=list(self.argv), stages=list(self.stages),
                cpu_seconds=self.cpu_seconds, computed=self.computed)


def check_computed(step, measured, store):
  """Raises errors.Error unless measured computed exactly step.stages, so that its figures are
  theirs; a data step may also have computed nothing (the twin taken from the store). store:
  its root, for the message."""
  computed = measured.computed
  if computed == list(step.stages) or (step.data and not computed):
    return
  if step.data:
    fix = ("the store held some of them only: to time them, remove it or give another "
           "--data_store")
  else:
    fix = ("the store held the data stages only, made with the benchmark's data flags: a stage "
           "flag after -- that changes a data stage (--synthetic_quirks, --examples_per_shard) "
           "makes it compute them again; drop it")
  raise errors.Error("the %s step (%s) computed [%s] in the store %s, where it must compute "
                     "exactly [%s]%s: %s" % (
                         step.name, " ".join(measured.argv), ", ".join(computed), store,
                         ", ".join(step.stages), " or nothing" if step.data else "", fix))


def taken_from_store(measured):
  """Whether a step's stages were all cache hits (a data step that found the twin stored)."""
  return not measured.computed


def total(measured):
  """{"wall_seconds", "cpu_seconds" (sums), "peak_rss_bytes" (the largest)} of Measured runs."""
  return {"wall_seconds": sum(m.wall_seconds for m in measured),
          "cpu_seconds": sum(m.cpu_seconds for m in measured),
          "peak_rss_bytes": max(m.peak_rss_bytes for m in measured)}


def ratio(numerator, denominator):
  """numerator / denominator, or None where either is missing or the denominator is 0."""
  if numerator is None or not denominator:
    return None
  return numerator / denominator


def duration(seconds):
  """seconds as "1h02m05s", "12m05s" or "45.2s"."""
  if seconds < 60:
    return "%.1fs" % seconds
  minutes, secs = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return "%dh%02dm%02ds" % (hours, minutes, secs) if hours else "%dm%02ds" % (minutes, secs)


def gigabytes(count):
  """A count of bytes as "2.01 GB" (10^9 bytes)."""
  return "%.2f GB" % (count / 1e9)


def rows(data, modes):
  """{row label: {mode: figures}}: each data step (the same Measured in every mode), each
  model step, the model stages' total and the whole job's. data: [Measured]; modes:
  {mode: [Measured] of MODEL_STEPS}. Figures: {"wall_seconds", "cpu_seconds",
  "peak_rss_bytes"}."""
  found = {}
  for measured in data:
    found[measured.step] = {mode: total([measured]) for mode in modes}
  for index, step in enumerate(MODEL_STEPS):
    found[step.name] = {mode: total([runs[index]]) for mode, runs in modes.items()}
  found["model stages"] = {mode: total(runs) for mode, runs in modes.items()}
  found["whole job"] = {mode: total(list(data) + list(runs)) for mode, runs in modes.items()}
  return found


def wall_ratios(table_rows):
  """{row label: portable wall / nondeterministic wall}, None where a mode was not run."""
  first, second = MODES
  return {label: ratio(figures.get(first, {}).get("wall_seconds"),
                       figures.get(second, {}).get("wall_seconds"))
          for label, figures in table_rows.items()}


# The table's measures: title, field of the figures, how a cell shows it.
MEASURES = (("wall", "wall_seconds", duration), ("CPU (user+sys)", "cpu_seconds", duration),
            ("peak RSS", "peak_rss_bytes", gigabytes))


def table(data, modes):
  """The table's lines: two header lines, then a row per step and the two totals, with each
  mode's wall time, then (if both modes ran) the ratio of their wall times, then each mode's CPU
  time and peak RSS. Data steps ran once, for every mode: their ratio cell says "shared"."""
  table_rows = rows(data, modes)
  ratios = wall_ratios(table_rows) if len(modes) == len(MODES) else None
  lines = [[""] + _cells(lambda title, _, __: [title] + [""] * (len(modes) - 1),
                         "" if ratios else None),
           ["stage"] + _cells(lambda *_: list(modes), "ratio" if ratios else None)]
  stored = {m.step for m in data if taken_from_store(m)}
  data_steps = {m.step for m in data}
  for label, figures in table_rows.items():
    ratio_cell = None
    if ratios:
      ratio_cell = ("shared" if label in data_steps else
                    "—" if ratios[label] is None else "%.2fx" % ratios[label])
    lines.append([_label(label, stored, data_steps)] + _cells(
        lambda _, field, show, figures=figures: [show(figures[m][field]) for m in modes],
        ratio_cell))
  return text_table.aligned(lines)


def table_notes(data, modes):
  """The lines under table(data, modes): what its marks, ratio and totals mean."""
  stored = any(map(taken_from_store, data))
  return ["* made once, in the data store, for every mode (their keys hold no determinism "
          "switch)%s" % ("; cache hits here, so the whole job leaves out their making"
                         if stored else ""),
          "%sa total's peak RSS is its largest step's" % (
              "ratio: portable's wall time over nondeterministic's; "
              if len(modes) == len(MODES) else "")]


def _cells(per_measure, ratio_cell):
  """A line's cells after its first: per_measure(title, field, show)'s cells for each of
  MEASURES, and ratio_cell (None: no such column) after the wall times'."""
  cells = []
  for title, field, show in MEASURES:
    cells += per_measure(title, field, show)
    if field == "wall_seconds" and ratio_cell is not None:
      cells.append(ratio_cell)
  return cells


def _label(name, stored, data_steps):
  """A row's first cell: the stages of a step, marked if it ran once for both modes (*) or
  found its stages stored (a cache hit)."""
  step = {s.name: s for s in DATA_STEPS + MODEL_STEPS}.get(name)
  label = ", ".join(step.stages) if step else name
  if name in data_steps:
    label += " (cache hit)*" if name in stored else "*"
  return label


def metrics_by_mode(modes):
  """{mode: {"stage.metric": value}} from each mode's last step (evaluate, which lists every
  stage it read)."""
  return {mode: runs[-1].metrics() for mode, runs in modes.items()}


def metric_differences(by_mode):
  """{"stage.metric": [value of each mode]} of the metrics whose values differ between the
  modes (a metric one mode lacks counts as differing, with None for it)."""
  names = sorted({name for metrics in by_mode.values() for name in metrics})
  values = {name: [metrics.get(name) for metrics in by_mode.values()] for name in names}
  return {name: found for name, found in values.items() if len(set(map(repr, found))) > 1}


def test_iou(by_mode):
  """{mode: evaluate's test mean IoU}."""
  return {mode: metrics.get("%s.%s" % TEST_IOU) for mode, metrics in by_mode.items()}


def metrics_lines(by_mode):
  """The test IoU of each mode, and whether (and where) the modes' metrics differ."""
  lines = ["test IoU: " + ", ".join("%s %s" % (mode, "%.4f" % iou if iou is not None else "none")
                                    for mode, iou in test_iou(by_mode).items())]
  if len(by_mode) < 2:
    return lines
  differences = metric_differences(by_mode)
  if not differences:
    return lines + ["metrics differ: no (every metric of every stage is equal)"]
  lines.append("metrics differ: yes, %d of %d (%s):" % (
      len(differences), len({n for m in by_mode.values() for n in m}), ", ".join(by_mode)))
  lines += ["  %s: %s" % (name, ", ".join(repr(v) for v in found))
            for name, found in differences.items()]
  return lines


def training_left(epoch_starts, now):
  """Seconds left in training, from the epochs begun so far at the mean pace of those done, or
  None before one epoch is done. epoch_starts: [(epoch number from 1, epochs in all, time it
  began)]; now: the same clock's time. The validation pass of each epoch counts in its pace."""
  if len(epoch_starts) < 2:
    return None
  (first, _, began), (last, epochs, latest) = epoch_starts[0], epoch_starts[-1]
  pace = (latest - began) / (last - first)
  return max(0.0, latest + pace * (epochs - last + 1) - now)


def step_left(elapsed, training, prior):
  """Seconds left in a step: training's estimate if there is one, else its time in the mode
  run before (prior) less the time elapsed (elapsed), else None."""
  if training is not None:
    return training
  return None if prior is None else max(0.0, prior - elapsed)


def run_left(current, later):
  """(seconds, complete): the current step's seconds left plus each later step's expected
  seconds (None: not yet known, left out); complete is False if any was left out. seconds is
  None if none is known."""
  known = [s for s in [current] + list(later) if s is not None]
  return (sum(known) if known else None), len(known) == len(later) + 1


@dataclasses.dataclass(frozen=True)
class Estimate:
  """The progress line's figures: seconds elapsed in the step and in the run, the step's
  epoch ("5/12", or None), and the ETAs of run_left (run_complete: every step counted)."""
  elapsed_step: float
  elapsed_run: float
  epoch: typing.Optional[str]
  step_left: typing.Optional[float]
  run_left: typing.Optional[float]
  run_complete: bool

  def line(self, mode, step, position, steps):
    """"portable 4/8 train, epoch 5/12: 12m05s in it, about 6m10s left; run 1h02m05s, at
    least 45m00s left"."""
    words = "%s %d/%d %s%s: %s in it" % (mode, position, steps, step,
                                         ", epoch " + self.epoch if self.epoch else "",
                                         duration(self.elapsed_step))
    if self.step_left is not None:
      words += ", about %s left" % duration(self.step_left)
    words += "; run %s" % duration(self.elapsed_run)
    if self.run_left is not None:
      words += ", %s%s left" % ("about " if self.run_complete else "at least ",
                                duration(self.run_left))
    return words
