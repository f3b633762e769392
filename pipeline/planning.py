"""--dry_run: what a stage command would compute and what it would take from the store, as
`dvc status` and `dvc repro --dry` tell it, with nothing computed, fetched or written.

A dry run opens the store for planning (pipeline.store.Store(planning=True)), in which
pipeline.stage.run looks each stage's key up and returns the stored Result (a cache hit) or a
pipeline.stage.Planned (it would compute), and builds nothing. A stage whose input would
compute has no key yet: its Planned names that input. Why a stage would compute is its key
record's differences from the nearest stored run of the stage (pipeline.compare).
"""

import dataclasses
import os

from absl import flags

from pipeline import cli
from pipeline import compare
from pipeline import errors
from pipeline import inventory
from pipeline import stage

flags.DEFINE_bool(
    "dry_run", False,
    "Print each stage this command would run: a cache hit, or that it would compute and why "
    "(no run of the stage is stored, or what differs from the nearest stored run: a flag, an "
    "input, the code, a package). Computes, fetches and writes nothing, and starts no "
    "TensorFlow. Exit status 0 whatever would compute; as the run would, it refuses bad flags, "
    "a stored evaluation the release gate refuses (6), and ImageNet weights not yet fetched (1: "
    "their digest is in the key).")

# How many of a key record's differences a reason names.
_SHOWN = 3


def dry_run():
  """Whether --dry_run is on."""
  return flags.FLAGS.dry_run


def open_store():
  """The store of the flags (pipeline.cli.open_store), opened for planning under --dry_run."""
  return cli.open_store(planning=dry_run())


def check_flags():
  """Raises errors.Error for a flag a dry run cannot honour: --run_name names a stored run."""
  if dry_run() and flags.FLAGS.run_name:
    raise errors.Error("--run_name names the run a command stores, and a dry run stores "
                       "nothing: drop one of --run_name and --dry_run")


def _stored_runs(store, name):
  """The manifests of a stage's stored runs, newest first ([] for a store not made yet)."""
  if not os.path.isdir(os.path.join(store.root, "keys")):
    return []
  return [e.manifest for e in inventory.entries(store, name)]


def _change(path, stored, planned):
  return "%s %s → %s" % (path, _short(stored), _short(planned))


def _short(value):
  text = str(value)
  return text[:16] + "…" if len(text) > 17 else text


def reason(store, planned):
  """Why a Planned stage would compute, in a few words."""
  if planned.key is None:  # a later key follows the input's bits, not whether it ran
    return ("its key is known once %s is made (a cache hit still, if %s makes bits already "
            "stored)" % (planned.waiting_for, planned.waiting_for))
  if stage.NONCE in planned.record:
    return "never a cache hit (%s)" % stage.UNREPEATABLE
  if os.path.exists(store.manifest_path(planned.key)):
    return ("its output is no longer in the store (removed by `store gc` or `store verify "
            "--remove_damaged`)")
  runs = _stored_runs(store, planned.name)
  if not runs:
    return "no %s run is stored" % planned.name
  wanted = {"key_record": planned.record}

  def changes(manifest):
    return [_change("%s.%s" % (part, path), a, b)
            for part, found in compare.record_differences(manifest, wanted).items()
            for path, a, b in found]

  # runs are newest first, so min() takes the newest of the nearest
  nearest, listed = min(((m, changes(m)) for m in runs), key=lambda pair: len(pair[1]))
  listed = listed or ["its key record"]  # a part record_differences does not list
  more = " and %d more" % (len(listed) - _SHOWN) if len(listed) > _SHOWN else ""
  return "%s%s since the stored run %s" % ("; ".join(listed[:_SHOWN]), more, nearest["key"][:16])


def finish(store, results):
  """A command's stage Results as it returns them: under --dry_run, outcome(store, results)."""
  return outcome(store, results) if dry_run() else results


def outcome(store, results):
  """The cli.Outcome of a dry run: results, each stage that would compute with its reason, and
  a line that counts them."""
  results = [dataclasses.replace(r, reason=reason(store, r)) if isinstance(r, stage.Planned)
             else r for r in results]
  planned = sum(isinstance(r, stage.Planned) for r in results)
  hits = len(results) - planned
  return cli.Outcome(results, ("dry run: %d cache hit%s, %d would compute; nothing was "
                               "computed or written" % (hits, "" if hits == 1 else "s",
                                                        planned),), dry_run=True)
