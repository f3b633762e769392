"""What every stage's main shares: the --store flags, plain error reports, and the outcome as
a file (--result_json)."""

import dataclasses
import errno
import os
import shlex
import sys
import traceback
import typing

from absl import app
from absl import flags

from pipeline import commands
from pipeline import errors
from pipeline import file_systems
from pipeline import files
from pipeline import logs
from pipeline import names
from pipeline import stage
from pipeline import stopping
from pipeline import store as storelib
from pipeline import user_input
from pipeline import version

FLAGS = flags.FLAGS

user_input.define_path(
    "store", None,
    "Root of the content-addressed store. Default: $REPROSEG_STORE, else "
    "$XDG_CACHE_HOME/reproseg/store, else ~/.cache/reproseg/store; the same under `bazel run` "
    "and in a shell. Its location is not part of any stage key.")
flags.DEFINE_bool(
    "verify_store", False,
    "On a cache hit, recompute the stored output's digest and fail if its bytes changed.")
flags.DEFINE_bool(
    "verify_inputs", True,
    "Before a stage builds from stored outputs, re-hash them and stop if any is damaged. "
    "Reads each input once per stage that builds: 1.6-2.3 s here for the full dataset's "
    "partition output (about 1.5 GB); --noverify_inputs skips it.")
flags.DEFINE_string(
    "run_name", None,
    "A name for this command's run (its last stage's key): lower-case letters, digits and "
    "'-'. `store runs` shows it and the store's commands take it for a key; given to another "
    "run, it moves there. Not part of any key.")
user_input.define_path(
    "result_json", None,
    "Write the command's outcome to this file, as JSON, when it ends however it ends (but for a "
    "second stop signal, which ends it at once, or SIGKILL; of local workers, their chief "
    "writes it): each stage's key, output digest and folder, "
    "whether it was a cache hit, its headline metrics, and the exit status and its reason. "
    "Scripts read this, not the printed lines. A file there before is removed at the start. "
    "Not part of any key.")

# How the process ends, for --result_json: "reason" (errors.Error.reason, "stopped",
# "internal") and "error" (its line), set where the end is decided; "path": the file, once
# known; "workers": the local workers' chief writes it instead (leave_result_to_workers).
_ending = {}


def leave_result_to_workers():
  """Leaves --result_json to the chief of the local workers this process starts."""
  _ending["workers"] = True


def naming_line(name, stage_name, key, before):
  """"  named NAME: the train run 7258e7a4d6f83730 (before: a7321754d81e4af6)"."""
  moved = " (before: %s)" % before[:16] if before and before != key else ""
  return "  named %s: the %s run %s%s" % (name, stage_name, key[:16], moved)


def name_last(results):
  """Gives --run_name, if set, to the run of results' last stage; its naming_line, or None."""
  if not FLAGS.run_name:
    return None
  last = results[-1]
  return naming_line(FLAGS.run_name, last.name, last.key,
                     names.name_run(open_store(), FLAGS.run_name, last.key))


def open_store(planning=False):
  """The store of the flags; planning: opened for a dry run (pipeline.planning)."""
  return storelib.Store(FLAGS.store, verify_on_hit=FLAGS.verify_store,
                        verify_inputs=FLAGS.verify_inputs, planning=planning)


_HELP = ("--help", "-h", "-?", "--helpshort")


def version_line():
  """"reproseg VERSION, code DIGEST (N source files)": what --version prints."""
  tree, count = version.code_digest()
  return "reproseg %s, code %s (%d source files)" % (version.VERSION, tree, count)


def usage(doc):
  """A binary's docstring as this install runs it: a first line "bazel run TARGET -- ARGS", for
  a TARGET with a packaged command, becomes pipeline.commands.command(TARGET, ARGS): the
  packaged command, `./dev bazel run` or, in a Nix shell, `bazel run`."""
  first, newline, rest = doc.partition("\n")
  target, _, arguments = first[len("bazel run "):].partition(" -- ")
  if first.startswith("bazel run ") and target in commands.PACKAGED_NAMES:
    first = commands.command(target, arguments)
  return first + newline + rest


