"""The tiny synthetic pipeline that the end-to-end and determinism tests run, in fresh
processes through the real binaries, and its golden digests (tests/golden/)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from seg.training import local_workers

# This file sits in <runfiles>/reproseg/tests/, beside the binaries it runs.
RUNFILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "tiny_pipeline.json")
# A few seconds of training: 40 synthetic pets at 32 px, 2 epochs of 2 steps.
TINY = ["--dataset=synthetic", "--synthetic_images=40", "--synthetic_image_size=40",
        "--image_size=32", "--epochs=2", "--steps_per_epoch=2", "--batch_size=8",
        "--eval_batch_size=8"]
DATA_FLAGS = TINY[:4]  # what data_tools' binaries take
STAGES = ("synthetic", "download", "partition", "train", "calibrate", "evaluate")
PIPELINE = "seg/evaluate"  # the binary that runs every stage above


GOLDEN_STEPS = os.path.join(os.path.dirname(GOLDEN), "step_digests.json")
GOLDEN_TUNE = os.path.join(os.path.dirname(GOLDEN), "tune.json")
# A 4-trial search on the tiny configuration, in rounds of 2: learning rate and batch size.
TUNE_SPACE = {"learning_rate": {"low": 0.0001, "high": 0.01, "log": True},
              "batch_size": {"choices": [8, 16]}}
TUNE = ([f for f in TINY if not f.startswith("--batch_size=")] +
        ["--trials=4", "--round_size=2", "--startup_trials=2"])


def emulated(cpu_model):
  """The command prefix that runs this machine's Python on an emulated CPU model."""
  return ("qemu-x86_64", "-cpu", cpu_model, sys.executable)


def command(binary, env=None, python=None):
  """(argv, environment) that run a binary of this workspace (e.g. "seg/train").

  python: a command that runs Python (e.g. emulated(...)); the binary is then its
  *_main.py run by it, and so it is outside Bazel too (the Nix flake's check).
  """
  environment = dict(os.environ)
  environment.update(env or {})
  argv = [os.path.join(RUNFILES, binary)]
  if python or not os.path.exists(argv[0]):
    argv = list(python or [sys.executable]) + [argv[0] + "_main.py"]
    environment["PYTHONPATH"] = RUNFILES
  return argv, environment


def run(binary, args, env=None, prefix=(), cwd=None, python=None, timeout=None):
  """Runs a binary of this workspace (see command()); returns the CompletedProcess."""
  argv, environment = command(binary, env, python)
  return subprocess.run(list(prefix) + argv + list(args), capture_output=True, text=True,
                        env=environment, cwd=cwd, check=False, timeout=timeout)


def run_workers(args, count=2, timeout=900, worker_args=None):
  """Runs //seg:train as `count` local workers (--distribute=multi_worker, TF_CONFIG on
  127.0.0.1 with free ports), worker 0 the chief. Returns [(exit status, stdout, stderr)] by
  worker. No worker outlives the call: after `timeout` seconds in all, or on any error, each
  is killed with its process group. worker_args: extra arguments per worker."""
  cluster = {"worker": ["127.0.0.1:%d" % port for port in local_workers.free_ports(count)]}
  processes, logs = [], []
  try:
    for index in range(count):
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      argv, environment = command("seg/train", {"TF_CONFIG": tf_config})
      extra = list(worker_args[index]) if worker_args else []
      logs.append((tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")))
      processes.append(subprocess.Popen(
          argv + ["--distribute=multi_worker"] + list(args) + extra, stdout=logs[-1][0],
          stderr=logs[-1][1], env=environment, text=True, start_new_session=True))
    deadline = time.monotonic() + timeout
    for process in processes:
      process.wait(timeout=max(1, deadline - time.monotonic()))
    results = []
    for process, (out, err) in zip(processes, logs):
      out.seek(0)
      err.seek(0)
      results.append((process.returncode, out.read(), err.read()))
    return results
  finally:
    for process in processes:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for out, err in logs:
      out.close()
      err.close()


def step_digests(config, python=None, timeout=None, extra=(), env=None):
  """seg.training.step_digests of a StepConfig, in a fresh process: the digests as a dict. extra:
  more flags (determinism switches); env: more environment variables."""
  result = subprocess.run(list(python or [sys.executable]) + ["-m", "seg.training.step_digests"] +
                          config.flags() + list(extra), capture_output=True, text=True,
                          cwd=RUNFILES, check=False,
                          env=dict(os.environ, PYTHONPATH=RUNFILES, **(env or {})),
                          timeout=timeout)
  if result.returncode:
    raise AssertionError("seg.training.step_digests failed:\n" + result.stderr[-4000:])
  return json.loads(result.stdout)


def load_golden_steps():
  """{"real_shapes": digests, "emulated": digests}: seg.training.step_digests' two StepConfigs."""
  with open(GOLDEN_STEPS) as f:
    return json.load(f)


def tune(store, extra=(), timeout=1800):
  """Runs //seg:tune's tiny search (TUNE, TUNE_SPACE) on a store; returns the CompletedProcess
  and the tune output's folder (None if it failed)."""
  space = store.rstrip(os.sep) + ".search_space.json"  # beside the store, not in it
  with open(space, "w") as f:
    json.dump(TUNE_SPACE, f)
  result = run("seg/tune", TUNE + ["--store=" + store, "--search_space=" + space] + list(extra),
               timeout=timeout)
  tuned = [line for line in stage_lines(result.stdout) if line[0] == "tune"]
  return result, (os.path.join(store, "objects", tuned[0][1]) if tuned else None)


def tune_digests(store, extra=()):
  """{"output": the tiny search's tune output digest, "best": sha256 of its
  best_hyperparameters.json}, from a run on store; raises AssertionError if it fails."""
  result, folder = tune(store, extra)
  if result.returncode or not folder:
    raise AssertionError("seg/tune failed:\n" + result.stderr[-4000:])
  with open(os.path.join(folder, "best_hyperparameters.json"), "rb") as f:
    return {"output": os.path.basename(folder), "best": hashlib.sha256(f.read()).hexdigest()}


def made_in_new_store(binary):
  """(store, output digest) of a stage binary run on TINY into a new store (under
  $TEST_TMPDIR): the store and its last stage's output. Raises AssertionError if it fails."""
  store = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
  result = run(binary, TINY + ["--store=" + store])
  if result.returncode:
    raise AssertionError("%s failed:\n%s" % (binary, result.stderr[-3000:]))
  return store, stage_lines(result.stdout)[-1][1]


# pipeline.stage.report()'s line, as a person reads it on stdout: name, output digest, key, and
# the cache-hit mark. The tests check the printed lines with it; scripts read --result_json.
_STAGE_LINE = re.compile(r"^(\w+)\s+output ([0-9a-f]{64})  key ([0-9a-f]{64})(  \(cache hit\))?$")


def stage_lines(stdout):
  """[(stage, output digest, key, cache hit?)] of the stage lines a binary printed."""
  return [(m.group(1), m.group(2), m.group(3), bool(m.group(4)))
          for m in map(_STAGE_LINE.match, stdout.splitlines()) if m]


def outputs(stdout):
  """{stage: output digest}."""
  return {name: output for name, output, _, _ in stage_lines(stdout)}


def load_golden():
  """tests/golden/tiny_pipeline.json: "outputs" ({stage: output digest}) and "export" (the
  export's digest) of the tiny pipeline, one set for every x86-64 CPU with AVX2 and FMA."""
  with open(GOLDEN) as f:
    return json.load(f)
