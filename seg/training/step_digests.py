"""Digests of a few training steps of the U-Net on seeded random data: the first step's
logits, loss and (mean) gradients, and every weight after the last step. The step is
training's own (seg.training.steps.TrainStep, in micro-batches).

This is how reproseg compares machines at the shapes real training has, without a dataset:
the same flags on two machines must print the same JSON. tests/cross_cpu_test.py runs it
under emulated CPUs and compares with tests/golden/; benchmarks/gradient_digests.py runs it
under several determinism settings. Run it by hand with

  ./dev python -m seg.training.step_digests --image_size=128 --batch_size=60 --freeze_backbone

(every determinism switch, --seed and --portable among them, is a flag here too).
"""

import dataclasses
import hashlib
import json

from absl import app
from absl import flags

from pipeline import determinism
from pipeline import seeds
from seg.configs import config

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class StepConfig:
  arch: str = "mobilenetv2"
  image_size: int = 128
  batch_size: int = 60
  micro_batches: int = 2
  steps: int = 2
  freeze_backbone: bool = True
  num_classes: int = 3


  def flags(self):
    """The command-line flags that select this configuration."""
    return ["--arch=%s" % self.arch, "--image_size=%d" % self.image_size,
            "--batch_size=%d" % self.batch_size, "--micro_batches=%d" % self.micro_batches,
            "--steps=%d" % self.steps,
            "--%sfreeze_backbone" % ("" if self.freeze_backbone else "no")]


# The seed's real training shapes (seg/configs/oxford_iiit_pet.json), with a random encoder.
REAL_SHAPES = StepConfig()
# The real image size and layers with a small batch, for emulated CPUs, where one step takes
# minutes: one pass of 4 rows at 128 px, where oneDNN's kernels showed their cache-geometry
# dependence (docs/determinism.md, "Why own the order").
EMULATED = dataclasses.replace(REAL_SHAPES, batch_size=4, micro_batches=1, steps=1)


def _sha256(tensor):
  return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


def digests(step_config, settings):
  """{"logits", "loss", "gradients": {variable path: sha256}, "weights"} for a StepConfig,
  with the seed and layers of a pipeline.determinism.Settings.

  Call after pipeline.determinism.apply(settings).
  """
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from pipeline import arrays  # pylint: disable=g-import-not-at-top
  from seg.model import factory  # pylint: disable=g-import-not-at-top
  from seg.model import unet  # pylint: disable=g-import-not-at-top
  from seg.training import steps  # pylint: disable=g-import-not-at-top

  seed = settings.seed
  rng = np.random.default_rng(seeds.derive_seed(seed, "step_digests"))
  shape = (step_config.batch_size, step_config.image_size, step_config.image_size)
  batches = [(tf.constant(rng.integers(0, 256, shape + (3,)), tf.float32),
              tf.constant(rng.integers(0, step_config.num_classes, shape), tf.int32))
             for _ in range(step_config.steps)]
  model_config = config.ModelConfig(model_arch=step_config.arch,
                                    freeze_backbone=step_config.freeze_backbone)
  model = unet.create(model_config, step_config.image_size, step_config.num_classes, seed,
                      exact=settings.exact_layers, fixed_order=settings.fixed_order_kernels)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)

  step = steps.TrainStep(model, optimizer, step_config.num_classes, step_config.micro_batches)
  values, confusions, logits = step.compute(*batches[0])
  loss, _, gradients = step.update(values, confusions)
  result = {"config": dataclasses.asdict(step_config), "logits": _sha256(logits),
            "loss": float(loss).hex(),
            "gradients": {v.path: _sha256(g) for v, g in zip(model.trainable_variables,
                                                            gradients)}}
  for images, masks in batches[1:]:
    step(images, masks)
  result["weights"] = arrays.fingerprint(
      factory.named_variables(model.variables, "model"))["digest"]
  return result


def main(argv):
  del argv
  settings = determinism.from_flags()
  determinism.apply(settings)
  step_config = StepConfig(FLAGS.arch, FLAGS.image_size, FLAGS.batch_size,
                           FLAGS.micro_batches, FLAGS.steps, FLAGS.freeze_backbone)
  print(json.dumps(digests(step_config, settings), indent=1,
                   sort_keys=True))


if __name__ == "__main__":
  flags.DEFINE_string("arch", REAL_SHAPES.arch, "Backbone.")
  flags.DEFINE_integer("image_size", REAL_SHAPES.image_size, "Image side.")
  flags.DEFINE_integer("batch_size", REAL_SHAPES.batch_size, "Batch size.")
  flags.DEFINE_integer("micro_batches", REAL_SHAPES.micro_batches,
                       "Micro-batches per step (seg.training.steps.TrainStep).")
  flags.DEFINE_integer("steps", REAL_SHAPES.steps, "Adam steps before the weights' digest.")
  flags.DEFINE_bool("freeze_backbone", REAL_SHAPES.freeze_backbone, "Freeze the encoder.")
  app.run(main)
