"""Training configuration: config file, the seed's hyperparameter file, flags."""

import contextlib
import dataclasses
import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from data_tools import dataset  # pylint: disable=unused-import  (defines --dataset)
from pipeline import errors
from seg.configs import config
from seg.configs import config_flags


class ConfigTest(absltest.TestCase):

  def write(self, values):
    path = self.create_tempfile(content=json.dumps(values)).full_path
    return path

  def test_real_dataset_defaults_are_the_seeds_best(self):
    c = config.resolve("oxford_iiit_pet")
    self.assertEqual((c.batch_size, c.epochs, c.steps_per_epoch, c.learning_rate,
                      c.model.model_arch, c.model.backbone_weights, c.model.freeze_backbone),
                     (60, 12, 84, 0.0018464290366223407, "mobilenetv2", "imagenet", True))

  def test_synthetic_defaults_need_no_download(self):
    self.assertEqual(config.resolve("synthetic").model.backbone_weights, "none")

  def test_a_model_section_holds_the_unet_values_and_the_record_nests_it(self):
    c = config.resolve("synthetic", overrides={"dropout_blocks": 2, "epochs": 3})
    self.assertEqual((c.model.dropout_blocks, c.epochs), (2, 3))
    self.assertEqual(c.record()["model"], c.model.record())
    self.assertEqual(set(c.record()) - {"model"}, set(config.TRAIN_FIELDS))

  def test_only_unseeded_dropout_layers_make_training_unrepeatable(self):
    unseeded = config.ModelConfig(seeded_dropout=False)
    self.assertFalse(unseeded.repeatable)
    self.assertTrue(config.ModelConfig().repeatable)
    self.assertTrue(dataclasses.replace(unseeded, dropout_rate=0.0).repeatable)
    self.assertTrue(dataclasses.replace(unseeded, dropout_blocks=0).repeatable)

  def test_what_several_workers_or_trials_cannot_train_is_refused_in_one_place(self):
    unseeded = config.TrainConfig(model=config.ModelConfig(seeded_dropout=False))
    for several, fix in (("workers", "--workers=1"), ("trials", "search with seeded dropout")):
      config.refuse_several(config.TrainConfig(), 0, several)  # a repeatable run to the end
      with self.assertRaisesRegex(errors.Error, r"^--stop_after_epochs stops one run"):
        config.refuse_several(config.TrainConfig(), 1, several)
      with self.assertRaisesRegex(errors.Error, r"^--noseeded_dropout draws .*" + fix):
        config.refuse_several(unseeded, 0, several)

  def test_precedence_config_then_seed_file_then_flags(self):
    seed_file = self.write({"batch_size": 8, "epochs": 3, "iterations": 7, "learning_rate": 0.1,
                            "model_arch": "VGG19", "steps_per_epoch": 5})
    c = config.resolve("synthetic", hyperparam_path=seed_file, overrides={"epochs": 9,
                                                                          "augment": None})
    self.assertEqual((c.batch_size, c.epochs, c.learning_rate, c.model.model_arch,
                      c.steps_per_epoch), (8, 9, 0.1, "vgg19", 5))
    self.assertEqual(c.iterations, 7)
    self.assertTrue(c.augment)  # None means "not given"

  def from_command_line(self, *args):
    """config_flags.from_flags after parsing args as a command line (flags restored after)."""
    with flagsaver.flagsaver():
      flags.FLAGS(["train"] + list(args))
      return config_flags.from_flags(flags.FLAGS.dataset)

  def test_each_layer_wins_over_the_one_below_and_flags_not_given_do_not(self):
    base = self.write({"batch_size": 5, "micro_batches": 1, "seeded_dropout": False,
                       "eval_batch_size": 7, "epochs": 2})
    c = self.from_command_line("--dataset=synthetic", "--config=" + base)
    self.assertEqual((c.batch_size, c.model.seeded_dropout, c.eval_batch_size, c.epochs),
                     (5, False, 7, 2))
    seed_file = self.write({"batch_size": 6})
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--hyperparam_fn_path=" + seed_file)
    self.assertEqual((c.batch_size, c.model.seeded_dropout, c.eval_batch_size), (6, False, 7))
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--hyperparam_fn_path=" + seed_file, "--batch_size=9",
                               "--seeded_dropout", "--eval_batch_size=3")
    self.assertEqual((c.batch_size, c.model.seeded_dropout, c.eval_batch_size), (9, True, 3))
    flagfile = self.create_tempfile(content="--eval_batch_size=4\n").full_path
    c = self.from_command_line("--dataset=synthetic", "--config=" + base,
                               "--flagfile=" + flagfile)
    self.assertEqual((c.model.seeded_dropout, c.eval_batch_size), (False, 4))

  def test_unknown_config_keys_are_errors(self):
    with self.assertRaisesRegex(errors.Error, "unknown keys"):
      config.resolve("synthetic", config_path=self.write({"colour": "red"}))

  def test_extra_keys_of_the_seeds_file_are_named_and_ignored(self):
    with self.assertLogs(level="WARNING") as logs:
      c = config.resolve("synthetic", hyperparam_path=self.write(
          {"batch_size": 8, "rays_ckpt": "/tmp/ckpt", "batchsize": 9}))
    self.assertEqual(c.batch_size, 8)
    self.assertIn("ignoring keys that are not hyperparameters: batchsize, rays_ckpt", logs.output[0])

  def test_bad_values_are_named(self):
    for overrides, pattern in (({"batch_size": 0}, "batch_size=0"),
                               ({"learning_rate": -1.0}, "learning_rate"),
                               ({"dropout_rate": 1.0}, "dropout_rate"),
                               ({"dropout_blocks": 5}, "dropout_blocks=5"),
                               ({"model_arch": "resnet"}, "--model_arch=resnet"),
                               ({"backbone_weights": "/nonexistent.h5"}, "backbone_weights")):
      with self.assertRaisesRegex(errors.Error, pattern):
        config.resolve("synthetic", overrides=overrides)

  def test_a_batch_that_does_not_split_into_micro_batches_is_named(self):
    with self.assert_error_names('"micro_batches": 2 in config seg/configs/synthetic.json',
                                 "does not split --batch_size=9 into 2 equal micro-batches",
                                 "a divisor of the batch size (1, 3, 9)"):
      config.resolve("synthetic", overrides={"batch_size": 9})
    with self.assert_error_names("--micro_batches=0: expected an integer ≥ 1"):
      config.resolve("synthetic", overrides={"micro_batches": 0})
    self.assertEqual(config.resolve("synthetic", overrides={"micro_batches": 16}).micro_batches,
                     16)

  @contextlib.contextmanager
  def assert_error_names(self, *parts):
    """The body raises errors.Error, one line holding each of parts."""
    with self.assertRaises(errors.Error) as raised:
      yield
    message = str(raised.exception)
    self.assertNotIn("\n", message)
    for part in parts:
      self.assertIn(part, message)

  # (key, JSON value as written, what the error must say is expected), one of each kind.
  BAD_VALUES = (("batch_size", "4.0", "an integer ≥ 1"),           # float for int
                ("epochs", "true", "an integer ≥ 1"),              # bool for int
                ("learning_rate", '"0.001"', "a finite number > 0"),          # string for float
                ("steps_per_epoch", "null", "an integer ≥ 0"),     # null, not allowed
                ("batch_size", "0", "an integer ≥ 1"),             # out of range
                ("learning_rate", "-1", "a finite number > 0"))               # out of range, int

  def test_bad_values_in_a_config_file_name_the_file_key_value_and_expectation(self):
    for key, value, expected in self.BAD_VALUES + (("dropout_rate", "1.5", "in [0, 1)"),
                                                   ("augment", "1", "true or false")):
      with self.subTest(key=key, value=value):
        path = self.create_tempfile(content='{"%s": %s}' % (key, value)).full_path
        with self.assert_error_names("in config " + path, '"%s": %s' % (key, value), expected):
          config.resolve("synthetic", config_path=path)

  def test_bad_values_in_the_seeds_file_name_the_file_key_value_and_expectation(self):
    for key, value, expected in self.BAD_VALUES + (("model_arch", "19", "a string"),):
      with self.subTest(key=key, value=value):
        written = {"batch_size": "4", "epochs": "1", "steps_per_epoch": "2",
                   "learning_rate": "0.001", "model_arch": '"mobilenetv2"', key: value}
        seed_file = self.create_tempfile(content="{%s}" % ", ".join(
            '"%s": %s' % pair for pair in written.items())).full_path
        with self.assert_error_names("in hyperparameter file " + seed_file,
                                     '"%s": %s' % (key, value), expected):
          config.resolve("synthetic", hyperparam_path=seed_file)

  def test_the_seeds_float_batch_size_is_an_error_not_a_traceback(self):
    seed_file = self.create_tempfile(content=(
        '{"batch_size": 4.0, "epochs": 1, "steps_per_epoch": 2, "learning_rate": 0.001, '
        '"model_arch": "mobilenetv2"}')).full_path
    with self.assert_error_names('"batch_size": 4.0 in hyperparameter file %s: expected an integer '
                                 '≥ 1' % seed_file):
      config.resolve("synthetic", hyperparam_path=seed_file)

  def test_flags_out_of_range_name_the_flag(self):
    for flag, expected in (("--batch_size=0", "an integer ≥ 1"),
                           ("--eval_batch_size=0", "an integer ≥ 1"),
                           ("--steps_per_epoch=-1",
                            "an integer ≥ 0 (0: one pass over the training split)"),
                           ("--learning_rate=0.0", "a finite number > 0"),
                           ("--dropout_blocks=5",
                            "an integer from 0 to 4 (the decoder has 4 blocks)"),
                           ("--batchnorm_momentum=1.0", "a finite number in [0, 1)")):
      with self.subTest(flag=flag):
        with self.assertRaises(errors.Error) as raised:
          self.from_command_line("--dataset=synthetic", flag)
        self.assertEqual(str(raised.exception), "%s: expected %s" % (flag, expected))

  def test_flags_of_the_wrong_type_are_refused_by_absl(self):
    with self.assertRaises(flags.IllegalFlagValueError):
      self.from_command_line("--dataset=synthetic", "--batch_size=4.0")

  def test_null_is_taken_where_a_key_may_be_null(self):
    c = config.resolve("synthetic", config_path=self.write({"batchnorm_momentum": None}),
                       hyperparam_path=self.write({"iterations": None}))
    self.assertEqual((c.model.batchnorm_momentum, c.iterations), (None, None))

  def test_an_int_for_a_float_is_stored_as_a_float(self):
    as_int = config.resolve("synthetic", config_path=self.write({"learning_rate": 1}))
    as_float = config.resolve("synthetic", config_path=self.write({"learning_rate": 1.0}))
    self.assertIs(type(as_int.learning_rate), float)
    self.assertEqual(json.dumps(as_int.record()), json.dumps(as_float.record()))

  def test_every_non_bool_key_has_a_range(self):
    fields = dataclasses.fields(config.ModelConfig) + dataclasses.fields(config.TrainConfig)
    self.assertEqual(set(config.RANGES),
                     {f.name for f in fields if f.type is not bool and f.name != "model"})

  def test_a_frozen_random_encoder_is_refused_naming_both_sources_and_the_fix(self):
    real = "seg/configs/oxford_iiit_pet.json"  # named as in the source tree
    fix = ("--nofreeze_backbone", "--backbone_weights=imagenet", "--backbone_weights=PATH")
    with self.assert_error_names(
        '"freeze_backbone": true in config %s with --backbone_weights=none' % real, *fix):
      self.from_command_line("--backbone_weights=none")
    with self.assert_error_names(
        '--freeze_backbone with "backbone_weights": "none" in config ', *fix):
      self.from_command_line("--dataset=synthetic", "--freeze_backbone")
    frozen = self.write({"freeze_backbone": True})
    with self.assert_error_names('"backbone_weights": "none" by default', *fix):
      config.resolve("synthetic", config_path=frozen)
    c = self.from_command_line("--backbone_weights=none", "--nofreeze_backbone")
    self.assertEqual((c.model.backbone_weights, c.model.freeze_backbone), ("none", False))

  def test_unreadable_file_is_named(self):
    with self.assertRaisesRegex(errors.Error, "cannot read config /nonexistent.json"):
      config.resolve("synthetic", config_path="/nonexistent.json")

  def test_shipped_configs_are_complete(self):
    for name in os.listdir(config.CONFIG_DIR):  # and search_spaces/, checked by search_test
      if name.endswith(".json"):
        config.resolve(name[:-len(".json")])


if __name__ == "__main__":
  absltest.main()
