"""The seed's whole job at full size, portable against non-deterministic (issue 36).

What it runs: the synthetic twin of Oxford-IIIT Pet at the real dataset's size (--pets=7349
pets of about --pet_size=400 px, partitioned at --image_size=128), then, for each mode of
--modes, the seed's configuration (seg/configs/oxford_iiit_pet.json: MobileNetV2 with frozen
ImageNet weights, batch 60 in 2 micro-batches, 12 epochs of 84 steps) through train,
calibrate and evaluate:

  portable          reproseg's default: the same bits on every x86-64 CPU with AVX2 and FMA
  nondeterministic  --nodeterministic --noportable: the seed's fast_n_close

Each stage binary runs as a child process of its own and computes one step: download (which
makes the synthetic archives and the petset: no binary makes the archives alone), partition,
train, calibrate, evaluate. Each finds the outputs of the steps before it in its store as cache
hits; the run stops with an error if a step computed anything but its own stages. The data
stages hold no determinism switch in their keys, so they are made once, in --data_store (kept:
the next run takes them from it), and each mode runs in a fresh store of its own that holds
hard links to them, as `store check` seeds its scratch store. The modes are interleaved step
by step (train in each mode, then calibrate in each, then evaluate), so that a drift in the
machine's speed falls on both. No store reads another's outputs
by itself (--source takes archives of the real dataset, not a store).

What it measures, per step: the child's wall time, CPU time (user + system) and peak RSS
(os.wait4's rusage), and its --result_json (stages, keys, cache hits, metrics). It prints one
table (each step, the model stages' total and the whole job's, for each mode, and the
wall-time ratio portable/nondeterministic; a total's peak RSS is its largest step's), each
mode's test IoU and whether the modes' metrics differ, and writes the same as JSON (--output)
with the commit, CPU, cores, date and every command run. Progress goes to stderr: a line per
step done, and a status line with an ETA (on a terminal rewritten in place; in a log, a line a
minute and at each epoch). Each child's stdout and stderr go to files under the run folder.

How long: hours, not in CI. The portable job alone took 45m36s on 2 cores in issue 20's run by
hand (training 37m31s, peak RSS 3.4 GB), before micro-batches and the fixed-order kernels; the
non-deterministic job should be shorter. The ETA comes from train's epochs and, for a step's
second mode, from its first mode's time. For a check (about a minute here):

  --pets=40 --pet_size=40 --image_size=32 --epochs=2 --steps_per_epoch=2 --batch_size=8 \\
    --encoder_weights=random -- --eval_batch_size=8

How to run it:

  ./dev bazel run //benchmarks:full_size -- [flags] [-- stage flags]
  ./dev python -m benchmarks.full_size [flags] [-- stage flags]   (from the repository root)

The first builds the fixed-order kernels that portable mode runs; the second runs the stage
binaries from the source tree (as `store check` does) and needs them built first:
`./dev bazel build //kernels:fixed_order_ops.so` (it checks, and says so). Stage flags after
`--`, each as --name=value, go to train, calibrate and evaluate unchanged. The seed's
configuration needs MobileNetV2's ImageNet weights for 128 px in Keras' cache (~/.keras/models;
with the network, `./dev python -c "import keras; keras.applications.MobileNetV2(input_shape=
(128, 128, 3), include_top=False)"` fetches them). Offline, --encoder_weights=random runs the
same compute on an encoder of seeded random weights (benchmarks/random_encoder.py), whose
metrics say nothing of the seed's accuracy; or give a weights file's PATH.
Before anything runs, each mode's evaluate command is checked with --dry_run (flags, config,
weights, CPU) and portable mode's kernels are loaded once.

Record results in BENCHMARKS.md with the machine (lscpu), from a quiet machine.
"""

import datetime
import errno
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags

from benchmarks import job_report
from pipeline import child_process
from pipeline import cli
from pipeline import determinism
from pipeline import errors
from pipeline import files
from pipeline import inventory
from pipeline import store as storelib
from pipeline import user_input
from seg.configs import config

