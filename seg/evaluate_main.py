"""bazel run //seg:evaluate -- [--dataset=synthetic] [--split=test] [flags]

Measures the trained, calibrated model on a split, running (or taking from the store)
download, partition, train and calibrate first. Writes metrics.json, confusion.json,
confusion.png and gallery.png; prints every stage's output digest and key.
"""

from pipeline import signals_blocked  # pylint: disable=unused-import,g-bad-import-order

from absl import flags

from data_tools import partition
from pipeline import cli
from seg import launch
from seg.evaluation import figures

FLAGS = flags.FLAGS
flags.DEFINE_enum("split", "test", list(partition.SPLITS), "The split to measure.")
flags.DEFINE_integer("gallery_size", figures.GALLERY_SIZE,
                     "Pets in gallery.png: the split's first, by pet id.", lower_bound=1)


def evaluate():
  return launch.run_stages("evaluate", split=FLAGS.split, gallery_size=FLAGS.gallery_size)


if __name__ == "__main__":
  cli.run(evaluate, launch.FLAG_GROUPS, next_target=("//seg:predict", "--image=PHOTO.jpg"))
