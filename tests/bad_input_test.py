"""Every binary, on a table of bad inputs: each row must end in one `error:` line that says
what was wrong, no traceback, the exit status pipeline/errors.py documents, and a store that
is unchanged (nothing half-written in tmp/, no new manifest). A read-only store still serves
its cache hits. Adding a case is one row of CASES.

The read-only store and the full disk are made in a mount namespace of the test's own
(`unshare --user --map-root-user --mount`): a read-only bind mount of the store, a 4 MB tmpfs
as the store. chmod would not do: CI runs the tests as root, whom permissions do not stop.
"""

import dataclasses
import os
import shutil
import subprocess

from absl.testing import absltest
from absl.testing import parameterized

from pipeline import errors
from pipeline import stage
from tests import tiny_pipeline as tiny

USAGE, REFUSED, DAMAGED = errors.USAGE, errors.REFUSED, errors.DAMAGED
NO_SPACE, NOT_WRITABLE = errors.NO_SPACE, errors.NOT_WRITABLE
STORE = "pipeline/store"

# The user's files the cases name as {files}/NAME.
FILES = {
    "empty.json": "",
    "array.json": "[1, 2]",
    "broken.json": '{"learning_rate": 0.001,',
    "nan.json": '{"learning_rate": NaN}',
    "twice.json": '{"learning_rate": 0.001, "learning_rate": 0.01}',
    "latin1.json": b'{"model_arch": "\xe9"}',
    "unknown_key.json": '{"learning_rat": 0.001}',
    "string_rate.json": '{"learning_rate": "0.001"}',
    "seed_infinity.json": '{"learning_rate": Infinity}',
    "space_infinity.json": '{"learning_rate": {"low": 0.0001, "high": Infinity, "log": true}}',
    "space_twice.json": ('{"learning_rate": {"low": 0.0001, "high": 0.01}, '
                         '"learning_rate": {"low": 0.1, "high": 0.2}}'),
    "space_reversed.json": '{"learning_rate": {"low": 0.01, "high": 0.0001}}',
    "space_empty.json": "{}",
    "space_unknown.json": '{"momentum": {"low": 0.1, "high": 0.9}}',
    "not_an_image.png": "this is text",
    "empty.png": "",
    "photos/a.txt": "not a photo",
}
# TF_CONFIG values of a cluster worker.
NAN_CLUSTER = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": NaN}}'
TWICE_CLUSTER = ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", '
                 '"index": 0, "index": 1}}')


@dataclasses.dataclass(frozen=True)
class Case:
  """binary (as tiny.run names it) run with args ({store}, {files}, {locked}, {out}, {export}:
  the export's digest, {model}: its folder, filled in)
  where: "store" (the tiny pipeline's store), "read_only" (the same, mounted read-only, and
  {locked} with it), "full" (a 4 MB tmpfs as the store) or "damaged" (a copy of the store
  whose partition output has a flipped byte); it must exit with status, and its `error:`
  line hold words."""
  binary: str
  args: tuple
  status: int
  words: str
  where: str = "store"
  env: tuple = ()

  def name(self):
    return "%s %s (%s)" % (self.binary, " ".join(self.args), self.where)


def case(binary, args, status, words, where="store", env=()):
  return Case(binary, tuple(args.split()), status, words, where, tuple(env))


