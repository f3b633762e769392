"""bazel run //data_tools:download -- [--dataset=synthetic] [--source=DIR]

Fetches (or generates) the Oxford-IIIT Pet archives and stores the petset: one folder per pet
with image.jpg, mask.png and metadata.json. Prints each stage's output digest and key.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

from data_tools import dataset
from pipeline import cli
from pipeline import determinism
from pipeline import planning


def download():
  planning.check_flags()
  settings = determinism.from_flags()
  store = planning.open_store()
  return planning.finish(store, dataset.prepare(store, dataset.config_from_flags(), settings,
                                                upto="download"))


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("data", dataset), ("determinism", determinism), ("store", cli),
               ("dry run", planning))


if __name__ == "__main__":
  cli.run(download, FLAG_GROUPS, next_target=("//data_tools:partition",))
