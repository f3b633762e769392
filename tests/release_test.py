"""//seg:release through its binary on the tiny pipeline: the gate passes and refuses with
thresholds either side of the measured metrics, a refused model leaves nothing behind, the
release's bytes do not depend on what its process ran before, its names and versions, and its
SavedModel served by stock TensorFlow through both signatures."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
from PIL import Image
import yaml

from pipeline import code
from pipeline import errors
from pipeline import names

from tests.tiny_pipeline import made_in_new_store
from tests.tiny_pipeline import run
from tests.tiny_pipeline import stage_lines
from tests.tiny_pipeline import TINY

NAME = "tiny"

# Loads a release's SavedModel with stock TensorFlow only (no reproseg on the path), runs one
# image through both signatures (as uint8 pixels, and as PNG and JPEG files) and through the
# export's SavedModel, and prints the class ids of each as JSON.
_SERVE = """
import json, sys
import tensorflow as tf
release, export, image_path, png_path, jpeg_path = sys.argv[1:]
served = tf.saved_model.load(release).signatures
pixels = tf.io.decode_png(tf.io.read_file(image_path), channels=3)[None]
ids = lambda outputs: outputs["class_ids"].numpy().tolist()
print(json.dumps({
    "export": ids(tf.saved_model.load(export).signatures["serving_default"](images=pixels)),
    "uint8": ids(served["serving_default"](images=pixels)),
    "png": ids(served["encoded"](image_bytes=tf.io.read_file(png_path)[None])),
    "jpeg": ids(served["encoded"](image_bytes=tf.io.read_file(jpeg_path)[None])),
    "jpeg_decoded": ids(served["serving_default"](
        images=tf.io.decode_jpeg(tf.io.read_file(jpeg_path), channels=3)[None]))}))
