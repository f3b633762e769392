"""bazel run //pipeline:store -- COMMAND [ARGS] [--store=DIR]

Looks after reproseg's content-addressed store:

  ls [--stage=NAME]      what is stored: stage, date, key, output digest, size; newest first;
                         then the releases (releases/<name>/<version>) and run names
  runs [--stage=NAME]    one stage's runs (train by default) as a table, as DVC's `exp show`:
                         their names, the parameters that differ between them and their
                         metrics, joined with the runs each was made from (an evaluate row
                         shows train.params.learning_rate); --metrics=A,B to choose; newest
                         first, or --sort_by=METRIC (largest first; --ascending);
                         --format=table|csv|md|json
  name PREFIX NAME       give a run a name (lower-case letters, digits, '-'), as --run_name
                         does when a stage runs; a name on another run moves to this one
  show PREFIX            one output (by a unique prefix of its key or output digest, a run's
                         name, or a release: releases/<name> for its newest version,
                         releases/<name>/<n>): its files, parameters, provenance, names and
                         lineage back to the archives
  verify [DIGEST ...]    re-hash every output (or the given ones) against its listing;
                         exit status 3 and a list of damaged outputs on any mismatch;
                         --remove_damaged removes those, so their stages run again
                         (exit status 0 once none is left)
  check PREFIX           rebuild that output from its stored inputs in a scratch store, with
                         the recorded command and switches, and compare the bits: exit status
                         0 if identical, 6 with the files (and variables) that differ
  diff PREFIX PREFIX     two outputs side by side: what differs in their keys (parameters,
                         inputs, code files, runtime), their metrics, and their files; for
                         arrays files (weights), each variable: equal or the largest |A - B|
  gc [--nodry_run]       what no manifest needs (unreferenced outputs and blobs, and the
                         checkpoints of finished runs unless --keep_runs; their TensorBoard
                         logs stay): listed by default, removed with --nodry_run; refused
                         while a stage runs in the store
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

import os

from absl import flags

from pipeline import cli
from pipeline import compare
from pipeline import errors
from pipeline import inventory
from pipeline import logs
from pipeline import names
from pipeline import rebuild
from pipeline import runs as runs_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("stage", None, "ls: only this stage's outputs (synthetic, download, ...); "
                    "runs: this stage's runs (default: train).")
flags.DEFINE_list("metrics", None, "runs: the metrics to show, by dotted name in the manifest's "
                  "details (validation.iou, mean_iou, ...), an upstream run's under its "
                  "stage's name (train.validation.iou). Default: the stage's headline "
                  "metrics (pipeline/runs.py), or all of its own.")
flags.DEFINE_string("sort_by", None, "runs: sort by this metric, largest first. Default: newest "
                    "first.")
flags.DEFINE_bool("ascending", False, "runs: with --sort_by, smallest first (a loss).")
flags.DEFINE_enum("format", "table", runs_lib.FORMATS, "runs: how to print the runs: an "
                  "aligned table for a terminal, CSV (full digests and numbers), a Markdown "
                  "table, or JSON (with each run's lineage).")
flags.DEFINE_bool("json", False, "runs: the same as --format=json.")
flags.DEFINE_bool("dry_run", True, "gc: only list what would be removed.")
flags.DEFINE_bool("keep_runs", False, "gc: keep the checkpoints of finished runs (their "
                  "TensorBoard logs are always kept).")
flags.DEFINE_bool("remove_damaged", False, "verify: remove the damaged outputs it finds, so "
                  "that the stages that made them run again.")

COMMANDS = ("ls", "runs", "name", "show", "verify", "check", "diff", "gc")


def _size(n):
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return "%.0f %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
    n /= 1024


def ls(store, args):
  del args
  rows = inventory.entries(store, FLAGS.stage)
  print("%-10s %-25s %-16s %-16s %10s" % ("stage", "started (UTC)", "key", "output", "size"))
  for e in rows:
    print("%-10s %-25s %-16s %-16s %10s" % (e.stage, e.started_utc, e.key[:16], e.output[:16],
                                           _size(e.size)))
  print("%d outputs in %s" % (len(rows), store.root))
  published = names.listing(store)
  if published:
    print("\n%-30s %-16s %s" % ("release", "output", "folder"))
    for ref, digest in published:
      print("%-30s %-16s %s" % (ref, digest[:16], os.path.join(store.root, ref)))
  named = names.run_names(store)
  if named:
    stored = inventory.manifests(store)
    print("\n%-30s %s" % ("run name", "stage and key"))
    for run_name, key in sorted(named.items()):
      print("%-30s %s %s" % (run_name, stored.get(key, {}).get("stage", "(no longer stored)"),
                             key[:16]))


def runs(store, args):
  if args:
    raise errors.Error("runs takes no arguments: choose the stage with --stage")
  if FLAGS.ascending and not FLAGS.sort_by:
    raise errors.Error("--ascending orders by a metric: give it with --sort_by")
  if FLAGS.json and FLAGS["format"].present and FLAGS["format"].value != "json":
    raise errors.UsageError("--json is --format=json: give either --json or --format=%s"
                            % FLAGS["format"].value)
  found = runs_lib.table(store, FLAGS.stage or "train", FLAGS.metrics, FLAGS.sort_by,
                         FLAGS.ascending)
  printed = {"json": found.to_json, "csv": lambda: runs_lib.to_csv(found),
             "md": lambda: runs_lib.markdown(found)}
  chosen = "json" if FLAGS.json else FLAGS["format"].value
  if chosen in printed:
    print(printed[chosen]())
    return
  print("\n".join(runs_lib.lines(found)))
  print("%d %s run%s in %s; %s" % (
      len(found.rows), found.stage, "" if len(found.rows) == 1 else "s", store.root,
      "they differ in %s" % ", ".join(found.parameters) if found.parameters
      else "every parameter is the same"))


def name(store, args):
  if len(args) != 2:
    raise errors.Error("name takes a run (a key or output digest prefix, or a name) and the "
                       "name to give it")
  manifest = inventory.find(store, args[0])
  print(cli.naming_line(args[1], manifest["stage"], manifest["key"],
                        names.name_run(store, args[1], manifest["key"])))
  logs.refresh(store)


def show(store, args):
  if len(args) != 1:
    raise errors.Error("show takes one key or output digest prefix, or a name (see `store ls`)")
  print(inventory.to_json(inventory.summary(store, inventory.find(store, args[0]))))


def verify(store, args):
  damaged = inventory.verify(store, args or None)
  left = []
  for digest, problem in sorted(damaged.items()):
    print("DAMAGED %s: %s" % (digest, problem))
    if FLAGS.remove_damaged and problem != "missing":
      with store.exclusive("verify --remove_damaged"):
        store.remove_output(digest)
      print("removed %s: the stage that made it runs again when next needed" % digest)
    else:
      left.append(digest)
  if left:  # exit status errors.DAMAGED while a damaged or missing output is left
    line = "%d damaged%s" % (len(left), "" if FLAGS.remove_damaged else
                             ": `verify --remove_damaged` removes them, and their stages run "
                             "again when next needed")
    print(line)
    cli.exit_as(errors.DamagedError(line))
  print("every output checked is intact" if not damaged else
        "every damaged output was removed")


def check(store, args):
  if len(args) != 1:
    raise errors.Error("check takes one key or output digest prefix, or a name (see `store ls`)")
  outcome = rebuild.check(store, inventory.find(store, args[0]))
  print("\n".join(rebuild.describe(outcome)))
  if not outcome.identical:
    cli.exit_as(errors.CheckFailed("the rebuild gave other bits (listed above)"))


def diff(store, args):
  if len(args) != 2:
    raise errors.Error("diff takes two key or output digest prefixes, or names (see `store ls`)")
  a, b = (inventory.find(store, prefix) for prefix in args)
  for name, m in (("A", a), ("B", b)):
    print("%-8s %s, key %s, output %s" % (name, m["stage"], m["key"][:16], m["output"][:16]))
  lines = (compare.describe_records(a, b) + compare.describe_details(a, b) +
           compare.describe_outputs(compare.output_differences(store, a, store, b)))
  print("\n".join(lines))


def gc(store, args):
  del args
  with store.exclusive():
    paths = inventory.garbage(store, keep_runs=FLAGS.keep_runs)
    total = inventory.size_of(paths)
    for path in paths:
      print(("would remove " if FLAGS.dry_run else "removing ") + path)
    if not FLAGS.dry_run:
      inventory.remove(paths)
  print("%s %d paths, %s%s" % ("would free" if FLAGS.dry_run else "freed", len(paths),
                                _size(total), " (--nodry_run removes them)"
                                if FLAGS.dry_run and paths else ""))


def main(argv):
  if len(argv) < 2 or argv[1] not in COMMANDS:
    cli.exit_with(errors.UsageError("give a command: %s (see --help)" % ", ".join(COMMANDS)))
  if FLAGS.run_name:
    cli.exit_with(errors.Error("--run_name is for the stage commands: `store name PREFIX NAME` "
                               "names a stored run"))
  cli.ended(lambda: globals()[argv[1]](cli.open_store(), argv[2:]))


if __name__ == "__main__":
  cli.run_main(main)
