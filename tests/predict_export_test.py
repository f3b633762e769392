"""Export and predict through their binaries, as a user runs them: reproducible export bytes,
the export loaded by stock TensorFlow and Keras in a process without reproseg (no op of the
fixed-order kernels in it), and photos of
every kind (any size, EXIF rotation, CMYK, grey, 16-bit grey, alpha, no suffix) next to files
that are not photos, an AppleDouble file and one over --max_image_pixels."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
from PIL import Image

from tests.tiny_pipeline import made_in_new_store
from tests.tiny_pipeline import run
from tests.tiny_pipeline import RUNFILES
from tests.tiny_pipeline import stage_lines
from tests.tiny_pipeline import TINY

# Loads an export with stock TensorFlow and Keras only (no reproseg on the path) and prints
# the SavedModel's and the .keras model's class ids for one image as JSON.
_STOCK_LOADER = """
import json, sys
import numpy as np, tensorflow as tf, keras
from PIL import Image
export, image_path = sys.argv[1:]
image = np.asarray(Image.open(image_path).convert("RGB"))[None]
serve = tf.saved_model.load(export + "/saved_model").signatures["serving_default"]
saved = serve(images=tf.constant(image))["class_ids"].numpy()[0]
model = keras.saving.load_model(export + "/model.keras")
size = model.input_shape[1]
probabilities = model(tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True))
probabilities = tf.image.resize(probabilities, image.shape[1:3])
print(json.dumps({"saved_model": saved.tolist(),
                  "keras": tf.argmax(probabilities, -1).numpy()[0].tolist()}))
"""

# Exports a 32-px U-Net with fixed weights into argv[1], after building unrelated models and
# tracing a function first if argv[2] is "busy"; prints the export's tree digest and, as the
# control, the digest of a plain tf.saved_model.save of the same serving module.
_EXPORT_AFTER = """
import sys
import numpy as np
from pipeline import determinism, digest
settings = determinism.resolve()
determinism.apply(settings)
import keras, tensorflow as tf
from seg.configs import config
from seg.model import factory
from seg.serve import export
out, busy = sys.argv[1], sys.argv[2] == "busy"
info, model_config = {"image_size": 32, "num_classes": 3}, config.ModelConfig()
if busy:
  keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  other = factory.for_splits(model_config, info, settings, stock=True)
  tf.function(lambda x: other(x))(tf.zeros([1, 32, 32, 3]))
model = factory.for_splits(model_config, info, export.serving_settings(settings))
for i, variable in enumerate(model.variables):
  variable.assign(np.random.default_rng(i).normal(0, 0.05, variable.shape))