"""


class ReleaseTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.store, evaluated = made_in_new_store("seg/evaluate")
    with open(os.path.join(cls.store, "objects", evaluated, "metrics.json")) as f:
      cls.metrics = json.load(f)

  def release(self, *args, store=None):
    return run("seg/release", TINY + ["--store=" + (store or self.store),
                                      "--release_name=" + NAME] + list(args))

  def store_command(self, *args):
    result = run("pipeline/store", list(args) + ["--store=" + self.store])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    return result.stdout

  def released(self, *args, store=None):
    """(release output digest, the version it was published as) of a run that must pass."""
    result = self.release(*args, store=store)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    line = next(l for l in result.stdout.splitlines() if "released as releases/" in l)
    return stage_lines(result.stdout)[-1][1], int(line.split()[2].split("/")[2])

  def test_a_model_below_a_bound_is_refused_with_its_numbers_and_nothing_stored(self):
    accuracy, iou = self.metrics["pixel_accuracy"], self.metrics["mean_iou"]
    listed = self.store_command("ls")
    result = self.release("--min_pixel_accuracy=%.6f" % (accuracy + 1e-4),
                          "--min_mean_iou=%.6f" % (iou + 1e-4))
    self.assertEqual(result.returncode, errors.CHECK_FAILED, result.stdout[-3000:])
    self.assertIn("pixel accuracy %.4f < %g (--min_pixel_accuracy)" % (
        accuracy, float("%.6f" % (accuracy + 1e-4))), result.stderr)
    self.assertIn("mean IoU %.4f < " % iou, result.stderr)
    self.assertIn("No release was written", result.stderr)
    self.assertEqual(self.store_command("ls"), listed)  # no output, no manifest, no name

  def test_a_model_on_the_right_side_of_every_bound_is_released_once(self):
    bounds = ("--min_pixel_accuracy=%.6f" % (self.metrics["pixel_accuracy"] - 1e-4),
              "--max_calibrated_ece=%.6f" % (self.metrics["ece"]["calibrated"] + 1e-4))
    digest, version = self.released(*bounds)
    again, same_version = self.released(*bounds)
    self.assertEqual((again, same_version), (digest, version))  # a cache hit, not a version
    folder = os.path.join(self.store, "releases", NAME, str(version))
    with open(os.path.join(folder, "assets.extra", "release.json")) as f:
      record = json.load(f)
    self.assertEqual(record["metrics"], self.metrics)
    self.assertEqual(len(record["checks"]), 2)
    self.assertEqual(set(record["made_from"]), {"synthetic", "download", "partition", "train",
                                                "calibrate", "evaluate", "export"})
    shown = json.loads(self.store_command("show", "releases/%s/%d" % (NAME, version)))
    self.assertEqual((shown["stage"], shown["output"]), ("release", digest))
    self.assertIn("releases/%s/%d" % (NAME, version), shown["releases"])
    self.assertIn("releases/%s/%d" % (NAME, version), self.store_command("ls"))

  def test_other_thresholds_are_another_release_and_the_next_version(self):
    first, version = self.released("--min_pixel_accuracy=0.01")
    second, next_version = self.released("--min_pixel_accuracy=0.02")
    self.assertNotEqual(first, second)  # the thresholds are in the record
    model_files = [{f: d for f, d in json.loads(self.store_command("show", o))["files"].items()
                    if not f.startswith("assets.extra/")} for o in (first, second)]
    self.assertEqual(model_files[0], model_files[1])
    self.assertEqual(next_version, version + 1)
    newest = json.loads(self.store_command("show", "releases/" + NAME))
    self.assertEqual(newest["output"], second)
    again = self.release("--min_pixel_accuracy=0.01")
    self.assertIn("released as releases/%s/%d" % (NAME, version), again.stdout)
    self.assertIn("note: releases/%s/%d is newer" % (NAME, next_version), again.stdout)

  def test_the_bytes_do_not_follow_what_the_process_ran_before(self):
    """In a fresh store the release is built in the process that trained and exported; in a
    second one, in a process that takes every other stage from the store."""
    built_after_training, _ = self.released("--min_pixel_accuracy=0.03",
                                            store=self.create_tempdir().full_path)
    store = self.create_tempdir().full_path
    for binary in ("seg/evaluate", "seg/export"):
      made = run(binary, TINY + ["--store=" + store])
      self.assertEqual(made.returncode, 0, made.stderr[-3000:])
    result = self.release("--min_pixel_accuracy=0.03", store=store)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    lines = stage_lines(result.stdout)
    self.assertEqual([name for name, _, _, hit in lines if not hit], ["release"])
    self.assertEqual(lines[-1][1], built_after_training)

  def test_stock_tensorflow_serves_both_signatures_with_export_masks(self):
    _, version = self.released("--min_pixel_accuracy=0")
    folder = self.create_tempdir().full_path
    rgb = np.random.default_rng(0).integers(0, 255, (43, 57, 3), dtype=np.uint8)
    rgb[10:30, 15:40] = (200, 120, 40)
    paths = {kind: os.path.join(folder, "image." + kind) for kind in ("png", "jpeg")}
    for kind, path in paths.items():
      Image.fromarray(rgb).save(path, kind.upper())
    released = os.path.join(self.store, "releases", NAME, str(version))
    with open(os.path.join(released, "assets.extra", "release.json")) as f:
      export = os.path.join(self.store, "objects", json.load(f)["made_from"]["export"],
                            "saved_model")
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, released, export, paths["png"], paths["png"],
         paths["jpeg"]], capture_output=True, text=True,
        check=False, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=folder)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    ids = json.loads(result.stdout)
    self.assertEqual(ids["uint8"], ids["export"])
    self.assertEqual(ids["png"], ids["export"])
    self.assertEqual(ids["jpeg"], ids["jpeg_decoded"])
    self.assertEqual(np.asarray(ids["export"]).shape, (1, 43, 57))

  def test_bad_names_and_bounds_are_refused_before_any_stage(self):
    for flag, named in (("--release_name=Tiny_Model", "'Tiny_Model' is not a release name"),
                        ("--min_mean_iou=1.5", "--min_mean_iou=1.5")):
      result = run("seg/release", TINY + ["--store=" + self.create_tempdir().full_path, flag])
      self.assertEqual(result.returncode, 1, result.stdout[-3000:])
      self.assertIn(named, result.stderr)
      self.assertEqual(stage_lines(result.stdout), [])

  def test_the_kserve_example_serves_the_default_release_of_the_real_dataset(self):
    with open(os.path.join(code.ROOT, "deploy", "k8s", "inferenceservice.yaml")) as f:
      service = next(d for d in yaml.safe_load_all(f) if d)
    name = service["metadata"]["name"]
    names.check_name(name)
    self.assertEqual(name, "oxford_iiit_pet".replace("_", "-"))  # release_main's default
    self.assertEqual(service["spec"]["predictor"]["tensorflow"]["storageUri"],
                     "pvc://reproseg-store/%s/%s" % (names.RELEASES, name))


if __name__ == "__main__":
  absltest.main()
