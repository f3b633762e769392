"""The instruction-set class in the key: on an AVX-512 machine, oneDNN capped at AVX2 is the
AVX2 class (what AVX2-only CPUs run), and gives that class's golden digests, which
tests/cross_cpu_test.py's emulated AVX2 CPUs give too; native is the CPU's AVX-512 class
(which names its vendor and L2 size: the two real AVX-512 CPUs seen train other bits). The
classes train other bits (convolution weight gradients follow the instruction set), and
their keys differ, so neither is ever taken for the other.

On a CPU without AVX-512 native and capped are the same code, and nothing would be shown:
the tests are skipped there.
"""

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

from pipeline import determinism
from pipeline import errors
from seg import step_digests
from tests import tiny_pipeline as tiny

CAPPED = tiny.CLASS_FLAGS["AVX2"]
AVX512_CLASS = "AVX-512 (SomeVendor, L2 1 KiB)"
_AVX2 = {"AVX": True, "AVX2": True, "FMA3": True}
CPUS = {"AVX": {"AVX": True},
        "AVX2": _AVX2,
        "AVX-512": dict(_AVX2, AVX512F=True, AVX512BW=True, AVX512VL=True, AVX512DQ=True)}


def _train(stdout):
  """(output digest, key) of the train stage."""
  return next((output, key) for name, output, key, _ in tiny.stage_lines(stdout)
              if name == "train")


class InstructionSetTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if not tiny.has_avx512():
      self.skipTest("this CPU has no AVX-512: native and capped are the same code here")

  def test_each_class_gives_its_golden_digests_under_its_own_key(self):
    runs = {}
    for extra in tiny.CLASS_FLAGS.values():
      name = tiny.isa_class(extra)
      store = self.create_tempdir().full_path
      result = tiny.run(tiny.PIPELINE, tiny.TINY + extra + ["--store=" + store])
      self.assertEqual(result.returncode, 0, result.stderr[-4000:])
      self.assertIn(", class %s," % name, result.stderr)
      self.assertEqual(tiny.outputs(result.stdout), tiny.load_golden(name)["outputs"], name)
      runs[name] = _train(result.stdout)
    (native_output, native_key), (capped_output, capped_key) = runs.values()
    self.assertNotEqual(native_output, capped_output)  # the instruction set changes the bits
    self.assertNotEqual(native_key, capped_key)  # and so the key (it records the class)

  def test_real_shape_steps_capped_give_the_avx2_golden_digests(self):
    """Frozen encoder, 128 px, batch 60 in 2 micro-batches, 2 steps: the seed's shapes."""
    capped = tiny.step_digests(step_digests.REAL_SHAPES, extra=CAPPED)
    self.assertEqual(capped, tiny.load_golden_steps("AVX2")["real_shapes"])
    native = tiny.load_golden_steps()["real_shapes"]
    differing = sorted(k for k in native["gradients"]
                       if native["gradients"][k] != capped["gradients"][k])
    self.assertEqual((capped["logits"], capped["loss"]), (native["logits"], native["loss"]))
    self.assertEqual([k for k in differing if not k.endswith("/kernel")], [])


class IsaClassTest(parameterized.TestCase):

  @parameterized.parameters(
      # (CPU, --onednn_max_cpu_isa, class)
      ("AVX-512", "native", AVX512_CLASS),
      ("AVX-512", "AVX2", "AVX2"),
      ("AVX-512", "AVX512_CORE_AMX", AVX512_CLASS),
      ("AVX2", "native", "AVX2"),
      ("AVX2", "DEFAULT", "AVX2"),
  )
  def test_the_key_records_the_class_not_the_cap(self, cpu, isa, expected):
    settings = determinism.resolve(onednn_max_cpu_isa=isa)
    with mock.patch.object(determinism, "cpu_features", return_value=CPUS[cpu]), \
         mock.patch.object(determinism, "avx512_class", return_value=AVX512_CLASS):
      determinism.check_cpu(settings)
      record = settings.record()
    self.assertEqual(record["onednn_isa_class"], expected)
    self.assertNotIn("onednn_max_cpu_isa", record)

  @parameterized.parameters(("AVX2", "AVX512_CORE"), ("AVX2", "AVX10_1_512"), ("AVX", "native"),
                            ("AVX", "DEFAULT"))
  def test_a_cpu_below_the_instruction_set_is_refused(self, cpu, isa):
    with mock.patch.object(determinism, "cpu_features", return_value=CPUS[cpu]):
      with self.assertRaisesRegex(errors.Error, "this CPU lacks .*--noportable"):
        determinism.check_cpu(determinism.resolve(onednn_max_cpu_isa=isa))

  @parameterized.parameters(
      ("GenuineIntel", 2048, "AVX-512 (GenuineIntel, L2 2048 KiB)"),
      ("AuthenticAMD", 1024, "AVX-512 (AuthenticAMD, L2 1024 KiB)"))
  def test_the_avx512_class_names_the_vendor_and_the_l2_size(self, vendor, l2, expected):
    # The two real AVX-512 CPUs seen train other bits (pipeline.determinism.avx512_class).
    with mock.patch.object(determinism, "_cpuinfo", return_value=vendor), \
         mock.patch.object(determinism, "l2_cache_kib", return_value=l2):
      self.assertEqual(determinism.avx512_class(), expected)

  @parameterized.parameters(("GenuineIntel", None), (None, 1024))
  def test_an_avx512_cpu_whose_class_is_unknown_is_refused(self, vendor, l2):
    with mock.patch.object(determinism, "cpu_features", return_value=CPUS["AVX-512"]), \
         mock.patch.object(determinism, "_cpuinfo", return_value=vendor), \
         mock.patch.object(determinism, "l2_cache_kib", return_value=l2):
      with self.assertRaisesRegex(errors.Error, "does not tell both .*--onednn_max_cpu_isa=AVX2"):
        determinism.check_cpu(determinism.resolve())
      determinism.check_cpu(determinism.resolve(onednn_max_cpu_isa="AVX2"))  # the way out

  def test_other_modes_record_no_class(self):
    self.assertNotIn("onednn_isa_class", determinism.resolve(portable=False).record())
    self.assertNotIn("onednn_isa_class", determinism.resolve(onednn=False).record())


if __name__ == "__main__":
  absltest.main()