def help_text(main_module, flag_groups):
  """The binary's docstring (usage), its own flags, then each (title, module)'s flags."""
  sections = [usage((main_module.__doc__ or "").strip())]
  for title, module in [("its own", "__main__")] + list(flag_groups):
    listed = FLAGS.module_help(module).strip().split("\n", 1)  # drop absl's module heading
    if len(listed) == 2:
      sections.append("%s flags (%s):\n%s" % (
          title, getattr(module, "__name__", os.path.basename(sys.argv[0])), listed[1]))
  sections.append("exit status:\n" + "\n".join("  %-6s %s" % (status, words)
                                                for status, words in errors.STATUSES))
  sections.append("--helpfull lists every flag, absl's and TensorFlow's included.")
  return "\n\n".join(sections)


def _duration(seconds):
  minutes, seconds = divmod(round(seconds), 60)
  return "%dm%02ds" % (minutes, seconds) if minutes else "%ds" % seconds


def summary(results, next_target=None, notes=()):
  """Lines closing a run: each stage's cache hit or time and folder (in a dry run, "would
  compute" and why, pipeline.planning), the headline metrics
  (a stage's details["headline"]), the notes (lines), and the command to try next with the
  same flags. Indented, so that no line but a stage's digest line starts with the stage's
  name."""
  planned = any(isinstance(r, stage.Planned) for r in results)  # a dry run's
  row = "  %-10s %-14s %s" if planned else "  %-10s %-13s %s"
  lines = ["", row % ("stage", "result", "output folder" + (
      ", or why it would compute" if planned else ""))] if results else []
  for r in results:
    if isinstance(r, stage.Planned):
      lines.append(row % (r.name, "would compute", r.reason or "not stored"))
      continue
    took = ("cache hit" if r.cached else
            "made in " + _duration(r.manifest["provenance"]["wall_seconds"]))
    lines.append(row % (r.name, took, r.path))
  for r in results:
    headline = (r.manifest.get("details") or {}).get("headline")
    if headline:
      lines.append("  %s: %s" % (r.name, headline))
  measured = _metrics(results[-1]) if results else {}  # none of a Planned stage
  if measured:  # Katib's metrics format, name=value, of the stage the command is for
    lines.append("  metrics: " + " ".join("%s=%r" % item for item in measured.items()))
  lines.extend(notes)
  if next_target:
    target, *extra = next_target
    lines.append(next_command(target, sys.argv, extra))
  return lines


def _metrics(result):
  """A stage Result's headline metrics ({name: number}, its details["metrics"]), by name: the
  order a cache hit reads them in, from a manifest stored with sorted keys; a Planned stage's
  manifest has no details."""
  return dict(sorted(((result.manifest.get("details") or {}).get("metrics") or {}).items()))


def without_flag(arguments, name):
  """arguments without the flag name and its value: --name=V, --name V, -name=V or -name V."""
  spelled = ("--" + name, "-" + name)
  return [a for i, a in enumerate(arguments)
          if a.split("=")[0] not in spelled and (i == 0 or arguments[i - 1] not in spelled)]


def _for_next_command(arguments):
  """arguments without --run_name and --result_json, which belong to this run, and with
  --run_name= (no name) after a --flagfile, which may hold one."""
  kept = without_flag(without_flag(arguments, "run_name"), "result_json")
  if any(a.lstrip("-").startswith("flagfile") for a in kept):
    kept.append("--run_name=")
  return kept


