"""One class for x86-64: the instruction set neither changes portable bits nor enters the key.

The real-shape training steps on the kernels' AVX2 path with oneDNN capped at AVX2 (what an
AVX2-only CPU runs) give the golden digests that the widest path wrote; the tiny pipeline
does the same in tests/determinism_test.py, and on emulated CPUs in tests/cross_cpu_test.py.
The negative control: Keras' own layers on oneDNN's kernels (--noportable) train other bits
natively on AVX-512 than capped at AVX2 (skipped on a CPU without AVX-512, where native and
capped are the same code). The portable key records what the mode needs of the CPU, never the
instruction set, cache sizes or pool size; a CPU without AVX2 and FMA is refused; the flag,
not an ONEDNN_MAX_CPU_ISA left in the environment, sets oneDNN's cap.
"""

import os
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

from kernels import fixed_order
from pipeline import determinism
from pipeline import errors
from seg.training import step_digests
from tests import tiny_pipeline as tiny

CAPPED = ["--onednn_max_cpu_isa=AVX2"]
_AVX2 = {"AVX": True, "AVX2": True, "FMA3": True}
CPUS = {"AVX": {"AVX": True},
        "AVX2 without FMA": {"AVX": True, "AVX2": True},
        "AVX2": _AVX2,
        "AVX-512": dict(_AVX2, AVX512F=True, AVX512BW=True, AVX512VL=True, AVX512DQ=True)}


def _has_avx512():
  return determinism.cpu_features().get("AVX512F", False)


class InstructionSetTest(absltest.TestCase):

  def test_real_shape_steps_on_avx2_give_the_golden_digests(self):
    """Frozen encoder, 128 px, batch 60 in 2 micro-batches, 2 steps: the seed's shapes."""
    capped = tiny.step_digests(step_digests.REAL_SHAPES, extra=CAPPED,
                               env={fixed_order.PATH_VARIABLE: "avx2"})
    self.assertEqual(capped, tiny.load_golden_steps()["real_shapes"])

  def test_negative_control_onednns_kernels_follow_the_instruction_set(self):
    if not _has_avx512():
      self.skipTest("this CPU has no AVX-512: native and capped are the same code here")
    trained = []
    for extra in ([], CAPPED):
      store = self.create_tempdir().full_path
      result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--noportable", "--store=" + store] + extra)
      self.assertEqual(result.returncode, 0, result.stderr[-4000:])
      trained.append(tiny.outputs(result.stdout)["train"])
    self.assertNotEqual(trained[0], trained[1])


class PortableKeyTest(parameterized.TestCase):

  @parameterized.parameters(
      dict(onednn_max_cpu_isa="AVX2"), dict(onednn_max_cpu_isa="AVX512_CORE_AMX"),
      dict(intra_op_threads=1, inter_op_threads=1), dict(intra_op_threads=7))
  def test_the_machines_switches_leave_the_portable_key_alone(self, **switches):
    self.assertEqual(determinism.resolve(**switches).record(), determinism.resolve().record())

  def test_the_portable_key_records_the_cpu_it_needs_not_the_machine(self):
    record = determinism.resolve().record()
    self.assertEqual(record["cpu"], determinism.PORTABLE_CPU)
    for name in list(determinism.MACHINE_SWITCHES) + ["machine"]:
      self.assertNotIn(name, record)

  def test_same_machine_keys_record_the_switches_and_the_machine(self):
    record = determinism.resolve(portable=False, intra_op_threads=3).record()
    self.assertEqual(record["intra_op_threads"], 3)
    self.assertIn("machine", record)
    self.assertNotEqual(record, determinism.resolve(portable=False, intra_op_threads=4).record())

  @parameterized.parameters(("AVX2", "native"), ("AVX2", "AVX512_CORE"), ("AVX-512", "AVX2"))
  def test_a_cpu_with_avx2_and_fma_is_accepted_under_any_cap(self, cpu, isa):
    with mock.patch.object(determinism, "cpu_features", return_value=CPUS[cpu]):
      determinism.check_cpu(determinism.resolve(onednn_max_cpu_isa=isa))

  @parameterized.parameters(("AVX", "AVX2, FMA3"), ("AVX2 without FMA", "FMA3"))
  def test_a_cpu_without_avx2_and_fma_is_refused(self, cpu, missing):
    with mock.patch.object(determinism, "cpu_features", return_value=CPUS[cpu]):
      with self.assertRaisesRegex(errors.Error, "this CPU lacks %s: .*--noportable" % missing):
        determinism.check_cpu(determinism.resolve())
      determinism.check_cpu(determinism.resolve(portable=False))  # the way out

  @parameterized.parameters(dict(fixed_order_kernels=False), dict(exact_layers=False),
                            dict(exact_layers=False, fixed_order_kernels=False))
  def test_portable_mode_refuses_the_machines_kernels(self, **switches):
    with self.assertRaisesRegex(errors.Error, "--portable needs --exact_layers and "
                                              "--fixed_order_kernels"):
      determinism.resolve(**switches)


class EnvironmentTest(absltest.TestCase):

  def test_the_flag_not_the_environment_sets_onednns_cap(self):
    with mock.patch.dict(os.environ, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}), \
         mock.patch.dict(sys.modules):
      sys.modules.pop("tensorflow", None)  # as before TensorFlow loads, where stages call it
      determinism.set_environment(determinism.resolve())
      self.assertNotIn("ONEDNN_MAX_CPU_ISA", os.environ)
      determinism.set_environment(determinism.resolve(onednn_max_cpu_isa="AVX2"))
      self.assertEqual(os.environ["ONEDNN_MAX_CPU_ISA"], "AVX2")


if __name__ == "__main__":
  absltest.main()
