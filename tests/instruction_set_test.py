"""oneDNN at this machine's best instruction set (AVX-512) and capped at AVX2 (what an
AVX2-only CPU runs): training gives the same bits, for the tiny pipeline and for steps at 128
px with the encoder frozen (the seed's configuration) and trainable; the forward pass of
inference at other batch sizes need not, so each class has its own key and golden digests
for calibrate and evaluate. Negative control: with Keras' layers, training differs, in
convolution kernel gradients only.

On a CPU without AVX-512 the two runs would be the same code, and nothing would be shown:
the tests are skipped there. Emulated AVX2-only CPUs: cross_cpu_test.
"""

import dataclasses

from absl.testing import absltest

from pipeline import determinism
from seg import step_digests
from tests import tiny_pipeline as tiny

CAPPED = ["--onednn_max_cpu_isa=AVX2"]
# Keras' layers, the portable thread pools: only the layers differ from portable mode.
KERAS_LAYERS = ["--noportable", "--noexact_layers", "--inter_op_threads=4",
                "--intra_op_threads=4"]
# The encoder trainable at the real image size, with a batch that keeps the test short.
TRAINABLE = dataclasses.replace(step_digests.REAL_SHAPES, batch_size=8, steps=1,
                                freeze_backbone=False)


def _differing(a, b):
  return sorted(k for k in a["gradients"] if a["gradients"][k] != b["gradients"][k])


class InstructionSetTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if not determinism.cpu_features().get("AVX512F"):
      self.skipTest("this CPU has no AVX-512: native and AVX2 are the same code here")

  def test_the_tiny_pipeline_capped_at_avx2_trains_the_native_bits(self):
    store = self.create_tempdir().full_path
    result = tiny.run(tiny.PIPELINE, tiny.TINY + CAPPED + ["--store=" + store])
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    self.assertIn("oneDNN capped at AVX2 (AVX2 class)", result.stderr)
    outputs = tiny.outputs(result.stdout)
    self.assertEqual(outputs, tiny.load_golden("AVX2")["outputs"])
    self.assertEqual(outputs["train"], tiny.load_golden("AVX-512")["outputs"]["train"])

  def test_real_shape_steps_capped_at_avx2_give_the_native_golden_digests(self):
    """Frozen encoder, 128 px, batch 60 in 2 micro-batches, 2 steps: the seed's shapes."""
    capped = tiny.step_digests(step_digests.REAL_SHAPES, extra=CAPPED)
    golden = tiny.load_golden_steps()["real_shapes"]
    self.assertEqual(_differing(capped, golden), [])
    self.assertEqual(capped, golden)

  def test_a_trainable_encoder_step_is_the_same_capped_and_native(self):
    native, capped = (tiny.step_digests(TRAINABLE, extra=e) for e in ([], CAPPED))
    self.assertEqual(_differing(native, capped), [])
    self.assertEqual(native, capped)

  def test_keras_layers_give_other_kernel_gradients_capped(self):
    """Negative control: the comparison above sees the instruction set in Keras' layers."""
    native, capped = (tiny.step_digests(TRAINABLE, extra=KERAS_LAYERS + e)
                      for e in ([], CAPPED))
    differing = _differing(native, capped)
    self.assertNotEqual(differing, [])
    self.assertEqual([k for k in differing if not k.endswith("/kernel")], [])
    self.assertEqual((native["logits"], native["loss"]), (capped["logits"], capped["loss"]))


class IsaClassTest(absltest.TestCase):

  def test_the_class_follows_the_cap_and_the_cpu(self):
    capped = determinism.resolve(onednn_max_cpu_isa="AVX2")
    self.assertEqual(determinism.onednn_isa_class(capped), "AVX2")
    self.assertEqual(capped.record()["onednn_isa_class"], "AVX2")
    native = determinism.resolve()
    has_avx512 = determinism.cpu_features().get("AVX512F")
    self.assertEqual(determinism.onednn_isa_class(native), "AVX-512" if has_avx512 else "AVX2")
    self.assertNotIn("onednn_isa_class", determinism.resolve(portable=False).record())

if __name__ == "__main__":
  absltest.main()
