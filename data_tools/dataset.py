"""The data stages and their flags: synthetic → download (the petset) → partition.

  synthetic   (only for --dataset=synthetic) the twin archives, from --seed
  download    the petset, a pure function of the two archives' digests
  partition   TFRecord splits of the petset at --image_size

prepare() runs them in order through the store; each is a cache hit when its key is stored.
"""

import dataclasses
import os

from absl import flags
from absl import logging

from data_tools import archive
from data_tools import fetch
from data_tools import partition
from data_tools import petset
from data_tools import synthetic
from pipeline import determinism
from pipeline import errors
from pipeline import stage

FLAGS = flags.FLAGS

# The Oxford-IIIT Pet archives as TensorFlow Datasets records them.
PINNED = (
    fetch.Pinned("images.tar.gz", 791918971,
                 "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d"),
    fetch.Pinned("annotations.tar.gz", 19173078,
                 "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91"),
)
PINNED_BY_NAME = {p.name: p for p in PINNED}
MIRRORS = ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/",
           "https://thor.robots.ox.ac.uk/~vgg/data/pets/")

flags.DEFINE_enum(
    "dataset", "oxford_iiit_pet", ["oxford_iiit_pet", "synthetic"],
    "oxford_iiit_pet: the real archives (from --mirrors, or --source). synthetic: archives in "
    "the same layout generated from --seed, for offline runs and tests.")
flags.DEFINE_string(
    "source", None,
    "A folder holding images.tar.gz and annotations.tar.gz (or plain .tar) already on disk; "
    "used instead of the mirrors.")
flags.DEFINE_bool(
    "allow_unpinned_archives", False,
    "Accept --source archives whose sha256 differs from the pinned one (a subset, a repack). "
    "Their digests are recorded in the manifest and key the petset as always.")
flags.DEFINE_list("mirrors", list(MIRRORS),
                  "Base URLs to download the archives from, tried in order.")
flags.DEFINE_integer("download_timeout", 60, "Seconds without data before a mirror is dropped.")
flags.DEFINE_integer("synthetic_images", 400, "Number of pets in the synthetic dataset.")
flags.DEFINE_integer("synthetic_image_size", 96,
                     "Typical side, in pixels, of a synthetic image (each varies by ±25%).")
flags.DEFINE_bool("synthetic_quirks", True,
                  "Give the synthetic archives the real dataset's quirks (non-RGB images named "
                  ".jpg, `._` files, a missing trimap, a missing list.txt row, a .mat file).")
flags.DEFINE_integer("image_size", 128,
                     "Side of the square images and masks that partition writes (multiple of 32).")