FLAGS = flags.FLAGS
flags.DEFINE_list("modes", list(job_report.MODES),
                  "Modes to run, in the order given at each step: portable (reproseg's "
                  "default), nondeterministic (--nodeterministic --noportable). A step's "
                  "second mode's ETA comes from its first mode's time.")
flags.DEFINE_integer("pets", 7349, "Pets in the synthetic twin (the stages' "
                     "--synthetic_images); the real dataset has 7,349.", lower_bound=1)
flags.DEFINE_integer("pet_size", 400, "Typical side of a twin's photo, in pixels (the stages' "
                     "--synthetic_image_size); the real photos are about 400 px.", lower_bound=32)
flags.DEFINE_integer("image_size", 128, "Side of the images that partition writes and the "
                     "model trains on, in pixels (the stages' --image_size): the seed's 128.")
flags.DEFINE_integer("epochs", None, "Training epochs. Default: the config's (the seed's 12).",
                     lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None,
                     "Training steps per epoch. Default: the config's (the seed's 84).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Examples per training step. Default: the config's "
                     "(the seed's 60, in 2 micro-batches).", lower_bound=1)
user_input.define_path("config", None, "The training config (the stages' --config). Default: "
                       "seg/configs/oxford_iiit_pet.json, the seed's.")
user_input.define_path("work_dir", "~/.cache/reproseg/full_size",
                       "Folder of the run folders (run-<UTC time>-*: the children's logs and "
                       "--result_json files, each mode's store, the JSON) and, by default, of "
                       "the data store.")
user_input.define_path("data_store", None,
                       "The store of the data stages (the twin's archives, the petset, the "
                       "splits: several GB at full size), kept: a later run with the same "
                       "--pets, --pet_size and --image_size takes them from it. Default: "
                       "<work_dir>/data. On the file system of --work_dir: the modes' stores "
                       "hold hard links to its outputs.")
flags.DEFINE_bool("keep_stores", False,
                  "Keep each mode's store (its train, calibrate and evaluate outputs, for "
                  "`store diff`). By default they are removed once measured; the data store "
                  "is always kept.")
flags.DEFINE_string("encoder_weights", "imagenet",
                    "The encoder's weights (the stages' --backbone_weights): imagenet, Keras' "
                    "ImageNet file (the seed's); random, seeded random weights made once into "
                    "--work_dir by benchmarks/random_encoder.py for the config's encoder (the "
                    "seed's compute, not its accuracy: for a machine without the ImageNet "
                    "file); none (with -- --nofreeze_backbone); or the PATH of a weights file.")
user_input.define_path("output", None,
                       "The JSON file to write. Default: full_size.json in the run folder.")

POLL_SECONDS = 0.5  # between looks at a running child
LOG_EVERY_SECONDS = 60  # between status lines in a log (stderr not a terminal)
EPOCH_LINE = re.compile(rb"^Epoch (\d+)/(\d+)\s*$")  # train's line as an epoch begins
TAIL_LINES = 20  # of a failed child's stderr, shown
# The stage flags the benchmark sets itself, and how.
SET_HERE = {"store": "--work_dir and --data_store choose the stores",
            "result_json": "each step writes its own in the run folder",
            "dry_run": "each step must run", "deterministic": "--modes chooses it",
            "portable": "--modes chooses it", "dataset": "the twin is --dataset=synthetic",
            "seed": "every step, the data steps included, keeps the default",
            "synthetic_images": "--pets gives it", "synthetic_image_size": "--pet_size gives it",
            "image_size": "--image_size gives it", "config": "--config gives it",
            "epochs": "--epochs gives it", "steps_per_epoch": "--steps_per_epoch gives it",
            "batch_size": "--batch_size gives it",
            "backbone_weights": "--encoder_weights gives it"}
RANDOM_SEED = 0  # of --encoder_weights=random's weights


