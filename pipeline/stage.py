"""Runs a stage through the store: plan it (compute its key), then execute the plan: return
the stored output on a hit, else build the output in staging, publish it under its digest and
record the manifest. In a store opened for a dry run (pipeline.planning), a miss is a Planned
stage instead, and nothing is built.

A stage's key is the sha256 of a canonical record of everything that can change its output:
stage name, source code digests, parameters (the flags that matter), input digests, runtime.
Store location, working directory, time and host are not in it; they go in the manifest's
provenance. A stage whose build is not repeatable (randomness not derived from --seed) also has
a random nonce in its key record: it is never a cache hit.
"""

import contextlib
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import time
import typing

from pipeline import child_process
from pipeline import code
from pipeline import digest
from pipeline import errors
from pipeline import file_systems
from pipeline import runtime
from pipeline import seeds
from pipeline import stopping


@dataclasses.dataclass(frozen=True)
class Result:
  name: str
  key: str
  digest: str
  path: str
  cached: bool
  manifest: dict


@dataclasses.dataclass(frozen=True)
class Planned:
  """A stage that a dry run finds not stored: it would compute. key and record are None while
  an input it reads would compute too (waiting_for: that input's stage), as the input's digest
  is part of the key. reason: why it would compute, in words (pipeline.planning)."""
  name: str
  params: dict
  key: typing.Optional[str]
  record: typing.Optional[dict]
  waiting_for: typing.Optional[str] = None
  reason: typing.Optional[str] = None
  cached = False  # what a Result has, for code that reads either
  digest = None
  path = None

  @property
  def manifest(self):
    """What a later stage may read of it before building: its key record, or its params."""
    return {"stage": self.name, "key_record": self.record or {"params": self.params}}


# A run folder's subfolder for TensorBoard logs: builds write their logs there, and `store gc`
# keeps it when it removes a finished run's checkpoints.
LOGS_FOLDER = "tensorboard"
# The key record's field that holds an unrepeatable run's random nonce, and what its manifest
# says about it.
NONCE = "nonce"
_finished = []  # execute()'s Results and dry_run()'s, for finished()
UNREPEATABLE = ("its build draws randomness not derived from --seed, so its key record holds "
                 "a random nonce")


@dataclasses.dataclass(frozen=True)
class Plan:
  """A stage run before it runs (see plan()): record is its key record, key its sha256."""
  name: str
  record: dict
  key: str
  build: typing.Callable
  inputs: dict

  @property
  def repeatable(self):
    """Whether the run may be a cache hit: its key record holds no nonce."""
    return NONCE not in self.record


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
    commit, dirty = (child_process.run(["git", "-C", tree] + arguments, capture_output=True,
                                       text=True, timeout=10)
                     for arguments in (["rev-parse", "HEAD"],
                                       ["status", "--porcelain", "--untracked-files=no"]))
  except (OSError, subprocess.SubprocessError):
    return None
  if commit.returncode or dirty.returncode:
    return None
  return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def report(result, out=None):
  """Prints a stage's line (its name, output digest and key), and under it the output's folder:
  for a person; scripts read --result_json (pipeline.cli). A Planned stage's line says it
  would compute, with its key if known."""
  if isinstance(result, Planned):
    if result.key is None:
      key = "unknown until %s is made" % result.waiting_for
    else:
      key = "drawn when it runs" if NONCE in result.record else result.key
    print("%-10s would compute, key %s" % (result.name, key), file=out or sys.stdout, flush=True)
    return
  print("%-10s output %s  key %s%s\n%-10s in %s" % (
      result.name, result.digest, result.key, "  (cache hit)" if result.cached else "", "",
      result.path), file=out or sys.stdout, flush=True)


def plan(name, params, inputs, determinism_record, build, repeatable=True):
  """Returns the Plan of a stage run: its key record and key, computed here once.

  inputs: {name: the Result of a stage it reads, or the digest of an outside file, or None};
  the key holds their digests. build(out_dir, run_dir) writes the output files into out_dir
  (and may keep resumable state in run_dir) and returns a JSON-able dict of details (counts,
  metrics) for the manifest. The module that defines build, and its import closure, are the
  stage's code in the key. repeatable=False says that build draws randomness not derived from
  --seed: the key record then holds a random nonce, so that this run's key is its own and the
  run is never a cache hit, nor hit later. With repeatable=True the record is key_record's.
  """
  record = key_record(name, build, params, inputs, determinism_record)
  if not repeatable:
    record[NONCE] = os.urandom(16).hex()
  return Plan(name, record, digest.record_digest(record), build, inputs)


def execute(store, planned):
  """Returns a Plan's Result: the stored output on a hit, else builds it with planned.build
  and stores it and its manifest. An unrepeatable plan is never looked up.

  A hit's output is re-hashed if store.verify_on_hit is on. On a miss, each Result input's
  output is re-hashed first (unless store.verify_inputs is off). A damaged output raises
  errors.DamagedError, and nothing is built; so does a build that fails on a damaged input
  (with --noverify_inputs). A miss in a read-only store raises errors.NotWritableError, and
  a build that fills its file system errors.NoSpaceError; nothing is stored then.
  """
  stopping.check()
  with store.lock(planned.key):
    manifest = store.lookup(planned.key) if planned.repeatable else None
    if manifest is None:
      store.must_write("the %s stage (key %s) is not in the store, and building it"
                       % (planned.name, planned.key[:16]))
      result = _on_miss(store, planned)
    else:
      if store.verify_on_hit:
        store.verify(manifest["output"], use="a cache hit of the %s stage (--verify_store)"
                     % planned.name)
      result = _hit(store, planned, manifest)
  _finished.append(result)
  return result