flags.DEFINE_integer("examples_per_shard", 1000, "Examples per TFRecord shard.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str = "oxford_iiit_pet"
  source: str = None
  allow_unpinned_archives: bool = False
  mirrors: tuple = MIRRORS
  download_timeout: int = 60
  synthetic_images: int = 400
  synthetic_image_size: int = 96
  synthetic_quirks: bool = True
  image_size: int = 128
  examples_per_shard: int = 1000

  def __post_init__(self):
    partition.check_image_size(self.image_size)
    if self.dataset == "synthetic" and self.source:
      raise errors.Error("--source is for --dataset=oxford_iiit_pet; synthetic archives are "
                         "generated")
    if self.source and not os.path.isdir(self.source):
      raise errors.Error("--source=%s is not a folder: give the folder that holds "
                         "images.tar.gz and annotations.tar.gz" % self.source)
    minimum = synthetic.MIN_IMAGES_WITH_QUIRKS if self.synthetic_quirks else 1
    if self.synthetic_images < minimum:
      raise errors.Error("--synthetic_images=%d: use at least %d%s" % (
          self.synthetic_images, minimum, " (or --nosynthetic_quirks)" if minimum > 1 else ""))
    if self.synthetic_image_size < 32:
      raise errors.Error("--synthetic_image_size=%d: use 32 or more" % self.synthetic_image_size)
    if self.examples_per_shard < 1:
      raise errors.Error("--examples_per_shard must be positive")


def config_from_flags():
  return DataConfig(
      dataset=FLAGS.dataset, source=FLAGS.source,
      allow_unpinned_archives=FLAGS.allow_unpinned_archives, mirrors=tuple(FLAGS.mirrors),
      download_timeout=FLAGS.download_timeout, synthetic_images=FLAGS.synthetic_images,
      synthetic_image_size=FLAGS.synthetic_image_size, synthetic_quirks=FLAGS.synthetic_quirks,
      image_size=FLAGS.image_size, examples_per_shard=FLAGS.examples_per_shard)


# --- Stages -------------------------------------------------------------------------------------
def synthetic_stage(store, config, settings):
  params = {"seed": determinism.derive_seed(settings.seed, "synthetic"),
            "images": config.synthetic_images, "image_size": config.synthetic_image_size,
            "quirks": config.synthetic_quirks}

  def build(out, unused_run_dir):
    return {"members": synthetic.write_archives(out, params["seed"], params["images"],
                                                params["image_size"], params["quirks"])}

  return stage.run(store, "synthetic", ("data_tools.synthetic",), params, {}, {}, build)


def _find_in_source(folder, name):
  for candidate in (name, name[:-len(".gz")]):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  raise errors.Error("--source=%s holds no %s (nor %s): put the Oxford-IIIT Pet archives "
                     "there" % (folder, name, name[:-len(".gz")]))


def archives(store, config, settings):
  """(the synthetic stage's Result or None, [(name, path, sha256, pinned?)] of the two
  archives the petset is made from)."""
  if config.dataset == "synthetic":
    made = synthetic_stage(store, config, settings)
    digests = store.file_digests(made.digest)
    return made, [(p.name, os.path.join(made.path, p.name), digests[p.name], False)
                  for p in PINNED]
  found = []
  for pinned in PINNED:
    if config.source:
      source_path = _find_in_source(config.source, pinned.name)

      def check(size, sha256, pinned=pinned, source_path=source_path):
        if sha256 != pinned.sha256 and not config.allow_unpinned_archives:
          raise errors.Error(
              "%s has sha256 %s (%d bytes), not the pinned %s (%d bytes) of the Oxford-IIIT "
              "Pet %s. If this archive is deliberate (a subset, a repack), pass "
              "--allow_unpinned_archives; its digest is then recorded in the manifest."
              % (source_path, sha256, size, pinned.sha256, pinned.size, pinned.name))

      path, _, sha256 = fetch.import_file(store, source_path, check)
    else:
      path, sha256 = store.blob_path(pinned.sha256), pinned.sha256
    found.append((pinned.name, path, sha256, sha256 == pinned.sha256))
  return None, found


def download_stage(store, config, settings):
  """The petset. Returns (synthetic Result or None, petset Result)."""
  made, found = archives(store, config, settings)
  inputs = {name: sha256 for name, _, sha256, _ in found}

  def build(out, unused_run_dir):
    paths = {}
    for name, path, sha256, _ in found:
      if not os.path.exists(path):  # pinned and not yet downloaded
        path = fetch.fetch(store, PINNED_BY_NAME[name], config.mirrors,
                           timeout=config.download_timeout)
      paths[name] = path
    with store.staging(prefix="extract-") as extracted:
      for name in sorted(paths):
        logging.info("download: extracting %s", name)
        archive.extract(paths[name], extracted)
      details = petset.build(extracted, out)
    details["archives"] = {name: {"sha256": sha256, "pinned": pinned}
                           for name, _, sha256, pinned in found}
    details["dataset"] = config.dataset
    return details

  return made, stage.run(store, "download", ("data_tools.petset", "data_tools.archive"), {}, inputs, {}, build)


def partition_stage(store, config, petset_result):
  params = {"image_size": config.image_size, "examples_per_shard": config.examples_per_shard}

  def build(out, unused_run_dir):
    return partition.write_splits(petset_result.path, out, config.image_size,
                                  config.examples_per_shard)

  return stage.run(store, "partition", ("data_tools.partition",), params,
                   {"petset": petset_result.digest}, {}, build)


def prepare(store, config, settings, upto="partition"):
  """Runs the data stages up to `upto` ("download" or "partition"); returns their Results."""
  made, petset_result = download_stage(store, config, settings)
  results = [r for r in (made, petset_result) if r is not None]
  if upto == "partition":
    results.append(partition_stage(store, config, petset_result))
  return results
