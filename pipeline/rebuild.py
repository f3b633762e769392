"""`store check`: rebuild a stored output from its stored inputs and compare the bits.

The stage's recorded command runs again, from the source tree, into a scratch store that holds
(as hard links) the upstream outputs and source archives the stored output was made from, and
the outputs made from it. So the stage itself misses and is computed afresh; nothing upstream
is recomputed unless its key no longer matches, and the later stages are cache hits if the
rebuild gives the stored bits (if not, they run again too).
"""

import dataclasses
import os
import sys
import time

from pipeline import child_process
from pipeline import code
from pipeline import compare
from pipeline import errors
from pipeline import inventory
from pipeline import store as storelib


@dataclasses.dataclass(frozen=True)
class Outcome:
  manifest: dict           # the stored output's
  rebuilt: dict            # the rebuild's manifest (another key if the key no longer matches)
  same_key: bool
  output_differences: dict  # compare.output_differences of the two outputs
  seconds: float

  @property
  def identical(self):
    return self.same_key and self.manifest["output"] == self.rebuilt["output"]


def _seed(store, scratch, manifest):
  """Puts into the scratch store manifest's upstream outputs and input archives, and the
  outputs made from it: if its rebuild has the stored bits, the later stages of the recorded
  command are cache hits."""
  chain = inventory.lineage(store, manifest)
  inventory.link_outputs(store, scratch, chain[1:] + inventory.descendants(store, manifest))
  for m in chain:
    for value in inventory.input_digests(m):
      if store.has_blob(value) and not scratch.has_blob(value):
        os.link(store.blob_path(value), scratch.blob_path(value))


def command(manifest, scratch_root):
  """(argv, cwd, env) that re-run the command recorded in a manifest, into scratch_root."""
  argv = manifest["provenance"]["argv"]
  module = code.module_name(argv[0])
  if module is None:
    raise errors.Error("the output %s was made by %s, not by a reproseg stage binary: it "
                       "cannot be rebuilt" % (manifest["output"][:16], argv[0]))
  cwd = manifest["provenance"].get("working_directory")
  env = dict(os.environ, PYTHONPATH=code.source_tree())
  env.pop("BUILD_WORKING_DIRECTORY", None)
  # A later --store wins over one in the recorded argv or its --flagfile.
  return ([sys.executable, "-m", module] + argv[1:] + ["--store=" + scratch_root],
          cwd if cwd and os.path.isdir(cwd) else os.getcwd(), env)


def check(store, manifest, log=None):
  """Rebuilds manifest's output in a scratch store and returns the Outcome; the rebuild's
  own output (stage lines, progress) goes to log (default stderr)."""
  log = log or sys.stderr
  with store.staging(prefix="check-") as scratch_root:
    scratch = storelib.Store(scratch_root)
    _seed(store, scratch, manifest)
    argv, cwd, env = command(manifest, scratch_root)
    print("check: rebuilding %s %s in %s:\n  %s" % (manifest["stage"], manifest["key"][:16],
                                                   scratch_root, " ".join(argv)),
          file=log, flush=True)
    clock = time.monotonic()
    result = child_process.run(argv, cwd=cwd, env=env, stdout=log, stderr=log)
    seconds = time.monotonic() - clock
    if result.returncode:
      raise errors.Error("the rebuild of %s failed (exit status %d); its output is above"
                         % (manifest["key"][:16], result.returncode))
    rebuilt = scratch.lookup(manifest["key"])
    same_key = rebuilt is not None
    if not same_key:
      rebuilt = next((m for m in inventory.manifests(scratch).values()
                      if m["stage"] == manifest["stage"]), None)
      if rebuilt is None:
        raise errors.Error("the rebuild ran no %s stage: was the output made by another "
                           "binary?" % manifest["stage"])
    differences = compare.output_differences(store, manifest, scratch, rebuilt)
    return Outcome(manifest, rebuilt, same_key, differences, seconds)


def describe(outcome):
  """Lines a person reads: the verdict, and what differs if anything does."""
  m, r = outcome.manifest, outcome.rebuilt
  if outcome.identical:
    return ["IDENTICAL: %s %s rebuilt in %.0f s gives the stored output %s bit for bit"
            % (m["stage"], m["key"][:16], outcome.seconds, m["output"])]
  if not outcome.same_key:
    lines = ["DIFFERENT KEY: the rebuild of %s %s has the key %s, so it is another computation;"
             " what differs in the key record (stored, then rebuilt):"
             % (m["stage"], m["key"][:16], r["key"][:16])]
    lines += compare.describe_records(m, r)
  else:
    lines = ["DIFFERENT: %s %s rebuilt in %.0f s gives %s, not the stored %s"
             % (m["stage"], m["key"][:16], outcome.seconds, r["output"][:16], m["output"][:16])]
  return lines + compare.describe_outputs(outcome.output_differences)
