"""The tiny pipeline with --fixed_order_kernels (every convolution from kernels/): the same
train, calibrate and evaluate outputs whatever the machine decides (the intra-op pool size,
the cores it runs on, the kernels' instruction set and oneDNN's, the CPU model), where the
same pipeline on oneDNN's kernels follows the pool size (the negative control).

Each run is the real binary in a fresh process and a fresh store. The kernels' own paths,
pool sizes and emulated CPUs are checked op by op in tests/fixed_order_test.py; this shows
that nothing else in training and inference follows them.
"""

import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

from kernels import fixed_order
from tests import tiny_pipeline as tiny

FIXED_ORDER = tiny.TINY + ["--fixed_order_kernels"]
PATH = fixed_order.PATH_VARIABLE
TIMEOUT = 3000  # seconds for one emulated process

# name: (extra flags, environment, command prefix, emulated CPU model or None)
MACHINES = {
    "pool of 1": (["--intra_op_threads=1", "--inter_op_threads=1"], {}, (), None),
    "pool of 7": (["--intra_op_threads=7"], {}, (), None),
    "one core": ([], {}, ("taskset", "-c", "0"), None),
    "AVX2 kernels, oneDNN capped at AVX2": (["--onednn_max_cpu_isa=AVX2"], {PATH: "avx2"}, (),
                                            None),
    "scalar kernels": ([], {PATH: "scalar"}, (), None),
    "emulated EPYC-Rome-v1": ([], {}, (), "EPYC-Rome-v1"),
}


def pipeline_outputs(test, flags, env=None, prefix=(), cpu=None):
  """{stage: output digest} of the tiny pipeline in a fresh store."""
  store = test.create_tempdir().full_path
  result = tiny.run(tiny.PIPELINE, flags + ["--store=" + store], env=env, prefix=prefix,
                    python=tiny.emulated(cpu) if cpu else None, timeout=TIMEOUT)
  test.assertEqual(result.returncode, 0, result.stderr[-4000:])
  return tiny.outputs(result.stdout)


class FixedOrderPipelineTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reference = None

  def reference_outputs(self):
    """The default machine: a pool of 4 on the visible cores, the widest kernel path."""
    if FixedOrderPipelineTest.reference is None:
      FixedOrderPipelineTest.reference = pipeline_outputs(self, FIXED_ORDER)
    return FixedOrderPipelineTest.reference

  @parameterized.named_parameters(
      (name.replace(" ", "_").replace(",", ""), name) for name in MACHINES)
  def test_the_outputs_do_not_follow_the_machine(self, name):
    flags, env, prefix, cpu = MACHINES[name]
    got = pipeline_outputs(self, FIXED_ORDER + flags, env, prefix, cpu)
    want = self.reference_outputs()
    for stage in ("train", "calibrate", "evaluate"):
      self.assertEqual(got[stage], want[stage], "%s: %s differs" % (name, stage))

  def test_the_export_needs_no_op_library(self):
    # Serving stays stock: TF Serving loads the SavedModel without reproseg's kernels.
    store = self.create_tempdir().full_path
    result = tiny.run("seg/export", FIXED_ORDER + ["--store=" + store], timeout=TIMEOUT)
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    export = os.path.join(store, "objects", tiny.outputs(result.stdout)["export"])
    with open(os.path.join(export, "saved_model", "saved_model.pb"), "rb") as f:
      self.assertNotIn(b"Reproseg", f.read())
    served = subprocess.run(
        [sys.executable, "-c", "import sys, tensorflow as tf; serve = tf.saved_model.load("
         "sys.argv[1]).signatures['serving_default']; "
         "print(serve(tf.zeros([1, 32, 32, 3], tf.uint8))['class_ids'].shape)",
         os.path.join(export, "saved_model")], capture_output=True, text=True, timeout=600,
        cwd=self.create_tempdir().full_path, env={"PATH": os.environ.get("PATH", "")})
    self.assertEqual(served.returncode, 0, served.stderr[-4000:])
    self.assertIn("(1, 32, 32)", served.stdout)

  def test_negative_control_onednn_follows_the_pool_size(self):
    pools = {pool: pipeline_outputs(self, tiny.TINY + ["--intra_op_threads=%d" % pool])
             for pool in (3, 4)}
    self.assertNotEqual(pools[3]["train"], pools[4]["train"])


if __name__ == "__main__":
  absltest.main()