def check_flags(stage_flags):
  """Raises errors.UsageError for a mode not in job_report.MODES, a stage binary's flag given
  to the benchmark itself (pipeline's modules define them here too), or a stage flag after --
  that is not --name=value or that the benchmark sets (SET_HERE)."""
  unknown = [mode for mode in FLAGS.modes if mode not in job_report.MODES]
  if unknown or not FLAGS.modes or len(set(FLAGS.modes)) < len(FLAGS.modes):
    raise errors.UsageError("--modes=%s: give each of %s at most once" % (
        ",".join(FLAGS.modes), ", ".join(job_report.MODES)))
  for module in (determinism, cli):
    for flag in FLAGS.get_flags_for_module(module):
      if flag.present:
        _refuse_stage_flag(flag.name, "a stage binary's flag: give it after --")
  for given in stage_flags:
    if not given.startswith("-"):
      raise errors.UsageError("%r after --: give stage flags as --name=value" % given)
    name = given.lstrip("-").split("=", 1)[0]
    _refuse_stage_flag(name[2:] if name.startswith("no") and name[2:] in SET_HERE else name)


def _refuse_stage_flag(name, otherwise=None):
  """Raises errors.UsageError for a stage flag the benchmark sets (SET_HERE), or, if it does
  not, with otherwise (words) if given."""
  if name in SET_HERE:
    raise errors.UsageError("--%s: the benchmark sets it for every step (%s)"
                            % (name, SET_HERE[name]))
  if otherwise:
    raise errors.UsageError("--%s is %s" % (name, otherwise))


def stage_argv(step, mode, stage_flags, encoder_weights):
  """The command of a step's binary (without --store and --result_json): the data flags, and
  for a model step the config, the encoder's weights (encoder_weights: --backbone_weights's
  value), the shrinking flags given, the mode's and the stage flags."""
  argv = [sys.executable, "-m", step.module, "--dataset=synthetic",
          "--synthetic_images=%d" % FLAGS.pets, "--synthetic_image_size=%d" % FLAGS.pet_size,
          "--image_size=%d" % FLAGS.image_size]
  if step.data:
    return argv
  argv += ["--config=" + config_path(), "--backbone_weights=" + encoder_weights]
  argv += ["--%s=%d" % (name, FLAGS[name].value) for name in
           ("epochs", "steps_per_epoch", "batch_size") if FLAGS[name].value is not None]
  return argv + list(job_report.MODES[mode]) + list(stage_flags)


def config_path():
  """--config, or the seed's configuration."""
  return FLAGS.config or os.path.join(config.CONFIG_DIR, "oxford_iiit_pet.json")


def encoder_weights(work_dir, stage_flags):
  """--backbone_weights's value for --encoder_weights: imagenet and none as they are, a PATH
  made absolute, and random as the file benchmarks/random_encoder.py writes for the config's
  encoder and --image_size (made once, in work_dir, by a child process: it starts TensorFlow).
  Raises errors.Error if a PATH is missing or random's file cannot be made; errors.UsageError
  for random with a stage flag --model_arch, whose encoder the file would not fit."""
  if FLAGS.encoder_weights in ("imagenet", "none"):
    return FLAGS.encoder_weights
  if FLAGS.encoder_weights != "random":
    path = os.path.abspath(FLAGS.encoder_weights)
    if not os.path.isfile(path):
      raise errors.Error("--encoder_weights=%s: no such file; give a weights file, imagenet, "
                         "random or none" % FLAGS.encoder_weights)
    return path
  if any(given.lstrip("-").startswith("model_arch") for given in stage_flags):
    raise errors.UsageError("--encoder_weights=random makes weights for the config's encoder: "
                            "give the architecture in --config, not --model_arch after --")
  arch = config.resolve("synthetic", config_path()).model.model_arch
  path = os.path.join(work_dir, "%s_random_%d_seed%d.weights.h5" % (arch, FLAGS.image_size,
                                                                    RANDOM_SEED))
  if not os.path.exists(path):
    os.makedirs(work_dir, exist_ok=True)
    _check_child([sys.executable, "-m", "benchmarks.random_encoder", "--model_arch=" + arch,
                  "--image_size=%d" % FLAGS.image_size, "--seed=%d" % RANDOM_SEED,
                  "--output=" + path], "could not make the random encoder weights")
  return path