export.export(model, model_config, info, settings, 1.5, out)
tf.saved_model.save(export.Segmenter(model, 1.5, 32), out + "-plain")
print(digest.tree_digest(out), digest.file_digest(out + "-plain/saved_model.pb"))
"""


def _photos(folder):
  """{name: path} of odd-sized photos in every mode, a file that is not a photo, a truncated
  one, an AppleDouble file and a 200x200 1-bit PNG (a bomb for --max_image_pixels=10000)."""
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 255, (43, 57, 3), dtype=np.uint8)
  rgb[10:30, 15:40] = (200, 120, 40)  # a pet-coloured patch
  paths = {}

  def path(name):
    paths[name] = os.path.join(folder, name)
    return paths[name]

  rotated = Image.fromarray(rgb)
  exif = rotated.getexif()
  exif[0x0112] = 6  # EXIF orientation: rotate 90° on display
  rotated.save(path("rotated.jpg"), exif=exif)
  Image.fromarray(rgb).convert("CMYK").save(path("cmyk.jpg"))
  Image.fromarray(rgb[..., 0]).save(path("grey.png"))
  Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(path("alpha.png"))
  Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(path("grey16.png"))
  Image.fromarray(rgb).save(path("IMG_0001"), format="JPEG")
  Image.new("1", (200, 200)).save(path("bomb.png"))
  with open(path("._b.JPG"), "wb") as f:
    f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
  with open(path("notes.jpg"), "w") as f:
    f.write("a text file named like a photo\n")
  with open(paths["rotated.jpg"], "rb") as f:
    data = f.read()
  with open(path("truncated.jpg"), "wb") as f:
    f.write(data[:len(data) // 2])
  return paths


class PredictExportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.store, cls.export_digest = made_in_new_store("seg/export")
    cls.export = os.path.join(cls.store, "objects", cls.export_digest)

  def predict(self, *args):
    return run("seg/predict", TINY + ["--store=" + self.store] + list(args))

  def test_export_bytes_repeat_in_another_store(self):
    again = run("seg/export", TINY + ["--store=" + self.create_tempdir().full_path])
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(stage_lines(again.stdout)[-1][1], self.export_digest)
    other_seed = run("seg/export", TINY + ["--store=" + self.create_tempdir().full_path,
                                           "--seed=7"])
    self.assertNotEqual(stage_lines(other_seed.stdout)[-1][1], self.export_digest)  # control

  def test_export_bytes_do_not_follow_what_the_process_built_before(self):
    """Keras names layers and TensorFlow names traced functions with process-wide counters;
    the export's bytes must not show them."""
    runs = {}
    for state in ("fresh", "busy"):
      out = os.path.join(self.create_tempdir().full_path, "export")
      result = subprocess.run([sys.executable, "-c", _EXPORT_AFTER, out, state],
                              capture_output=True, text=True, check=False, cwd=RUNFILES,
                              env=dict(os.environ, PYTHONPATH=RUNFILES))
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      runs[state] = result.stdout.split()
    self.assertNotEqual(runs["fresh"][1], runs["busy"][1])  # control: the counters moved
    self.assertEqual(runs["fresh"][0], runs["busy"][0])

  def test_photos_of_every_kind_and_files_that_are_not(self):
    photos = _photos(self.create_tempdir().full_path)
    out = self.create_tempdir().full_path
    result = self.predict("--model=" + self.export, "--images=" + os.path.dirname(
        photos["grey.png"]), "--output_dir=" + out, "--probabilities",
                          "--max_image_pixels=10000")
    self.assertEqual(result.returncode, 1, result.stderr[-3000:])
    errors = [line for line in result.stderr.splitlines()
              if line.startswith(("error:", "failed:"))]
    bomb = ("%s: 40000 pixels (200x200), over the limit of 10000: --max_image_pixels=40000 "
            "segments it, with about 0.7 GB of memory" % photos["bomb.png"])
    truncated = "%s: unreadable image (image file is truncated (%s" % (
        photos["truncated.jpg"], errors[-2].split("truncated (", 2)[-1])
    self.assertEqual(errors, ["failed: " + bomb, "failed: " + truncated,
                              "error: 2 of 10 files could not be segmented (listed above)"])
    self.assertIn("note: skipped %s: AppleDouble file" % photos["._b.JPG"], result.stderr)
    self.assertIn("\n".join([
        "skipped (2):", "  %s: AppleDouble file" % photos["._b.JPG"],
        "  %s: not an image (Pillow cannot identify it)" % photos["notes.jpg"],
        "failed (2):", "  " + bomb, "  " + truncated,
        "6 of 10 files segmented; files in %s" % out]), result.stdout)
    for name, (width, height) in (("rotated", (43, 57)), ("cmyk", (57, 43)),
                                  ("grey", (57, 43)), ("alpha", (57, 43)),
                                  ("grey16", (57, 43)), ("IMG_0001", (57, 43))):
      with Image.open(os.path.join(out, name + ".mask.png")) as mask:
        self.assertEqual((mask.size, mask.mode), ((width, height), "P"), name)
      with Image.open(os.path.join(out, name + ".overlay.png")) as overlay:
        self.assertEqual((overlay.size, overlay.mode), ((width, height), "RGB"), name)
      probabilities = np.load(os.path.join(out, name + ".probabilities.npy"))
      self.assertEqual(probabilities.shape, (height, width, 3), name)
      np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    self.assertFalse(any(n.startswith(("notes", "truncated", "bomb", "._b"))
                         for n in os.listdir(out)))

  def test_bad_arguments_are_one_line_each(self):
    empty = self.create_tempdir().full_path
    model = "--model=" + self.export
    for args, message in (
        ([model, "--image=/nonexistent/cat.jpg"], "/nonexistent/cat.jpg: no such file"),
        ([model, "--images=" + empty], "--images=%s holds no files to segment" % empty),
        ([model], "give --image=PATH (repeatable) or --images=DIR"),
        (["--model=" + empty, "--image=x.jpg"], "--model=%s is not a SavedModel" % empty),
        ([model, "--image=x.jpg", "--run_name=masks"], "--run_name names the run of a stage")):
      result = self.predict(*args)
      self.assertEqual(result.returncode, 1, args)
      self.assertIn(message, result.stderr, args)
      self.assertNotIn("Traceback", result.stderr, args)

  def test_stock_tensorflow_and_keras_give_predicts_masks(self):
    photo = _photos(self.create_tempdir().full_path)["cmyk.jpg"]
    rgb = os.path.join(self.create_tempdir().full_path, "photo.png")
    Image.open(photo).convert("RGB").save(rgb)
    out = self.create_tempdir().full_path
    # Through the store (no --model): the same model as the export above.
    result = self.predict("--image=" + rgb, "--output_dir=" + out)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("export     output " + self.export_digest, result.stdout)
    with Image.open(os.path.join(out, "photo.mask.png")) as mask:
      predicted = np.asarray(mask)
    self.assertEqual(sorted(os.listdir(out)), ["photo.mask.png", "photo.overlay.png"])
    # Serving stays stock: TensorFlow's own convolutions, not the fixed-order kernels' ops.
    with open(os.path.join(self.export, "saved_model", "saved_model.pb"), "rb") as f:
      self.assertNotIn(b"Reproseg", f.read())
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, "-c", _STOCK_LOADER, self.export, rgb],
                            capture_output=True, text=True, env=clean, check=False,
                            cwd=self.create_tempdir().full_path)
    self.assertEqual(loaded.returncode, 0, loaded.stderr[-3000:])
    masks = json.loads(loaded.stdout)
    np.testing.assert_array_equal(np.array(masks["saved_model"]), predicted)
    # Keras' stock batch norm differs in the last bits: masks agree but for near-ties.
    self.assertGreater(np.mean(np.array(masks["keras"]) == predicted), 0.99)


if __name__ == "__main__":
  absltest.main()
