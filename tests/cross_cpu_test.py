"""Same bits on other CPUs: the tiny pipeline and the real-shape training steps under
emulated CPU models (qemu-x86_64 -cpu MODEL, this machine's very Python and TensorFlow),
compared digest for digest with tests/golden/'s digests, which were written natively on
whatever CPU ran ./dev bazel run //tests:regenerate_golden (its widest kernel path).

The emulator has AVX2 and FMA but no AVX-512, reports each model's own cache geometry
(Intel's legacy one, or the EPYC one with 512 KiB of L2), and computes the approximate
rsqrtps/rcpps exactly, where real Intel and AMD chips each return their own approximation:
an approximate instruction anywhere in the model shows here as a difference, and so does a
sum whose order follows the instruction set or the caches. An AVX-only CPU must be refused in
portable mode with an error that names the missing features.

Slow by nature (TensorFlow runs 5-20x slower emulated): each case is its own shard.
"""

import os

from absl.testing import absltest
from absl.testing import parameterized

from seg.training import step_digests
from tests import tiny_pipeline as tiny

# One model per cache geometry that QEMU offers: Intel's legacy leaves, and AMD's EPYC ones.
AVX2_MODELS = ("Haswell-v4", "EPYC-Rome-v1")
AVX_ONLY_MODEL = "SandyBridge-v2"
TIMEOUT = 3000  # seconds for one emulated process (Bazel's enormous: 3600); CI's run: 5400


class CrossCpuTest(parameterized.TestCase):

  @parameterized.parameters(*AVX2_MODELS)
  def test_tiny_pipeline_gives_the_golden_digests(self, model):
    store = self.create_tempdir().full_path
    result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store],
                      python=tiny.emulated(model), timeout=TIMEOUT)
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    self.assertEqual(tiny.outputs(result.stdout), tiny.load_golden()["outputs"])

  @parameterized.parameters(*AVX2_MODELS)
  def test_a_training_step_at_128_px_gives_the_golden_digests(self, model):
    golden = tiny.load_golden_steps()["emulated"]
    digests = tiny.step_digests(step_digests.EMULATED, python=tiny.emulated(model),
                                timeout=TIMEOUT)
    differing = sorted(k for k in golden["gradients"]
                       if digests["gradients"].get(k) != golden["gradients"][k])
    self.assertEqual(differing, [], "gradients that differ on %s" % model)
    self.assertEqual(digests, golden)

  def test_a_cpu_without_avx2_is_refused_in_portable_mode(self):
    store = self.create_tempdir().full_path
    result = tiny.run("seg/train", tiny.TINY + ["--store=" + store],
                      python=tiny.emulated(AVX_ONLY_MODEL), timeout=TIMEOUT)
    self.assertEqual(result.returncode, 1, result.stderr[-4000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, result.stderr[-4000:])
    self.assertIn("lacks AVX2, FMA3", errors[0])
    self.assertIn("--noportable", errors[0])
    self.assertEqual(tiny.stage_lines(result.stdout), [])
    self.assertEqual([f for _, _, files in os.walk(store) for f in files], [])


if __name__ == "__main__":
  absltest.main()