def check_before(stage_flags, data_store, weights):
  """Raises errors.Error, naming the fix, if a mode's evaluate command would refuse its flags
  (a --dry_run of it: flags, config, weights, CPU; no TensorFlow) or, for portable mode, the
  fixed-order kernels' library cannot be loaded."""
  for mode in FLAGS.modes:
    argv = stage_argv(job_report.MODEL_STEPS[-1], mode, stage_flags, weights) + [
        "--store=" + data_store, "--dry_run"]
    _check_child(argv, "the %s mode's stages refuse their flags" % mode)
  if "portable" in FLAGS.modes:
    _check_child([sys.executable, "-c", "import kernels.fixed_order"],
                 "portable mode cannot load the fixed-order kernels")


def _check_child(argv, what):
  """Runs argv; raises errors.Error saying what, with the child's last stderr line, if it
  fails."""
  done = child_process.run(argv, env=child_process.environment(), capture_output=True,
                           text=True)
  if done.returncode:
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    last = last[len("error: "):] if last.startswith("error: ") else last
    raise errors.Error("%s: %s (checked with: %s)" % (what, last, " ".join(argv)))


class Progress:
  """The status line on stderr (job_report.Estimate) while the steps of plan, [(mode or "data",
  Step)], run in order: on a terminal rewritten every POLL_SECONDS, in a log a line every
  LOG_EVERY_SECONDS and at each epoch; and a line per step done."""

  def __init__(self, plan, out=sys.stderr):
    self.plan, self.out, self.tty = plan, out, out.isatty()
    self.run_began = time.monotonic()
    self.timed = {}  # step name: wall seconds of its first run, what a later run expects
    self.position, self.began, self.epochs, self.shown = 0, self.run_began, [], None

  def begin(self, position):
    self.position, self.began, self.epochs, self.shown = position, time.monotonic(), [], None

  def epoch(self, number, epochs):
    """Train's "Epoch number/epochs" line came (called from the thread reading its stderr)."""
    self.epochs.append((number, epochs, time.monotonic()))

  def estimate(self, now):
    step = self.plan[self.position][1]
    epochs = list(self.epochs)
    left = job_report.step_left(now - self.began, job_report.training_left(epochs, now),
                                self.timed.get(step.name))
    later, complete = job_report.run_left(
        left, [self.timed.get(s.name) for _, s in self.plan[self.position + 1:]])
    return job_report.Estimate(now - self.began, now - self.run_began,
                               "%d/%d" % epochs[-1][:2] if epochs else None, left, later,
                               complete)

  def show(self):
    now = time.monotonic()
    mode, step = self.plan[self.position]
    line = self.estimate(now).line(mode, step.name, self.position + 1, len(self.plan))
    if self.tty:
      self.out.write("\r\033[K" + line)
    elif self.shown is None or now - self.shown[0] >= LOG_EVERY_SECONDS or (
        self.shown[1] != len(self.epochs)):
      self.out.write(line + "\n")
      self.shown = (now, len(self.epochs))
    self.out.flush()

  def end(self, measured):
    mode, step = self.plan[self.position]
    self.timed.setdefault(step.name, measured.wall_seconds)
    self.out.write("%s%s %s %s in %s (CPU %s, peak RSS %s)\n" % (
        "\r\033[K" if self.tty else "", mode, step.name,
        "computed" if measured.computed else "found in the store",
        job_report.duration(measured.wall_seconds), job_report.duration(measured.cpu_seconds),
        job_report.gigabytes(measured.peak_rss_bytes)))
    self.out.flush()