T = "seg/train"
TINY = " ".join(tiny.TINY)
CASES = [
    # Command lines that do not parse.
    case(T, TINY + " --bogus_flag", USAGE, "Unknown command line flag 'bogus_flag'"),
    case(T, TINY + " --batch_size=eight", USAGE, "flag --batch_size=eight"),
    case(T, TINY + " stray", USAGE, "unexpected arguments stray"),
    case(STORE, "", USAGE, "give a command: ls, runs"),
    case(STORE, "frobnicate", USAGE, "give a command"),
    case(T, TINY + " --store=~no_such_user_zz/store", USAGE, "~no_such_user_zz names no home"),
    case("seg/predict", "--image=~no_such_user_zz/a.png", USAGE, "names no home folder"),
    case("seg/tune", TINY + " --search_space=~no_such_user_zz/s.json", USAGE, "no home folder"),
    # Config and hyperparameter files, read strictly.
    case(T, TINY + " --config={files}/missing.json", REFUSED, "cannot read config"),
    case(T, TINY + " --config={files}/empty.json", REFUSED, "empty.json is empty"),
    case(T, TINY + " --config={files}/array.json", REFUSED, "must hold a JSON object, not array"),
    case(T, TINY + " --config={files}/broken.json", REFUSED, "is not valid JSON"),
    case(T, TINY + " --config={files}/nan.json", REFUSED, "NaN is not a JSON number"),
    case(T, TINY + " --config={files}/twice.json", REFUSED, '"learning_rate" is given twice'),
    case(T, TINY + " --config={files}/latin1.json", REFUSED, "is not UTF-8 text"),
    case(T, TINY + " --config={files}/unknown_key.json", REFUSED, "unknown keys ['learning_rat']"),
    case(T, TINY + " --config={files}/string_rate.json", REFUSED, "expected a finite number > 0"),
    case(T, TINY + " --hyperparam_fn_path={files}/seed_infinity.json", REFUSED,
         "Infinity is not a JSON number"),
    # Flag values out of range.
    case(T, TINY + " --learning_rate=inf", REFUSED, "--learning_rate=inf: expected a finite"),
    case(T, TINY + " --learning_rate=nan", REFUSED, "--learning_rate=nan: expected a finite"),
    case(T, TINY + " --batch_size=0", REFUSED, "--batch_size=0: expected an integer ≥ 1"),
    case(T, TINY + " --micro_batches=3", REFUSED, "does not split"),
    case(T, TINY + " --workers=3", REFUSED, "--workers=3 does not divide"),
    case(T, TINY + " --backbone_weights={files}/missing.h5", REFUSED, "backbone_weights"),
    case(T, TINY + " --run_name=Bad_Name", REFUSED, "'Bad_Name' is not a run name"),
    case(T, TINY + " --distribute=multi_worker", REFUSED, "TF_CONFIG: NaN is not a JSON number",
         env=(("TF_CONFIG", NAN_CLUSTER),)),
    case(T, TINY + " --distribute=multi_worker", REFUSED, '"index" is given twice',
         env=(("TF_CONFIG", TWICE_CLUSTER),)),
    # Search spaces.
    case("seg/tune", TINY + " --search_space={files}/space_infinity.json", REFUSED,
         "Infinity is not a JSON number"),
    case("seg/tune", TINY + " --search_space={files}/space_twice.json", REFUSED,
         '"learning_rate" is given twice'),
    case("seg/tune", TINY + " --search_space={files}/space_reversed.json", REFUSED, "low"),
    case("seg/tune", TINY + " --search_space={files}/space_empty.json", REFUSED,
         "must hold a JSON object of parameters"),
    case("seg/tune", TINY + " --search_space={files}/space_unknown.json", REFUSED,
         "unknown hyperparameter 'momentum'"),
    # Photos and models given to predict.
    case("seg/predict", "--model={model} --image={files}/missing.png", REFUSED, "missing.png"),
    case("seg/predict", TINY + " --store={store} --image={files}/not_an_image.png", REFUSED,
         "not_an_image.png"),
    case("seg/predict", TINY + " --store={store} --image={files}/empty.png", REFUSED, "empty.png"),
    case("seg/predict", TINY + " --store={store} --images={files}/no_such_folder", REFUSED,
         "no_such_folder"),
    case("seg/predict", "--model={files}/photos --image={files}/empty.png", REFUSED, "photos"),
    # The store's commands.
    case(STORE, "show 0123abcd --store={store}", REFUSED, "0123abcd"),
    case(STORE, "diff 0123abcd --store={store}", REFUSED, "diff takes two"),
    # Damaged stored data, found by the check before a build or by the build itself.
    case("seg/evaluate", TINY + " --epochs=3", DAMAGED, "is damaged", where="damaged"),
    case("seg/evaluate", TINY + " --epochs=3 --noverify_inputs", DAMAGED,
         "failed reading its input 'splits'", where="damaged"),
    case(STORE, "verify", DAMAGED, "", where="damaged"),
    # A store that cannot be written: what must write says so.
    case("seg/evaluate", TINY + " --epochs=3", NOT_WRITABLE, "is read-only here",
         where="read_only"),
    case("seg/evaluate", TINY + " --run_name=named", NOT_WRITABLE, "naming a run (named)",
         where="read_only"),
    case(STORE, "gc --nodry_run", NOT_WRITABLE, "gc must write to the store",
         where="read_only"),
    case(STORE, "verify --remove_damaged", NOT_WRITABLE, "verify --remove_damaged must write",
         where="read_only_damaged"),
    case("seg/predict", TINY + " --store={store} --image={files}/photo.png "
         "--output_dir={locked}/out", NOT_WRITABLE, "cannot write", where="read_only"),
    # A full disk.
    case(T, TINY, NO_SPACE, "no space left on the tmpfs file system", where="full"),
]

# What a read-only store still does: cache hits, the store's reading commands, predict, and a
# dry run of what would compute (the case refused above, planned).
READ_ONLY_WORKS = [
    case("seg/evaluate", TINY, 0, ""),
    case("seg/evaluate", TINY + " --epochs=3 --dry_run", 0, ""),
    case("seg/export", TINY, 0, ""),
    case(STORE, "ls", 0, ""),
    case(STORE, "runs", 0, ""),
    case(STORE, "show {export}", 0, ""),
    case(STORE, "verify", 0, ""),
    case("seg/predict", TINY + " --store={store} --image={files}/photo.png "
         "--output_dir={out}", 0, ""),
]


