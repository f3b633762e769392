"""The download stage: the petset, a pure function of the two archives' digests.

The archives are the Oxford-IIIT Pet's own, pinned by size and sha256 and fetched from the
mirrors in order when not yet in the store (or synthetic ones, or --source ones, which the
caller has already put there). They are extracted refusing hostile members
(data_tools.archive) and turned into the petset (data_tools.petset).
"""

import os

from absl import logging

from data_tools import archive
from data_tools import fetch
from data_tools import petset
from pipeline import digest
from pipeline import errors
from pipeline import stage

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


def _check_unchanged(name, path, sha256):
  """Raises errors.Error unless an archive's bytes still have the sha256 in the stage key (a
  stored copy can be damaged on disk, a --source file replaced)."""
  actual = digest.file_digest(path)
  if actual != sha256:
    raise errors.Error(
        "%s at %s has changed since its digest was taken (sha256 now %s…, not %s…), so "
        "nothing was built from it: put the original back, or, for a store copy, run "
        "`./dev bazel run //pipeline:store -- verify --remove_damaged` (a synthetic archive) "
        "or delete it (a blob) and run again" % (name, path, actual[:12], sha256[:12]))


def run_stage(store, found, mirrors, timeout, dataset):
  """The petset from found = [(name, path, sha256, pinned?)] of the two archives (a pinned
  archive's path may not exist yet: it is fetched from the mirrors)."""
  inputs = {name: sha256 for name, _, sha256, _ in found}

  def build(out, unused_run_dir):
    paths = {}
    for name, path, _, _ in found:
      if not os.path.exists(path):  # pinned and not yet downloaded
        path = fetch.fetch(store, PINNED_BY_NAME[name], mirrors, timeout=timeout)
      elif store.verify_inputs:
        _check_unchanged(name, path, inputs[name])
      paths[name] = path
    with store.staging(prefix="extract-") as extracted:
      for name in sorted(paths):
        logging.info("download: extracting %s", name)
        # Errors name the archive as the user knows it; its path may be a store blob.
        archive.extract(paths[name], extracted,
                        name="%s (sha256 %s…)" % (name, inputs[name][:12]))
      details = petset.write_petset(extracted, out)
    details["archives"] = {name: {"sha256": sha256, "pinned": pinned}
                           for name, _, sha256, pinned in found}
    details["dataset"] = dataset
    return details

  return stage.run(store, "download", {}, inputs, {}, build)