class Job:
  """The steps' runs in one run folder: each child's logs and --result_json under it, its
  commands in order (commands), the commit its stages recorded (commit)."""

  def __init__(self, run_dir, progress):
    self.run_dir, self.progress = run_dir, progress
    self.commands, self.commit, self.position = [], None, 0
    os.makedirs(os.path.join(run_dir, "logs"))

  def run(self, step, argv, store):
    """Runs a step's command (argv without --store and --result_json) on store as a child;
    returns its job_report.Measured once job_report.check_computed passes. Raises
    errors.Error if it fails."""
    mode = self.progress.plan[self.position][0]
    prefix = os.path.join(self.run_dir, "logs", "%d-%s-%s" % (self.position + 1, mode,
                                                              step.name))
    argv = list(argv) + ["--store=" + store, "--result_json=" + prefix + ".result.json"]
    self.commands.append(argv)
    self.progress.begin(self.position)
    status, usage, wall = _run_child(argv, prefix, self.progress)
    if status:
      raise errors.Error("the %s step failed (exit status %d): %s\n%s\n(its stderr: %s.stderr)"
                         % (step.name, status, " ".join(argv), _tail(prefix + ".stderr"),
                            prefix))
    stages = user_input.read_json(prefix + ".result.json", "--result_json of " + step.name)[
        "stages"]
    built = _manifests(store, stages)
    measured = job_report.Measured(
        step.name, tuple(argv), wall, usage.ru_utime, usage.ru_stime,
        usage.ru_maxrss * 1024,  # KiB on Linux
        tuple(stages), {name: m["provenance"]["wall_seconds"] for name, m in built.items()})
    job_report.check_computed(step, measured, store)
    self.commit = self.commit or next(
        (m["provenance"].get("git_commit") for m in built.values()), None)
    self.progress.end(measured)
    self.position += 1
    return measured


def _manifests(store, stages):
  """{stage: manifest} of the stages a step computed (its --result_json "stages")."""
  opened = storelib.Store(store)
  return {s["stage"]: opened.lookup(s["key"]) for s in stages if not s["cache_hit"]}


def _run_child(argv, prefix, progress):
  """Runs argv, stdout to prefix.stdout, stderr to prefix.stderr (train's epochs to progress);
  returns (exit status, resource usage from os.wait4, wall seconds from its start to its end).
  A stop (Ctrl-C) stops the child too."""
  with open(prefix + ".stdout", "wb") as out:
    began = time.monotonic()
    process = child_process.start(argv, env=child_process.environment(),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
  reader = threading.Thread(target=_read_stderr, args=(process.stderr, prefix + ".stderr",
                                                       progress), daemon=True)
  reader.start()
  ended = {}

  def wait():  # blocked in os.wait4, so that the end's time is exact, not a poll's
    _, status, usage = os.wait4(process.pid, 0)
    ended.update(status=status, usage=usage, at=time.monotonic())

  waiter = threading.Thread(target=wait, daemon=True)
  waiter.start()
  try:
    while waiter.is_alive():
      progress.show()
      waiter.join(POLL_SECONDS)
  except BaseException:
    child_process.stop(process, child_process.GRACE_SECONDS)
    raise
  process.returncode = os.waitstatus_to_exitcode(ended["status"])  # reaped here, not by Popen
  reader.join()
  return process.returncode, ended["usage"], ended["at"] - began


def _read_stderr(stream, path, progress):
  """Copies a child's stderr to path, telling progress of each epoch train begins."""
  with stream, open(path, "wb", buffering=0) as log:  # whole lines, even if this process dies
    for line in stream:
      log.write(line)
      found = EPOCH_LINE.match(line)
      if found:
        progress.epoch(int(found.group(1)), int(found.group(2)))


def _tail(path):
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-TAIL_LINES:]).rstrip()