def _snapshot(store):
  """{relative path: size} of a store's files and tmp/'s entries, but its locks and the
  TensorBoard logs of runs (which a failed run keeps, as `store gc` does)."""
  found = {}
  for dirpath, _, filenames in os.walk(store):
    for name in filenames:
      path = os.path.join(dirpath, name)
      parts = os.path.relpath(path, store).split(os.sep)
      if parts[0] != "locks" and parts[2:3] != [stage.LOGS_FOLDER]:
        found[os.path.join(*parts)] = os.path.getsize(path)
  return found


class BadInputTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.store, cls.export = tiny.made_in_new_store("seg/export")
    evaluated = tiny.run("seg/evaluate", tiny.TINY + ["--store=" + cls.store])
    assert not evaluated.returncode, evaluated.stderr[-3000:]
    tmp = os.environ["TEST_TMPDIR"]
    cls.files = os.path.join(tmp, "files")
    for name, text in FILES.items():
      path = os.path.join(cls.files, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    shutil.copy(os.path.join(tiny.RUNFILES, "tests", "testdata", "cases", "mixed_dir", "a.png"),
                os.path.join(cls.files, "photo.png"))
    cls.locked = os.path.join(tmp, "locked")
    os.makedirs(cls.locked)
    cls.damaged = os.path.join(tmp, "damaged")
    shutil.copytree(cls.store, cls.damaged, symlinks=True)
    partition = [m for m in os.listdir(os.path.join(cls.damaged, "objects"))
                 if os.path.exists(os.path.join(cls.damaged, "objects", m, "splits.json"))][0]
    record = os.path.join(cls.damaged, "objects", partition, "training-00000-of-00001.tfrecord")
    os.chmod(record, 0o644)
    with open(record, "r+b") as f:
      f.seek(2000)
      byte = f.read(1)
      f.seek(2000)
      f.write(bytes([byte[0] ^ 0xFF]))
    cls.full = os.path.join(tmp, "full")
    os.makedirs(cls.full)

  def run_case(self, c):
    """(CompletedProcess, store path) of a case, in its mount namespace if it needs one."""
    store = {"damaged": self.damaged, "read_only_damaged": self.damaged,
             "full": self.full}.get(c.where, self.store)
    out = self.create_tempdir().full_path
    args = [a.format(store=store, files=self.files, locked=self.locked, out=out,
                     export=self.export, model=os.path.join(store, "objects", self.export))
            for a in c.args]
    if "--store=" not in " ".join(args) and (c.binary == STORE or "--dataset" in " ".join(args)):
      args.append("--store=" + store)
    argv, env = tiny.command(c.binary, dict(c.env))
    if c.where.startswith("read_only"):
      argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              'mount --bind -o ro "$1" "$1" && mount --bind -o ro "$2" "$2" && shift 2 && '
              'exec "$@"', "sh", store, self.locked] + argv
    elif c.where == "full":
      argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              'store=$1 && shift && mount -t tmpfs -o size=4m tmpfs "$store" && "$@"; '
              'status=$?; echo "tmp: $(ls -A "$store/tmp")"; exit $status', "sh", store] + argv
    result = subprocess.run(argv + args, capture_output=True, text=True, env=env, timeout=600,
                            check=False)
    return result, store

  @parameterized.parameters(*[(c,) for c in CASES])
  def test_one_error_line_its_status_and_an_unchanged_store(self, c):
    store = {"damaged": self.damaged, "read_only_damaged": self.damaged}.get(c.where,
                                                                             self.store)
    before = _snapshot(store)
    result, _ = self.run_case(c)
    said = "%s\nstdout:\n%s\nstderr:\n%s" % (c.name(), result.stdout[-2000:],
                                            result.stderr[-3000:])
    self.assertEqual(result.returncode, c.status, said)
    self.assertNotIn("Traceback", result.stderr, said)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if c.words:  # store verify reports its damaged outputs on stdout, as a table
      self.assertLen(lines, 1, said)
      self.assertIn(c.words, lines[0], said)
    self.assertEqual(_snapshot(store), before, said)
    if c.where == "full":  # the tmpfs went with its namespace: its tmp/ was listed in it
      self.assertIn("tmp: \n", result.stdout, said)

  @parameterized.parameters(*[(c,) for c in READ_ONLY_WORKS])
  def test_a_read_only_store_serves_what_it_holds(self, c):
    result, _ = self.run_case(dataclasses.replace(c, where="read_only"))
    self.assertEqual(result.returncode, 0, "%s\n%s" % (c.name(), result.stderr[-3000:]))
    self.assertNotIn("error:", result.stderr)

  def test_the_table_is_large_enough(self):
    self.assertGreaterEqual(len(CASES), 30)


if __name__ == "__main__":
  absltest.main()
