"""Runs a stage through the store: compute its key, return the stored output on a hit, else
build the output in staging, publish it under its digest and record the manifest.

A stage's key is the sha256 of a canonical record of everything that can change its output:
stage name, source code digests, parameters (the flags that matter), input digests, runtime.
Store location, working directory, time and host are not in it; they go in the manifest's
provenance.
"""

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import time

from pipeline import code
from pipeline import determinism
from pipeline import digest
from pipeline import runtime


@dataclasses.dataclass(frozen=True)
class Result:
  name: str
  key: str
  digest: str
  path: str
  cached: bool
  manifest: dict


def _digests(inputs):
  """{name: digest} of a stage's inputs: a Result stands for its output's digest."""
  return {name: value.digest if isinstance(value, Result) else value
          for name, value in inputs.items()}


def key_record(name, build, params, inputs, determinism_record):
  return {
      "stage": name,
      "code": code.code_record(build),
      "params": params,
      "inputs": _digests(inputs),
      "runtime": runtime.runtime_record(determinism_record),
  }


def verify_inputs(store, name, inputs):
  """Re-hashes each stored output the stage reads (its Result inputs) before it builds."""
  for input_name, value in sorted(inputs.items()):
    if isinstance(value, Result):
      store.verify(value.digest, use="the %s stage (as its input %r, made by %s)"
                   % (name, input_name, value.name))


def _git_commit():
  """The source tree's commit, with '+dirty' for local changes; None outside git."""
  tree = code.source_tree()
  try:
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True, timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ("+dirty" if dirty.strip() else "")


def report(result, out=None):
  """Prints a stage's line (its name, output digest and key: scripts read it), and under it
  the output's folder."""
  print("%-10s output %s  key %s%s\n%-10s in %s" % (
      result.name, result.digest, result.key, "  (cache hit)" if result.cached else "", "",
      result.path), file=out or sys.stdout, flush=True)


def run(store, name, params, inputs, determinism_record, build):
  """Returns the stage's Result, building it with build(out_dir, run_dir) on a miss.

  inputs: {name: the Result of a stage it reads, or the digest of an outside file, or None};
  the key holds their digests. On a miss, each Result's output is re-hashed first (unless
  store.verify_inputs is off): a damaged one raises store.StoreError and nothing is built.
  build writes the output files into out_dir (and may keep resumable state in run_dir) and
  returns a JSON-able dict of details (counts, metrics) for the manifest. The module that
  defines build, and its import closure, are the stage's code in the key.
  """
  record = key_record(name, build, params, inputs, determinism_record)
  key = digest.record_digest(record)
  with store.lock(key):
    manifest = store.lookup(key)
    if manifest is not None:
      if store.verify_on_hit:
        store.verify(manifest["output"], use="a cache hit of the %s stage (--verify_store)"
                     % name)
      return Result(name, key, manifest["output"], store.object_path(manifest["output"]), True,
                    manifest)
    if store.verify_inputs:
      verify_inputs(store, name, inputs)
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    with store.staging(prefix=name + "-") as out, determinism.recording_seeds() as seeds:
      details = build(out, store.run_dir(key))
      output = store.put_tree(out)
    manifest = {
        "stage": name,
        "key": key,
        "output": output,
        "key_record": record,
        "details": details,
        "derived_seeds": dict(sorted(seeds.items())),
        "provenance": {
            "git_commit": _git_commit(),
            "host": platform.node(),
            "argv": sys.argv,
            "working_directory": os.getcwd(),
            "started_utc": started.isoformat(timespec="seconds"),
            "wall_seconds": round(time.monotonic() - clock, 3),
        },
    }
    store.write_manifest(key, manifest)
  return Result(name, key, output, store.object_path(output), False, manifest)
