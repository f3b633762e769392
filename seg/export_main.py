"""bazel run //seg:export -- [--dataset=synthetic] [flags]

Exports the trained, calibrated model (running or taking from the store every stage before
it): saved_model/ (a TensorFlow SavedModel: uint8 images of any size → class ids and
calibrated probabilities) and model.keras, both loadable without reproseg. Prints every
stage's output digest and key, and the export's folder.
"""

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from seg import config
from seg import launch


def export():
  return launch.run_stages("export")


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("training", config),
               ("data", dataset),
               ("determinism", determinism),
               ("store", cli))


if __name__ == "__main__":
  cli.run(export, FLAG_GROUPS, next_target=("//seg:predict", "--image=PHOTO.jpg"))
