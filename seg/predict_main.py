"""bazel run //seg:predict -- --image=PHOTO [--image=...] [--images=DIR] [--model=EXPORT]

Segments your own photos. With --model (an export stage output, or its saved_model/ folder)
no store is needed; otherwise the model of the given flags is trained, calibrated and
exported first (or taken from the store), as //seg:export does. For each image writes
<name>.mask.png, <name>.probabilities.npy and <name>.overlay.png into --output_dir.
"""

import os
import sys

from absl import flags

from pipeline import cli
from pipeline import determinism
from pipeline import errors
from pipeline import stage
from seg import launch
from seg import prediction

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("image", None, "A photo to segment (any size; JPEG, PNG, ...). "
                          "Repeatable.")
flags.DEFINE_string("images", None, "A folder: segment every image file in it.")
flags.DEFINE_string("model", None, "An exported model (the export stage's output folder, or "
                    "its saved_model/): no store, no training. Default: the model of the given "
                    "flags, from the store.")
flags.DEFINE_string("output_dir", "predictions",
                    "Where the masks, probability maps and overlays go (made if missing); "
                    "relative to the folder you run from.")


def predict():
  paths = prediction.image_paths(FLAGS.image, FLAGS.images)  # input errors before any training
  results = []
  if FLAGS.model:
    determinism.apply(determinism.from_flags())  # the switches the store path would use
    model = FLAGS.model
  else:
    results = launch.run_stages("export")
    for result in results:
      stage.report(result)
    model = results[-1].path
  written, failed = prediction.predict(prediction.load(model), paths, FLAGS.output_dir,
                                       sys.stderr)
  print("%d of %d images segmented; files in %s" % (len(written), len(paths),
                                                    os.path.abspath(FLAGS.output_dir)))
  if failed:
    raise errors.Error("%d of %d images could not be read (named above)"
                       % (len(failed), len(paths)))
  return []


if __name__ == "__main__":
  cli.run(predict, launch.FLAG_GROUPS)
