"""bazel run //seg:export -- [--dataset=synthetic] [flags]

Exports the trained, calibrated model (running or taking from the store every stage before
it): saved_model/ (a TensorFlow SavedModel: uint8 images of any size → class ids and
calibrated probabilities) and model.keras, both loadable without reproseg. Prints every
stage's output digest and key, and the export's folder.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

from pipeline import cli
from seg import launch


def export():
  return launch.run_stages("export")


if __name__ == "__main__":
  cli.run(export, launch.FLAG_GROUPS, next_target=("//seg:predict", "--image=PHOTO.jpg"))