def next_command(target, argv, extra=()):
  """"next: ./dev bazel run TARGET -- FLAGS": the Bazel target to try next with the flags of
  argv (argv[0] is the program) but this run's own (_for_next_command), and extra ones; from
  the flake's packages, "next: reproseg-NAME FLAGS" (pipeline/commands.py)."""
  arguments = " ".join([shlex.quote(a) for a in _for_next_command(argv[1:])] + list(extra))
  return "next: " + commands.command(target, arguments)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What a binary's function returns when it has more to say than its stage Results: notes,
  lines that close the summary (before the next command), and an errors.Error to end with once
  they are printed (predict's count of photos it could not segment), or None. dry_run: the
  results of a dry run (pipeline.planning): nothing is named, linked or suggested next."""
  results: list
  notes: tuple = ()
  error: typing.Optional[errors.Error] = None
  dry_run: bool = False


def run(function, flag_groups=(), next_target=None, stores_runs=True):
  """app.run(main) for a stage: main takes no positional arguments, calls function(), prints
  each stage result it returns (a list of Results, or an Outcome), then the summary, and ends
  as ended() says. The local workers' launcher, whose chief prints the results, returns
  instead an exit status, an int: the process ends with it, printing nothing more.

  flag_groups: (title, module) pairs, the modules whose flags this binary reads; --help lists
  their flags by group after the binary's own.
  next_target: (Bazel target, extra flag...) a user would run next, with this run's flags, or
  a function that returns one or None once the flags are parsed.
  stores_runs: False for a binary whose result is not a stage's output (predict): it refuses
  --run_name.
  """

  def stages():
    if FLAGS.run_name:
      if not stores_runs:
        raise errors.Error("--run_name names the run of a stage, and this command's result "
                           "is not one: drop it")
      names.check_run_name(FLAGS.run_name)
    returned = function()
    if isinstance(returned, int):
      return returned
    outcome = returned if isinstance(returned, Outcome) else Outcome(returned)
    if outcome.dry_run:
      return outcome
    named = name_last(outcome.results) if outcome.results else None
    if outcome.results and stores_runs:
      logs.refresh(open_store())
    return dataclasses.replace(outcome, notes=((named,) if named else ()) + tuple(outcome.notes))

  def main(argv):
    if len(argv) > 1:
      exit_with(errors.UsageError("unexpected arguments %s: every input is a --flag (see "
                                  "--help)" % " ".join(argv[1:])))
    outcome = ended(stages)
    if isinstance(outcome, int):
      sys.exit(outcome)
    for result in outcome.results:
      stage.report(result)
    if outcome.results or outcome.notes:
      suggested = None if outcome.dry_run else (
          next_target() if callable(next_target) else next_target)
      print("\n".join(summary(outcome.results, suggested, outcome.notes)))
    if outcome.error:
      exit_with(outcome.error)

  run_main(main, flag_groups)


def run_main(main, flag_groups=()):
  """app.run(main) from the folder the user ran the binary in, with a flag that does not
  parse reported as one `error:` line (exit status errors.USAGE), --help as help_text (exit
  status 0), and a stop signal as one line (exit status 128 + N; pipeline.stopping)."""
  chdir_to_working_directory()
  if any(arg in _HELP for arg in sys.argv[1:]):
    print(help_text(sys.modules["__main__"], flag_groups))
    sys.exit(0)
  if "--version" in sys.argv[1:]:
    print(version_line())
    sys.exit(0)
  try:
    stopping.watch()
    app.run(main, flags_parser=_parse_flags)
  except stopping.Stopped as stopped:
    sys.stdout.flush()
    sys.stderr.write(stopped.line())
    _ending.update(reason="stopped", error=stopped.line().strip())
    sys.exit(_write_result(stopped.status))
  except SystemExit as e:
    sys.exit(_write_result(e.code or 0))


def _parse_flags(argv):
  try:
    parsed = FLAGS(argv)
  except flags.Error as e:
    _ending["path"] = _result_path_in(argv)  # a usage record, if the path can be read
    exit_with(errors.UsageError("%s (--help lists the flags)" % e))
  path = FLAGS.result_json
  if path and os.path.isdir(path):
    exit_with(errors.UsageError("--result_json=%s is a folder: give the path of a file" % path))
  try:
    if path and os.path.lexists(path):
      os.remove(path)  # so that a file there says how this run ended
  except OSError as e:
    exit_with(as_error(e) or errors.Error("--result_json=%s: %s" % (path, e.strerror)))
  _ending["path"] = path
  return parsed


def _result_path_in(argv):
  """The last --result_json=PATH of a command line that did not parse, expanded, or None."""
  given = [a.split("=", 1)[1] for a in argv if a.startswith("--result_json=")]
  try:
    return user_input.expand_path(given[-1], "--result_json") if given else None
  except errors.Error:
    return None


def result_record(status):
  """--result_json's content for a process ending with exit status status."""
  reason = _ending.get("reason") or ("done" if status == 0 else "failed")
  return {"command": os.path.basename(sys.argv[0]).replace("_main.py", ""),
          "version": version.VERSION,
          "exit": {"status": status, "reason": reason, "error": _ending.get("error")},
          "stages": [{"stage": r.name, "key": r.key, "output": r.digest, "path": r.path,
                      "cache_hit": r.cached, "metrics": _metrics(r),
                      "would_compute": isinstance(r, stage.Planned)}
                     for r in stage.finished()]}


def _write_result(status):
  """Writes result_record(status) to --result_json, if given; returns the exit status, that of
  an errors.Error if the file cannot be written."""
  path = _ending.get("path")
  if not path or _ending.get("workers"):
    return status
  try:
    files.write_json(path, result_record(status))
  except OSError as e:
    error = as_error(e) or errors.Error("%s: %s" % (path, e.strerror))
    print("error: --result_json: %s" % error, file=sys.stderr)
    return status or error.exit_status
  return status


def exit_with(error):
  """Ends the process with an errors.Error: its `error:` line on stderr, its exit status."""
  print("error: %s" % error, file=sys.stderr)
  exit_as(error)


def exit_as(error):
  """Ends the process with an errors.Error's exit status and reason, printing nothing: for a
  command whose output has said it (store verify's damaged outputs, store check's files)."""
  _ending.update(reason=error.reason, error=str(error))
  sys.exit(error.exit_status)


def as_error(error):
  """The errors.Error to report for an exception, or None for a bug: error itself, or an
  OSError (or TensorFlow error) of a full or read-only file system, or of a permission
  denied, in words that name the file, its file system and the fix."""
  if isinstance(error, errors.Error):
    return error
  if file_systems.is_no_space(error):  # an OSError names its file; TensorFlow's errors do not
    path = getattr(file_systems.os_error(error, file_systems.NO_SPACE), "filename", None)
    return errors.NoSpaceError(
        "no space left on %s, writing %s: free space there, or write elsewhere (--store, "
        "--output_dir)" % (file_systems.describe(path or "."), path or "a file"))
  read_only = file_systems.os_error(error, (errno.EROFS,))
  if read_only:
    return errors.NotWritableError(
        "cannot write %s, on %s: give a folder you can write (--store, --output_dir)"
        % (read_only.filename, file_systems.describe(read_only.filename or ".")))
  denied = file_systems.os_error(error, (errno.EACCES, errno.EPERM))
  if denied:
    return errors.Error("%s: %s: give a file or folder this user may use, or change its "
                        "permissions" % (denied.filename, denied.strerror))
  return None


def ended(function, *args):
  """function(*args), or, if it raises, the end of the process: an errors.Error (as_error) as
  one `error:` line and its exit status; any other exception as its traceback, a line saying
  it is a bug, and exit status errors.INTERNAL; any exception once a stop signal was taken
  as that signal's Stopped (run_main reports it)."""
  try:
    result = function(*args)
  except Exception as e:  # pylint: disable=broad-except
    if stopping.taken():
      raise stopping.taken() from None  # what the stop signal unwound, in another guise
    error = as_error(e)
    if error is None:
      traceback.print_exc()
      print("error: internal error (a bug: the traceback above says where; please report it "
            "with the command that gave it)", file=sys.stderr)
      _ending.update(reason="internal", error="%s: %s" % (type(e).__name__, e))
      sys.exit(errors.INTERNAL)
    exit_with(error)
  if stopping.taken():  # Stopped raised where Python drops exceptions (a __del__, a callback)
    raise stopping.taken()
  return result


def chdir_to_working_directory():
  """`bazel run` starts binaries in their runfiles tree; relative paths in flags (--source,
  --store, --flagfile, ...) mean the folder the user ran it from."""
  if os.environ.get("BUILD_WORKING_DIRECTORY"):
    os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
