"""How a binary ends (pipeline/cli.py): each kind of end gives its own exit status, one
`error:` line (a traceback only for a bug), and the same end in --result_json's "exit", for a
function that cli.run runs in a fresh process. No TensorFlow."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

from pipeline import errors

RUNFILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A main whose function ends as argv[1] says; the rest of argv are its flags.
MAIN = """
import sys
from pipeline import cli, errors
ends = {
    "done": lambda: [],
    "refused": lambda: (_ for _ in ()).throw(errors.Error("--x=1: give 2")),
    "check_failed": lambda: (_ for _ in ()).throw(errors.CheckFailed("the gate said no")),
    "internal": lambda: 1 / 0,
}
end = sys.argv.pop(1)
cli.run(ends[end])
"""


class ResultFileTest(parameterized.TestCase):

  @parameterized.parameters(
      ("done", 0, None),
      ("refused", errors.REFUSED, "--x=1: give 2"),
      ("check_failed", errors.CHECK_FAILED, "the gate said no"),
      ("internal", errors.INTERNAL, "ZeroDivisionError: division by zero"))
  def test_each_end_has_its_status_line_and_result(self, end, status, error):
    result_json = os.path.join(self.create_tempdir().full_path, "result.json")
    done = subprocess.run([sys.executable, "-c", MAIN, end, "--result_json=" + result_json],
                          capture_output=True, text=True, check=False, cwd=RUNFILES,
                          env=dict(os.environ, PYTHONPATH=RUNFILES))
    self.assertEqual(done.returncode, status, done.stderr[-2000:])
    lines = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
    self.assertLen(lines, 0 if status == 0 else 1, done.stderr[-2000:])
    self.assertEqual("Traceback" in done.stderr, end == "internal", done.stderr[-2000:])
    with open(result_json) as f:
      outcome = json.load(f)
    self.assertEqual(outcome["exit"], {"status": status, "reason": end, "error": error})
    self.assertEqual(outcome["stages"], [])

  def test_a_folder_for_the_result_file_is_refused_before_any_work(self):
    folder = self.create_tempdir().full_path
    done = subprocess.run([sys.executable, "-c", MAIN, "done", "--result_json=" + folder],
                          capture_output=True, text=True, check=False, cwd=RUNFILES,
                          env=dict(os.environ, PYTHONPATH=RUNFILES))
    self.assertEqual(done.returncode, errors.USAGE, done.stderr[-2000:])
    self.assertEqual(done.stderr, "error: --result_json=%s is a folder: give the path of a "
                                  "file\n" % folder)
    self.assertEqual(os.listdir(folder), [])


if __name__ == "__main__":
  absltest.main()
