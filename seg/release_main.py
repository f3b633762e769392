"""bazel run //seg:release -- [--dataset=synthetic] [--min_pixel_accuracy=0.92] [flags]

Releases the trained, calibrated model if its test metrics pass the release gate: runs (or
takes from the store) every stage up to evaluate (test split) and export, checks evaluate's
metrics against the bounds below, and, if all hold, stores the release (export's SavedModel with
a second signature that takes image files, and assets.extra/release.json: thresholds, metrics,
what it was made from) and publishes it as releases/<--release_name>/<version> in the store: the
folder layout TensorFlow Serving and KServe load. A model that fails the gate exits with status
6 and the numbers that failed; it is not exported, released or published (the stages up to
evaluate are stored as always).
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

import dataclasses
import shlex

from absl import flags

from pipeline import cli
from pipeline import names
from pipeline import planning
from seg import launch
from seg.serve import release_gate
from seg.serve import serving_image

FLAGS = flags.FLAGS
flags.DEFINE_float("min_pixel_accuracy", release_gate.Gate.min_pixel_accuracy,
                   "Release only if the test pixel accuracy is at least this (the seed's "
                   "policy; 0 turns it off).")
flags.DEFINE_float("min_mean_iou", release_gate.Gate.min_mean_iou,
                   "Release only if the test mean IoU is at least this (0: off).")
flags.DEFINE_float("max_calibrated_ece", release_gate.Gate.max_calibrated_ece,
                   "Release only if the test expected calibration error, with the calibrate "
                   "stage's temperature, is at most this (1: off).")
flags.DEFINE_string("release_name", None,
                    "The release's name: releases/<name>/ in the store is the base path to give "
                    "a model server; a Kubernetes name (lower-case letters, digits, '-'). "
                    "Default: --dataset's value, with '-' for '_'.")


def planned_version(store, name, released):
  """The line of a dry run that says where a release Result (or Planned) would be published."""
  published = names.versions(store, name)
  version = next((v for v, d in published.items() if d == released.digest), None)
  if version:
    return "  already released as %s/%s/%d" % (names.RELEASES, name, version)
  line = "  would be released as %s/%s/%d" % (names.RELEASES, name, max(published, default=0) + 1)
  if published and released.digest is None:  # not made yet: its bits may be a version's
    line += (" (or under the version already holding its bits, if one does: %s)"
             % ", ".join(map(str, sorted(published))))
  return line


def release():
  """The stages through release, then the release published under its name: a cli.Outcome
  whose notes say where the release is and how to serve it."""
  gate = release_gate.Gate(FLAGS.min_pixel_accuracy, FLAGS.min_mean_iou,
                           FLAGS.max_calibrated_ece)
  name = FLAGS.release_name or FLAGS.dataset.replace("_", "-")
  names.check_name(name)
  results = launch.run_stages("release", gate=gate)
  if planning.dry_run():  # the plan's cli.Outcome, with where the release would go
    return dataclasses.replace(results, notes=(
        planned_version(planning.open_store(), name, results.results[-1]),) + results.notes)
  store = cli.open_store()
  version, folder = names.publish(store, name, results[-1].digest)
  notes = ["  released as %s/%s/%d in %s" % (names.RELEASES, name, version, folder)]
  newest = max(names.versions(store, name))
  if newest > version:
    notes.append("  note: %s/%s/%d is newer, and servers load the highest version: this model "
                 "was released before" % (names.RELEASES, name, newest))
  notes.append("serve it with TensorFlow Serving: docker run --rm -p 8501:8501 -v %s:/models/%s "
               "-e MODEL_NAME=%s %s" % (shlex.quote(names.folder(store, name)), name, name,
                                        serving_image.IMAGE))
  return cli.Outcome(results, tuple(notes))


if __name__ == "__main__":
  cli.run(release, launch.FLAG_GROUPS)
