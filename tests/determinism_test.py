"""Same inputs, same bits: the tiny pipeline in fresh processes, compared digest for digest
with tests/golden/tiny_pipeline.json at every stage and export, under machine and environment
changes that must not matter (the pool size, the cores, the kernels' instruction set and
oneDNN's, the locale) and three negative controls that must; and training steps at the real
shapes compared with tests/golden/step_digests.json. (Other CPU models: cross_cpu_test.)

A failure here means a result's bits changed. If the change is deliberate, regenerate the
golden digests (docs/determinism.md, "Golden digests") and record why in CHANGELOG.md.
"""

import glob
import os

from absl.testing import absltest
from absl.testing import parameterized

from kernels import fixed_order
from seg.training import step_digests
from tests import tiny_pipeline as tiny

PATH = fixed_order.PATH_VARIABLE

# What the machine decides, and must not matter: (extra flags, environment, command prefix).
MACHINES = {
    "pool_of_1": (["--intra_op_threads=1", "--inter_op_threads=1"], {}, ()),
    "pool_of_7": (["--intra_op_threads=7"], {}, ()),
    "one_visible_core": ([], {}, ("taskset", "-c", "0")),
    "avx2_kernels_and_onednn_capped_at_avx2": (["--onednn_max_cpu_isa=AVX2"], {PATH: "avx2"},
                                               ()),
    "scalar_kernels": ([], {PATH: "scalar"}, ()),
    "locale_time_zone_hash_seed": ([], {"TZ": "Asia/Kathmandu", "LANG": "de_DE.UTF-8",
                                        "LC_ALL": "C", "PYTHONHASHSEED": "12345"}, ()),
}


class DeterminismTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.golden = tiny.load_golden()["outputs"]

  def train(self, extra=(), env=None, prefix=(), cwd=None, expect_ok=True):
    store = self.create_tempdir().full_path
    result = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store] + list(extra), env=env,
                      prefix=prefix, cwd=cwd)
    if expect_ok:
      self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    return result, store

  def test_golden_digests_at_every_stage(self):
    result, _ = self.train()
    self.assertEqual(tiny.outputs(result.stdout), self.golden)

  @parameterized.parameters("real_shapes", "emulated")
  def test_golden_digests_of_training_steps_at_128_px(self, name):
    """The frozen MobileNetV2 encoder at 128 px: the kernels real training runs."""
    config = {"real_shapes": step_digests.REAL_SHAPES, "emulated": step_digests.EMULATED}[name]
    self.assertEqual(tiny.step_digests(config), tiny.load_golden_steps()[name])

  @parameterized.named_parameters((name, name) for name in MACHINES)
  def test_the_machine_and_environment_do_not_change_the_bits(self, name):
    flags, env, prefix = MACHINES[name]
    cwd = self.create_tempdir().full_path
    result, store = self.train(flags, env=env, prefix=prefix, cwd=cwd)
    self.assertEqual(tiny.outputs(result.stdout), self.golden)
    exported = tiny.run("seg/export", tiny.TINY + ["--store=" + store] + flags, env=env,
                        prefix=prefix, cwd=cwd)  # the stages before it are cache hits
    self.assertEqual(exported.returncode, 0, exported.stderr[-4000:])
    self.assertEqual(tiny.outputs(exported.stdout)["export"], tiny.load_golden()["export"])

  def test_each_stage_in_a_process_of_its_own_gives_the_chained_bits(self):
    """A stage's output is a function of its key alone, not of what its process did before:
    each stage made by a binary that takes the stages before it from the store has the key
    and output of the same stage made after them in one process, and tests/golden's."""
    chained = tiny.run("seg/export", tiny.TINY + ["--store=" + self.create_tempdir().full_path])
    self.assertEqual(chained.returncode, 0, chained.stderr[-4000:])
    store = "--store=" + self.create_tempdir().full_path
    made = {}
    for binary, flags in (("data_tools/partition", tiny.DATA_FLAGS), ("seg/train", tiny.TINY),
                          ("seg/calibrate", tiny.TINY), ("seg/evaluate", tiny.TINY),
                          ("seg/export", tiny.TINY)):
      result = tiny.run(binary, flags + [store])
      self.assertEqual(result.returncode, 0, result.stderr[-4000:])
      made.update({name: (output, key) for name, output, key, hit
                   in tiny.stage_lines(result.stdout) if not hit})
    self.assertEqual(list(made), list(tiny.STAGES) + ["export"])  # one stage a process, after data
    self.assertEqual({name: line[1:3] for name, line in
                      ((line[0], line) for line in tiny.stage_lines(chained.stdout))},
                     {name: made[name] for name in made if name != "evaluate"})
    golden = dict(self.golden, export=tiny.load_golden()["export"])
    self.assertEqual({name: output for name, (output, _) in made.items()}, golden)

  def test_stopped_and_resumed_ends_with_the_same_bits(self):
    stopped, store = self.train(["--stop_after_epochs=1"], expect_ok=False)
    self.assertEqual(stopped.returncode, 1, stopped.stderr[-4000:])
    self.assertIn("stopped after epoch 1", stopped.stderr)
    checkpoints = glob.glob(os.path.join(store, "runs", "*", "checkpoints", "*"))
    self.assertEqual(sorted(map(os.path.basename, checkpoints)),
                     ["epoch-001.arrays", "epoch-001.history.json"])
    resumed = tiny.run(tiny.PIPELINE, tiny.TINY + ["--store=" + store])
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-4000:])
    self.assertIn("resuming after epoch 1", resumed.stderr)
    self.assertEqual(tiny.outputs(resumed.stdout), self.golden)

  # --- Negative controls: the comparisons above can see a difference. ---------------------
  def test_unseeded_dropout_changes_the_bits(self):
    """The seed's Figure 9: dropout left unseeded gives new weights on every run."""
    runs = [tiny.outputs(self.train(["--noseeded_dropout"])[0].stdout) for _ in range(2)]
    data, trained = tiny.STAGES[:3], tiny.STAGES[3:]
    for outputs in runs:
      self.assertEqual({k: outputs[k] for k in data}, {k: self.golden[k] for k in data})
      for name in trained:
        self.assertNotEqual(outputs[name], self.golden[name], name)
    self.assertNotEqual(runs[0]["train"], runs[1]["train"])

  def test_other_threads_without_determinism_change_the_bits(self):
    result, _ = self.train(["--nodeterministic", "--noportable", "--intra_op_threads=1"])
    outputs = tiny.outputs(result.stdout)
    self.assertEqual(outputs["partition"], self.golden["partition"])
    self.assertNotEqual(outputs["train"], self.golden["train"])

  def test_onednns_kernels_follow_the_pool_size(self):
    """Without the fixed-order kernels (--noportable), oneDNN splits weight-gradient sums by
    the pool size: the comparison above would see it."""
    trained = [tiny.outputs(self.train(["--noportable", "--exact_layers",
                                        "--intra_op_threads=%d" % pool])[0].stdout)["train"]
               for pool in (3, 4)]
    self.assertNotEqual(trained[0], trained[1])


if __name__ == "__main__":
  absltest.main()
