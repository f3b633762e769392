"""bazel run //data_tools:partition -- [--dataset=synthetic] [--image_size=128]

Partitions the petset by md5(pet_id) % 10 into training (0-6), validation (7), calibration (8)
and test (9) TFRecord splits, running download first if its output is not stored yet.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from pipeline import planning
from pipeline import tensorflow_startup


def partition():
  planning.check_flags()
  settings = determinism.from_flags()
  store = planning.open_store()
  return planning.finish(store, dataset.prepare(store, dataset.config_from_flags(), settings))


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("data", dataset), ("determinism", determinism), ("store", cli),
               ("dry run", planning), ("output", tensorflow_startup))


if __name__ == "__main__":
  cli.run(partition, FLAG_GROUPS, next_target=("//seg:train",))
