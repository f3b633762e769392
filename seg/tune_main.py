"""bazel run //seg:tune -- [--dataset=synthetic] [--trials=8] [--round_size=4] [flags]

Searches the hyperparameters of a search space (--search_space) and writes the best as a file
in the seed's format, which //seg:train --hyperparam_fn_path reads. Every trial is a train
stage, run as //seg:train with the trial's values and this command's other flags; the trials
and the best are a function of --seed, the space, the training config and the options below,
whatever order trials finish in and however many run at once. Run again, it is a cache hit;
with more --trials, the earlier trials are cache hits.

Prints each trial as it ends (on stderr), then the stage lines, the summary, the trials as a
table, best first, the best hyperparameters, and the command that trains with them; the
output also holds trials.json and search.png.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

import dataclasses
import os
import re
import sys

from absl import flags

from pipeline import cli
from pipeline import determinism
from pipeline import digest
from pipeline import errors
from pipeline import names
from pipeline import planning
from pipeline import user_input
from seg import launch
from seg import stages
from seg.configs import config
from seg.configs import config_flags
from seg.configs import search_space
from seg.model import backbones
from seg.tuning import trial_table
from seg.tuning import tune as tune_lib

FLAGS = flags.FLAGS
SPACES = "search_spaces"  # the shipped spaces' folder in seg/configs

user_input.define_path("search_space", None,
                       "The search space, a JSON file (seg/configs/search_space.py says its "
                       "format). "
                       "Default: seg/configs/search_spaces/<--dataset>.json.")
flags.DEFINE_integer("trials", 8, "Trials in all: each trains one configuration.")
flags.DEFINE_integer("round_size", 4,
                     "Trials proposed together, before any of their results is known; their "
                     "results are told to the sampler in trial order once all have ended. "
                     "Changes the trials, unlike --parallel_trials.")
flags.DEFINE_integer("startup_trials", 4,
                     "Trials drawn at random (seeded) before TPE models the results (Optuna's "
                     "n_startup_trials).")
flags.DEFINE_integer("parallel_trials", 1,
                     "Trials that train at once, as processes on this machine (at most "
                     "--round_size take effect). Each has its own intra-op pool "
                     "(--intra_op_threads); the trials do not depend on it.")

def train_flags(searched):
  """The training, data, determinism, store and output flags given to this command, as absl
  writes them: what every trial's //seg:train takes. Raises errors.Error for a flag that a
  trial sets (searched: the names the space sets)."""
  given = [name for _, module in launch.FLAG_GROUPS
           for name in (f.name for f in FLAGS.get_key_flags_for_module(module))
           # Trials are named by name_trials, and hand their results back in files of their own.
           if FLAGS[name].present and name not in ("run_name", "result_json")]
  clash = [name for name in given if name in searched]
  if clash:
    raise errors.Error("--%s is searched by the search space: drop the flag, or take it out "
                       "of the space" % clash[0])
  return [FLAGS[name].serialize() for name in given]


def backbone_weights(model_config, space, image_size, settings):
  """{arch: digest of its encoder weights file} for each encoder a trial may use (the space's
  model_arch choices, else the config's), or None for backbone_weights none. ImageNet weights
  are fetched as a trial fetches them, TensorFlow started first (determinism.apply); a dry run
  fetches nothing and starts no TensorFlow (seg.model.backbones.weights_file)."""
  if model_config.backbone_weights == "none":
    return None
  archs = next((p.choices for p in space.parameters if p.name == "model_arch"),
               (model_config.model_arch,))
  if model_config.backbone_weights == "imagenet" and not planning.dry_run():
    determinism.apply(settings)
  return {arch: digest.file_digest(backbones.weights_file(
      dataclasses.replace(model_config, model_arch=arch), image_size,
      fetch=not planning.dry_run())) for arch in archs}


def trial_name(trial):
  """A trial's run name, from the tune's --run_name: "<run_name>-trial-3"."""
  return "%s-trial-%d" % (FLAGS.run_name, trial)


def name_trials(store, tuned):
  """Gives each trial's train run its trial_name, if --run_name is set, and takes the names
  of an earlier search under that name off the runs that are not this search's trials."""
  if FLAGS.run_name:
    keys = tuned.manifest["details"]["trial_train_keys"]
    names.rename_runs(store, {trial_name(trial): key for trial, key in enumerate(keys, 1)
                              if key is not None},  # a diverged trial stored no run
                      dropped=re.escape(FLAGS.run_name) + r"-trial-\d+")


def tune():
  """The data stages and the tune stage; a cli.Outcome whose notes are the trial table and the
  command that trains with the best hyperparameters."""
  settings, data_config, base = launch.configs_from_flags()
  determinism.check_cpu(settings)  # as a trial would, before any trial runs
  space = search_space.load(
      FLAGS.search_space or os.path.join(config.CONFIG_DIR, SPACES, data_config.dataset + ".json"),
      lambda values: config_flags.from_flags(data_config.dataset, values),
      shown=None if FLAGS.search_space else "seg/configs/%s/%s.json" % (SPACES,
                                                                     data_config.dataset))
  flags_given = train_flags(space.names)
  config.refuse_several(base, FLAGS.stop_after_epochs, "trials")
  if FLAGS.run_name and len(trial_name(FLAGS.trials)) > names.MAX_LENGTH:
    raise errors.Error("--run_name=%s: its trials are named %s to %s, longer than %d "
                       "characters: give a shorter name" % (
                           FLAGS.run_name, trial_name(1), trial_name(FLAGS.trials),
                           names.MAX_LENGTH))
  if FLAGS.parallel_trials < 1:
    raise errors.Error("--parallel_trials=%d: give at least 1" % FLAGS.parallel_trials)
  options = tune_lib.Options(FLAGS.trials, FLAGS.round_size, FLAGS.startup_trials)
  weights = backbone_weights(base.model, space, data_config.image_size, settings)
  run = launch.open_run(settings, data_config, base)  # the store, once the inputs are checked
  results = stages.tune(run, space, options, [sys.executable, tune_lib.TRAIN_MAIN] + flags_given,
                        FLAGS.parallel_trials, weights)
  if planning.dry_run():
    return planning.outcome(run.store, list(results.values()))  # no trial runs
  tuned = results["tune"]
  name_trials(run.store, tuned)
  best = os.path.join(tuned.path, tune_lib.BEST_FILE)
  return cli.Outcome(list(results.values()), tuple(trial_table.lines(tuned, space)) + (
      cli.next_command("//seg:train", ["tune"] + [
          f for f in flags_given if not f.startswith("--hyperparam_fn_path=")] + [
              "--hyperparam_fn_path=" + best]),))


if __name__ == "__main__":
  cli.run(tune, launch.FLAG_GROUPS)
