"""The tiny synthetic pipeline that the end-to-end and determinism tests run, in fresh
processes through the real binaries, and its golden digests (tests/golden/)."""

import json
import os
import re
import subprocess
import sys

# This file sits in <runfiles>/reproseg/tests/, beside the binaries it runs.
RUNFILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "tiny_pipeline.json")
# A few seconds of training: 40 synthetic pets at 32 px, 2 epochs of 2 steps.
TINY = ["--dataset=synthetic", "--synthetic_images=40", "--synthetic_image_size=40",
        "--image_size=32", "--epochs=2", "--steps_per_epoch=2", "--batch_size=4",
        "--eval_batch_size=8"]
STAGES = ("synthetic", "download", "partition", "train")
_LINE = re.compile(r"^(\w+)\s+output ([0-9a-f]{64})  key ([0-9a-f]{64})(  \(cache hit\))?$")


def run(binary, args, env=None, prefix=(), cwd=None):
  """Runs a binary of this workspace (e.g. "seg/train"); returns the CompletedProcess.

  Outside Bazel (the Nix flake's check), the binary is its *_main.py run by this Python.
  """
  environment = dict(os.environ)
  environment.update(env or {})
  command = [os.path.join(RUNFILES, binary)]
  if not os.path.exists(command[0]):
    command = [sys.executable, command[0] + "_main.py"]
    environment["PYTHONPATH"] = RUNFILES
  return subprocess.run(list(prefix) + command + list(args),
                        capture_output=True, text=True, env=environment, cwd=cwd, check=False)


def stage_lines(stdout):
  """[(stage, output digest, key, cache hit?)] from a stage binary's output."""
  return [(m.group(1), m.group(2), m.group(3), bool(m.group(4)))
          for m in map(_LINE.match, stdout.splitlines()) if m]


def outputs(stdout):
  """{stage: output digest}."""
  return {name: output for name, output, _, _ in stage_lines(stdout)}


def load_golden():
  with open(GOLDEN) as f:
    return json.load(f)
