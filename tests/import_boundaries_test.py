"""The build's import check (tools/import_boundaries.py), run as Bazel built it, on small
trees: an import within the deps passes, and each kind of crossing is refused by file and line.
"""

import os
import subprocess
import textwrap

from absl.testing import absltest

RUNFILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKER = os.path.join(RUNFILES, "tools", "import_boundaries")


class ImportBoundariesTest(absltest.TestCase):

  def check(self, files, checked, allowed):
    """Runs the checker on files {path: text} in a fresh folder, as the genrule of
    //seg/serve:serve whose sources are checked; returns (exit status, stderr, stamp or None)."""
    root = self.create_tempdir().full_path
    for path, text in files.items():
      os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
      with open(os.path.join(root, path), "w") as f:
        f.write(textwrap.dedent(text))
    done = subprocess.run(
        [CHECKER, "--target=//seg/serve:serve", "--checked=" + ",".join(checked),
         "--allowed=" + ",".join(allowed), "--out=stamp.txt"] + sorted(files),
        cwd=root, capture_output=True, text=True, check=False)
    stamp = os.path.join(root, "stamp.txt")
    return done.returncode, done.stderr, (open(stamp).read() if os.path.exists(stamp) else None)

  def test_imports_within_the_deps_pass(self):
    status, err, stamp = self.check({
        "seg/serve/__init__.py": '"""Serving."""\n',
        "seg/serve/export.py": """\
            import numpy
            from seg.model import unet
            from seg.model.unet import build  # a name in a module
            import seg.serve.photos
            def f():
              from pipeline import files  # inside a function too
            """,
        "seg/serve/photos.py": "",
        "seg/model/unet.py": "",
        "pipeline/files.py": "",
    }, ["seg/serve/__init__.py", "seg/serve/export.py", "seg/serve/photos.py"],
        ["seg/model", "pipeline"])
    self.assertEqual((status, err), (0, ""))
    self.assertEqual(stamp, "3 files of //seg/serve:serve checked: every import is within its "
                            "deps\n")

  def test_an_import_of_a_package_not_in_the_deps_is_refused(self):
    status, err, stamp = self.check({
        "seg/serve/export.py": "import os\nfrom seg.evaluation import calibrate\n",
        "seg/evaluation/calibrate.py": "",
        "seg/model/unet.py": "",
    }, ["seg/serve/export.py"], ["seg/model"])
    self.assertEqual((status, stamp), (1, None))
    self.assertEqual(err, "error: seg/serve/export.py:2 imports seg.evaluation.calibrate, from "
                          "//seg/evaluation, which is not in the deps of //seg/serve:serve: add "
                          "it in seg/serve/BUILD.bazel, or move the code\n")

  def test_an_import_of_a_module_the_build_does_not_give_is_refused(self):
    status, err, _ = self.check({"seg/serve/export.py": "\n\nimport pipeline.cli\n"},
                                ["seg/serve/export.py"], ["pipeline"])
    self.assertEqual(status, 1)
    self.assertEqual(err, "error: seg/serve/export.py:3 imports pipeline.cli, which is in no dep "
                          "of //seg/serve:serve: add the library that holds it to its deps in "
                          "seg/serve/BUILD.bazel, or move the code\n")

  def test_a_relative_import_is_refused(self):
    status, err, _ = self.check({"seg/serve/export.py": "from . import photos\n",
                                 "seg/serve/photos.py": ""},
                                ["seg/serve/export.py", "seg/serve/photos.py"], [])
    self.assertEqual(status, 1)
    self.assertIn("error: seg/serve/export.py:1: a relative import: write it absolute", err)

  def test_code_in_an_init_file_is_refused(self):
    status, err, _ = self.check({"seg/serve/__init__.py": '"""Serving."""\nimport os\n'},
                                ["seg/serve/__init__.py"], [])
    self.assertEqual(status, 1)
    self.assertIn("error: seg/serve/__init__.py:2 holds code: a folder's __init__.py is in the "
                  "key of every stage that imports the folder", err)


if __name__ == "__main__":
  absltest.main()
