"""bazel run //seg:evaluate -- [--dataset=synthetic] [--split=test] [flags]

Measures the trained, calibrated model on a split, running (or taking from the store)
download, partition, train and calibrate first. Writes metrics.json, confusion.json,
confusion.png and gallery.png; prints every stage's output digest and key.
"""

from absl import flags

from data_tools import dataset
from data_tools import partition
from pipeline import cli
from pipeline import determinism
from seg import config
from seg import launch

FLAGS = flags.FLAGS
flags.DEFINE_enum("split", "test", list(partition.SPLITS), "The split to measure.")
flags.DEFINE_integer("gallery_size", 12, "Pets in gallery.png: the split's first, by pet id.",
                     lower_bound=1)


def evaluate():
  return launch.run_stages("evaluate", split=FLAGS.split, gallery_size=FLAGS.gallery_size)


# The modules whose flags this binary reads, as --help groups them.
FLAG_GROUPS = (("training", config),
               ("data", dataset),
               ("determinism", determinism),
               ("store", cli))


if __name__ == "__main__":
  cli.run(evaluate, FLAG_GROUPS, next_target=("//seg:predict", "--image=PHOTO.jpg"))
