"""The data stages and their flags: synthetic → download (the petset) → partition.

  synthetic   (only for --dataset=synthetic) the twin archives, from --seed (synthetic.py)
  download    the petset, a pure function of the two archives' digests (download.py)
  partition   TFRecord splits of the petset at --image_size (partition.py)

prepare() runs them in order through the store; each is a cache hit when its key is stored.
Each stage's build function lives in its own module, whose import closure is its code in
the key (pipeline/code.py): this module only chains them.
"""

import dataclasses
import os

from absl import flags

from data_tools import download
from data_tools import fetch
from data_tools import partition
from data_tools import synthetic
from pipeline import digest
from pipeline import errors
from pipeline import seeds
from pipeline import stage
from pipeline import user_input

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    "dataset", "oxford_iiit_pet", ["oxford_iiit_pet", "synthetic"],
    "oxford_iiit_pet: the real archives (from --mirrors, or --source). synthetic: archives in "
    "the same layout generated from --seed, for offline runs and tests.")
user_input.define_path(
    "source", None,
    "A folder holding images.tar.gz and annotations.tar.gz (or plain .tar) already on disk; "
    "used instead of the mirrors.")
flags.DEFINE_bool(
    "allow_unpinned_archives", False,
    "Accept --source archives whose sha256 differs from the pinned one (a subset, a repack). "
    "Their digests are recorded in the manifest and key the petset as always.")
flags.DEFINE_list("mirrors", list(download.MIRRORS),
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
  mirrors: tuple = download.MIRRORS
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
def _find_in_source(folder, name):
  for candidate in (name, name[:-len(".gz")]):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  raise errors.Error("--source=%s holds no %s (nor %s): put the Oxford-IIIT Pet archives "
                     "there" % (folder, name, name[:-len(".gz")]))


def archives(store, config, settings):
  """(the synthetic stage's Result or None, [(name, path, sha256, pinned?)] of the two
  archives the petset is made from). In a dry run, a synthetic stage that would compute is a
  pipeline.stage.Planned, and stands for each archive's sha256; a --source archive is hashed
  where it is, not imported into the store."""
  if config.dataset == "synthetic":
    made = synthetic.run_stage(store, seeds.derive_seed(settings.seed, "synthetic"),
                               config.synthetic_images, config.synthetic_image_size,
                               config.synthetic_quirks)
    if isinstance(made, stage.Planned):
      return made, [(p.name, None, made, False) for p in download.PINNED]
    digests = store.file_digests(made.digest)
    return made, [(p.name, os.path.join(made.path, p.name), digests[p.name], False)
                  for p in download.PINNED]
  found = []
  for pinned in download.PINNED:
    if config.source:
      source_path = _find_in_source(config.source, pinned.name)

      def check(size, sha256, pinned=pinned, source_path=source_path):
        if sha256 != pinned.sha256 and not config.allow_unpinned_archives:
          raise errors.Error(
              "%s has sha256 %s (%d bytes), not the pinned %s (%d bytes) of the Oxford-IIIT "
              "Pet %s. If this archive is deliberate (a subset, a repack), pass "
              "--allow_unpinned_archives; its digest is then recorded in the manifest."
              % (source_path, sha256, size, pinned.sha256, pinned.size, pinned.name))

      if store.planning:
        path, sha256 = source_path, digest.file_digest(source_path)
        check(os.path.getsize(path), sha256)
      else:
        path, _, sha256 = fetch.import_file(store, source_path, check)
    else:
      path, sha256 = store.blob_path(pinned.sha256), pinned.sha256
    found.append((pinned.name, path, sha256, sha256 == pinned.sha256))
  return None, found


def download_stage(store, config, settings):
  """The petset. Returns (synthetic Result or None, petset Result)."""
  made, found = archives(store, config, settings)
  return made, download.run_stage(store, found, config.mirrors, config.download_timeout,
                                  config.dataset)


def prepare(store, config, settings, upto="partition"):
  """Runs the data stages up to `upto` ("download" or "partition"); returns their Results."""
  made, petset_result = download_stage(store, config, settings)
  results = [r for r in (made, petset_result) if r is not None]
  if upto == "partition":
    results.append(partition.run_stage(store, petset_result, config.image_size,
                                       config.examples_per_shard))
  return results