def _hit(store, planned, manifest):
  return Result(planned.name, planned.key, manifest["output"],
                store.object_path(manifest["output"]), True, manifest)


def dry_run(store, name, params, inputs, determinism_record, build, repeatable=True):
  """What run() would do, doing none of it: the stored Result on a hit, else a Planned. Takes
  no lock and writes nothing; run() calls it for a store opened for planning."""
  waiting = next((value.name for _, value in sorted(inputs.items())
                  if isinstance(value, Planned)), None)
  if waiting:
    found = Planned(name, params, None, None, waiting)
  else:
    planned = plan(name, params, inputs, determinism_record, build, repeatable)
    manifest = store.lookup(planned.key) if planned.repeatable else None
    found = (_hit(store, planned, manifest) if manifest else
             Planned(name, params, planned.key, planned.record))
  _finished.append(found)
  return found


def finished():
  """The Results of the stages this process has executed (Planned ones in a dry run), in the
  order they ended."""
  return list(_finished)


def run(store, name, params, inputs, determinism_record, build, repeatable=True):
  """Returns the stage's Result, building it on a miss: execute(store, plan(...)); see plan
  for the arguments and execute for the errors. In a store opened for planning, dry_run()."""
  if store.planning:
    return dry_run(store, name, params, inputs, determinism_record, build, repeatable)
  return execute(store, plan(name, params, inputs, determinism_record, build, repeatable))


def build_alongside(store, planned):
  """Builds a Plan's output as execute() does on a miss, but stores nothing: the staging
  folder is removed. What a worker other than the chief does (seg.training.distribute), so
  that its collective ops meet the chief's. Returns the build's details."""
  if store.verify_inputs:
    verify_inputs(store, planned.name, planned.inputs)
  with store.staging(prefix="worker-") as out, _explained(store, planned, out):
    return planned.build(out, store.run_dir(planned.key))


def _on_miss(store, planned):
  """Builds a Plan's output in staging, stores it and writes its manifest (the caller holds
  the key's lock); returns its Result."""
  if store.verify_inputs:
    verify_inputs(store, planned.name, planned.inputs)
  started = datetime.datetime.now(datetime.timezone.utc)
  clock = time.monotonic()
  with store.staging(prefix=planned.name + "-") as out, seeds.recording_seeds() as derived:
    with _explained(store, planned, out):
      details = planned.build(out, store.run_dir(planned.key))
      stopping.check()  # a stop whose exception the build swallowed: publish nothing
      output = store.put_tree(out)
  manifest = {
      "stage": planned.name,
      "key": planned.key,
      "output": output,
      "key_record": planned.record,
      "details": details,
      "derived_seeds": dict(sorted(derived.items())),
      "provenance": {
          "git_commit": _git_commit(),
          "host": platform.node(),
          "argv": sys.argv,
          "working_directory": os.getcwd(),
          "started_utc": started.isoformat(timespec="seconds"),
          "wall_seconds": round(time.monotonic() - clock, 3),
      },
  }
  if not planned.repeatable:
    manifest["never_a_cache_hit"] = UNREPEATABLE
  store.write_manifest(planned.key, manifest)
  return Result(planned.name, planned.key, output, store.object_path(output), False, manifest)


@contextlib.contextmanager
def _explained(store, planned, staged):
  """Raises, for an exception in the block, the errors.Error that _explain gives, if any."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    explained = _explain(store, planned, staged, e)
    if explained is None:
      raise
    raise explained from e


def _explain(store, planned, staged, error):
  """The errors.Error to raise for a build that failed with error, if the store can say why:
  its file system filled (errors.NoSpaceError, with the space free and about how much the
  stage needs), or, when --noverify_inputs skipped the check before the build, one of its
  stored inputs is damaged (errors.DamagedError, naming it), whatever the build's error was
  (TensorFlow's DataLossError, a failed decode). None otherwise."""
  if isinstance(error, errors.Error) or stopping.taken():
    return None
  if file_systems.is_no_space(error):
    return errors.NoSpaceError(_no_space_words(store, planned, staged, error))
  if store.verify_inputs:
    return None
  for input_name, value in sorted(planned.inputs.items()):
    problem = store.damage(value.digest) if isinstance(value, Result) else None
    if problem:
      return errors.DamagedError(
          "the %s stage failed reading its input %r, the %s output %s, which is damaged (%s); "
          "nothing was stored. `%s` removes it, and its stage runs again (--verify_inputs, on "
          "by default, checks the inputs before a build)" % (
              planned.name, input_name, value.name, value.digest, problem,
              store.remove_damaged_command(value.digest)))
  return None


def _no_space_words(store, planned, staged, error):
  """"no space left on the tmpfs file system at /s (1.3 MB free of 20.0 MB) while the train
  stage (key ...) was writing; it needs about 31.4 MB (...)". What it needs: what it had
  written (its staged output and run folder) and the write that failed, or the largest output
  of the same stage in the store, whichever is more."""
  written = (file_systems.tree_size(staged) + file_systems.tree_size(store.run_dir(planned.key))
             + file_systems.failed_write_size(error))
  earlier = store.largest_output(planned.name)
  needs = ("about %s (its largest output in this store)" % file_systems.size_words(earlier)
           if earlier > written else "at least %s (what it had written, and was writing when "
           "the disk filled)" % file_systems.size_words(written))
  return ("no space left on %s while the %s stage (key %s) was writing; it needs %s. Nothing "
          "was stored: free space there, or give --store a larger file system, and run again "
          "(training resumes from its last epoch checkpoint)" % (
              file_systems.describe(store.root), planned.name, planned.key[:16], needs))