def seed_mode_store(data_store, data, mode_store):
  """Makes mode_store and puts into it, as hard links, the outputs of every stage the data
  steps listed (data: their job_report.Measured), with their manifests. (A lineage would miss
  synthetic: download's inputs are the archives' sha256, not synthetic's output.)"""
  source = storelib.Store(data_store)
  stored = {s["key"]: source.lookup(s["key"]) for measured in data for s in measured.stages}
  try:
    inventory.link_outputs(source, storelib.Store(mode_store), list(stored.values()))
  except OSError as e:
    if e.errno != errno.EXDEV:
      raise
    raise errors.Error("--data_store=%s is on another file system than --work_dir=%s, and the "
                       "modes' stores hard-link its outputs: put both on one" % (
                           data_store, FLAGS.work_dir)) from None


def report(job, data, modes, run_dir, stores):
  """Prints the table and the metrics' lines; writes the JSON file; returns its path."""
  by_mode = job_report.metrics_by_mode(modes)
  print("\n".join(job_report.table(data, modes) + job_report.table_notes(data, modes) + [""] +
                  job_report.metrics_lines(by_mode)))
  table_rows = job_report.rows(data, modes)
  differences = job_report.metric_differences(by_mode)
  path = FLAGS.output or os.path.join(run_dir, "full_size.json")
  files.write_json(path, {
      "commit": job.commit, "cpu": determinism.cpu_model(),
      "cores": len(os.sched_getaffinity(0)),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "flags": dict({name: FLAGS[name].value for name in (
          "modes", "pets", "pet_size", "image_size", "epochs", "steps_per_epoch",
          "batch_size", "encoder_weights")}, config=config_path()),
      "stores": stores, "stores_kept": FLAGS.keep_stores, "commands": job.commands,
      "steps": {"data": [m.record() for m in data],
                **{mode: [m.record() for m in runs] for mode, runs in modes.items()}},
      "table": table_rows, "wall_ratios": job_report.wall_ratios(table_rows),
      "test_iou": job_report.test_iou(by_mode),
      "metric_differences": differences, "metrics_differ": bool(differences)})
  return path


def run_job(stage_flags):
  """Checks, runs the data steps and each mode's steps, reports; returns the JSON's path."""
  work_dir = os.path.abspath(FLAGS.work_dir)
  data_store = os.path.abspath(FLAGS.data_store or os.path.join(work_dir, "data"))
  weights = encoder_weights(work_dir, stage_flags)
  check_before(stage_flags, data_store, weights)
  os.makedirs(work_dir, exist_ok=True)
  run_dir = tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%dT%H%M%SZ-", time.gmtime()),
                             dir=work_dir)
  plan = [("data", step) for step in job_report.DATA_STEPS] + [
      (mode, step) for step in job_report.MODEL_STEPS for mode in FLAGS.modes]
  print("full_size: %d steps; data store %s; run folder %s" % (len(plan), data_store, run_dir),
        file=sys.stderr, flush=True)
  job = Job(run_dir, Progress(plan))
  data = [job.run(step, stage_argv(step, None, (), weights), data_store)
          for step in job_report.DATA_STEPS]
  stores, modes = {"data": data_store}, {mode: [] for mode in FLAGS.modes}
  for mode in FLAGS.modes:
    stores[mode] = os.path.join(run_dir, mode)
    seed_mode_store(data_store, data, stores[mode])
  for step in job_report.MODEL_STEPS:  # the modes interleaved, step by step
    for mode in FLAGS.modes:
      modes[mode].append(
          job.run(step, stage_argv(step, mode, stage_flags, weights), stores[mode]))
  path = report(job, data, modes, run_dir, stores)
  if not FLAGS.keep_stores:
    for mode in FLAGS.modes:
      storelib.remove_tree(stores[mode])
  return path


def main(argv):
  cli.chdir_to_working_directory()  # relative paths in flags: the folder it was run from
  try:
    check_flags(argv[1:])
    print("JSON: %s" % run_job(argv[1:]))
  except errors.Error as e:
    print("error: %s" % e, file=sys.stderr)
    sys.exit(e.exit_status)
  except KeyboardInterrupt:
    print("\nstopped (SIGINT), and the step running with it; its logs are in the run folder",
          file=sys.stderr)
    sys.exit(128 + signal.SIGINT)


if __name__ == "__main__":
  app.run(main)
