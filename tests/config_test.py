"""Training configuration: config file, the seed's hyperparameter file, flags."""

import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from data_tools import dataset  # pylint: disable=unused-import  (defines --dataset)
from pipeline import errors
from seg import config


class ConfigTest(absltest.TestCase):

  def write(self, values):
    path = self.create_tempfile(content=json.dumps(values)).full_path
    return path

  def test_real_dataset_defaults_are_the_seeds_best(self):
    c = config.resolve("oxford_iiit_pet")
    self.assertEqual((c.batch_size, c.epochs, c.steps_per_epoch, c.learning_rate, c.model_arch,
                      c.backbone_weights, c.freeze_backbone),
                     (60, 12, 84, 0.0018464290366223407, "mobilenetv2", "imagenet", True))

  def test_synthetic_defaults_need_no_download(self):
    self.assertEqual(config.resolve("synthetic").backbone_weights, "none")

  def test_precedence_config_then_seed_file_then_flags(self):
    seed_file = self.write({"batch_size": 8, "epochs": 3, "iterations": 7, "learning_rate": 0.1,
                            "model_arch": "VGG19", "steps_per_epoch": 5})
    c = config.resolve("synthetic", hyperparam_path=seed_file, overrides={"epochs": 9,
                                                                          "augment": None})
    self.assertEqual((c.batch_size, c.epochs, c.learning_rate, c.model_arch, c.steps_per_epoch),
                     (8, 9, 0.1, "vgg19", 5))
    self.assertEqual(c.iterations, 7)
    self.assertTrue(c.augment)  # None means "not given"

  def from_command_line(self, *args):
    """config.from_flags() after parsing args as a command line (flags restored after)."""
    with flagsaver.flagsaver():
      flags.FLAGS(["train"] + list(args))
      return config.from_flags()

  def test_each_layer_wins_over_the_one_below_and_flags_not_given_do_not(self):
    base = self.write({"batch_size": 5, "seeded_dropout": False, "eval_batch_size": 7,
                       "epochs": 2})
    c = self.from_command_line("--dataset=synthetic", "--config=" + base)
    self.assertEqual((c.batch_size, c.seeded_dropout, c.eval_batch_size, c.epochs),
                     (5, False, 7, 2))
    seed_file = self.write({"batch_size": 6})
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--hyperparam_fn_path=" + seed_file)
    self.assertEqual((c.batch_size, c.seeded_dropout, c.eval_batch_size), (6, False, 7))
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--hyperparam_fn_path=" + seed_file, "--batch_size=9",
                               "--seeded_dropout", "--eval_batch_size=3")
    self.assertEqual((c.batch_size, c.seeded_dropout, c.eval_batch_size), (9, True, 3))
    flagfile = self.create_tempfile(content="--eval_batch_size=4\n").full_path
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--flagfile=" + flagfile)
    self.assertEqual((c.seeded_dropout, c.eval_batch_size), (False, 4))

  def test_unknown_config_keys_are_errors(self):
    with self.assertRaisesRegex(errors.Error, "unknown keys"):
      config.resolve("synthetic", config_path=self.write({"colour": "red"}))

  def test_extra_keys_of_the_seeds_file_are_named_and_ignored(self):
    with self.assertLogs(level="WARNING") as logs:
      c = config.resolve("synthetic", hyperparam_path=self.write(
          {"batch_size": 8, "rays_ckpt": "/tmp/ckpt", "batchsize": 9}))
    self.assertEqual(c.batch_size, 8)
    self.assertIn("ignoring batchsize, rays_ckpt", logs.output[0])

  def test_bad_values_are_named(self):
    for overrides, pattern in (({"batch_size": 0}, "batch_size=0"),
                               ({"learning_rate": -1.0}, "learning_rate"),
                               ({"dropout_rate": 1.0}, "dropout_rate"),
                               ({"dropout_blocks": 5}, "dropout_blocks=5"),
                               ({"model_arch": "resnet"}, "model_arch 'resnet'"),
                               ({"backbone_weights": "/nonexistent.h5"}, "backbone_weights")):
      with self.assertRaisesRegex(errors.Error, pattern):
        config.resolve("synthetic", overrides=overrides)

  def test_unreadable_file_is_named(self):
    with self.assertRaisesRegex(errors.Error, "cannot read config /nonexistent.json"):
      config.resolve("synthetic", config_path="/nonexistent.json")

  def test_shipped_configs_are_complete(self):
    for name in os.listdir(config.CONFIG_DIR):
      config.resolve(name[:-len(".json")])


if __name__ == "__main__":
  absltest.main()
