"""bazel run //seg:predict -- --image=PHOTO [--image=...] [--images=DIR] [--model=EXPORT]

Segments your own photos. With --model (an export stage output, or its saved_model/ folder)
no store is needed; otherwise the model of the given flags is trained, calibrated and
exported first (or taken from the store), as //seg:export does. For each image writes
<name>.mask.png and <name>.overlay.png into --output_dir, and <name>.probabilities.npy with
--probabilities.

Any file Pillow reads is an image, whatever its name or suffix. Each is seen as a viewer
shows it: EXIF-rotated; 16-bit, 32-bit and float grey scaled to 8 bits; CMYK, palette and
1-bit converted to RGB; transparent pixels composited over white, as a browser page shows a
cut-out picture (seg/serve/photos.py states each rule). In --images=DIR, hidden and
AppleDouble (._*) files and subfolders are skipped with a note, and so are files that are
not images. The run ends by listing every file not segmented and why.

Exit status: 1 if an image could not be read (corrupt, truncated, over --max_image_pixels),
an --image is missing or not an image, or nothing was segmented; 0 otherwise, also when
--images=DIR held files that are not images (they are listed as skipped).

Memory grows with the photo: at peak about 60 bytes a pixel on top of 0.7 GB for TensorFlow,
measured 1.4 GB for a 4000x3000 photo and 2.9 GB for 8000x6000 (3.4 GB with --probabilities);
Pillow's decompression-bomb threshold, the default --max_image_pixels, would take about 6 GB.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

import sys

from absl import flags

from pipeline import cli
from pipeline import determinism
from pipeline import errors
from pipeline import planning
from pipeline import user_input
from seg import launch
from seg.serve import photos
from seg.serve import prediction

FLAGS = flags.FLAGS
user_input.define_path("image", None, "A photo to segment: any size, any format Pillow reads, "
                       "whatever its suffix; transparency is shown over white. Repeatable.",
                       multi=True)
user_input.define_path("images", None, "A folder: segment every image in it, whatever the file "
                       "names (hidden and AppleDouble ._* files are skipped; not subfolders).")
user_input.define_path("model", None, "An exported model (the export stage's output folder, or "
                       "its saved_model/): no store, no training. Default: the model of the "
                       "given flags, from the store.")
user_input.define_path("output_dir", "predictions",
                       "Where the masks, overlays and probability maps go (made if missing); "
                       "relative to the folder you run from.")
flags.DEFINE_integer(
    "max_image_pixels", photos.DEFAULT_MAX_PIXELS,
    "Refuse an image with more pixels than this (width x height), before decoding it; the "
    "others are still done. Default: Pillow's decompression-bomb threshold (Pillow only warns there, and refuses at twice it). Peak memory is about "
    "0.7 GB + %d bytes a pixel: 1.4 GB for 4000x3000, 2.9 GB for 8000x6000, about 6 GB at "
    "the default." % photos.MEMORY_BYTES_PER_PIXEL,
    lower_bound=1)
flags.DEFINE_bool(
    "probabilities", False,
    "Also write <name>.probabilities.npy: the calibrated probabilities, float32 [h, w, 3] at "
    "the photo's size (12 bytes a pixel: 144 MB for 4000x3000; it adds up to as much to the "
    "peak memory).")


def predict():
  """The export stage and those before it (unless --model), then masks for the photos: a
  cli.Outcome whose notes list what was not segmented, and whose error counts the failures."""
  if planning.dry_run():
    raise errors.Error("--dry_run plans the stage commands, and predict writes masks, not a "
                       "stage's output: `//seg:export -- --dry_run` with the same flags plans "
                       "its model")
  inputs = photos.find_inputs(FLAGS.image, FLAGS.images)  # input errors before training
  results = []
  if FLAGS.model:
    determinism.apply(determinism.from_flags())  # the switches the store path would use
    model = FLAGS.model
  else:
    results = launch.run_stages("export")
    store = cli.open_store()
    if results[-1].cached and store.verify_inputs:  # read as a stage reads its inputs
      store.verify(results[-1].digest, use="predict (as its model)")
    model = results[-1].path
  report = prediction.predict(prediction.load(model), inputs, FLAGS.output_dir, sys.stderr,
                              FLAGS.max_image_pixels, FLAGS.probabilities)
  error = None
  if report.failed:
    error = errors.Error("%d of %d files could not be segmented (%s)" % (
        len(report.failed), inputs.count(),
        report.failed[0] if len(report.failed) == 1 else "listed above"))
  elif not report.written:
    error = errors.Error("none of the %d files is an image (listed above)" % inputs.count())
  return cli.Outcome(results, tuple(prediction.summary(report, inputs, FLAGS.output_dir)),
                     error)


if __name__ == "__main__":
  cli.run(predict, launch.FLAG_GROUPS, stores_runs=False)
