"""Writes an encoder's weights file of seeded random values: the seed's compute without its
ImageNet weights, for benchmarks/full_size.py on a machine that cannot fetch them.

A frozen encoder of random weights costs what the ImageNet one does (the same layers, shapes
and trainable set), but the decoder learns little from it: the run's metrics say nothing of
the seed's accuracy (issue 20's run: training IoU 0.2463 in every epoch).

  ./dev python -m benchmarks.random_encoder --model_arch=mobilenetv2 --image_size=128 \\
      --output=/tmp/mobilenetv2_random_128.weights.h5
"""

import os
import tempfile

from absl import app
from absl import flags

from pipeline import files
from seg.model import backbones

FLAGS = flags.FLAGS
flags.DEFINE_enum("model_arch", "mobilenetv2", sorted(backbones.BACKBONES),
                  "The encoder (seg.model.backbones.BACKBONES).")
flags.DEFINE_integer("image_size", 128, "Side of the images the encoder takes, in pixels.",
                     lower_bound=32)
flags.DEFINE_integer("seed", 0, "Seed of the random weights (Keras' initialisers).")
flags.DEFINE_string("output", None, "The weights file to write; it must end in .weights.h5 "
                    "(Keras' format). Written atomically.")
flags.mark_flag_as_required("output")


def write(model_arch, image_size, seed, path):
  """Writes keras.applications' encoder for model_arch (no top, image_size pixels a side),
  initialised from seed, as a weights file at path (ending in .weights.h5), atomically."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  application = getattr(keras.applications, backbones.BACKBONES[model_arch].application)
  encoder = application(input_shape=(image_size, image_size, 3), include_top=False,
                        weights=None)
  with tempfile.TemporaryDirectory() as scratch:
    written = os.path.join(scratch, "encoder.weights.h5")
    encoder.save_weights(written)
    with open(written, "rb") as f:
      files.write_atomically(path, f.read())


def main(argv):
  del argv
  if not FLAGS.output.endswith(".weights.h5"):
    raise app.UsageError("--output=%s: end it in .weights.h5 (Keras' weights format)"
                         % FLAGS.output)
  write(FLAGS.model_arch, FLAGS.image_size, FLAGS.seed, FLAGS.output)
  print(FLAGS.output)


if __name__ == "__main__":
  app.run(main)
