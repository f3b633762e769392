"""Partitions a petset into training, validation, calibration and test splits of TFRecords.

A pet's split is int(md5(pet_id).hexdigest(), 16) % 10: 0-6 training, 7 validation,
8 calibration, 9 test. Images are resized to image_size x image_size (bilinear), masks by
nearest neighbour with trimap 1/2/3 mapped to class 0 (pet) / 1 (background) / 2 (border).
Each split is written sorted by pet id into shards of TFRecords of tf.train.Example with raw
uint8 pixels, so the reader needs no decoding and the bytes do not depend on the machine.
"""

import hashlib
import io
import json
import os

import numpy as np
from absl import logging
from PIL import Image

from pipeline import errors
from pipeline import files
from pipeline import stage
from pipeline import tensorflow_startup

SPLITS = ("training", "validation", "calibration", "test")
NUM_CLASSES = 3
CLASS_NAMES = ("pet", "background", "border")
INFO_FILE = "splits.json"  # beside the shards: data_tools.split_reader.split_info reads it


def split_of(pet_id):
  bucket = int(hashlib.md5(pet_id.encode("utf-8")).hexdigest(), 16) % 10
  if bucket <= 6:
    return "training"
  return SPLITS[bucket - 6]


def trimap_to_classes(trimap):
  """Trimap 1 (pet), 2 (background), 3 (border) -> class 0, 1, 2."""
  trimap = np.asarray(trimap)
  if trimap.size and (trimap.min() < 1 or trimap.max() > 3):
    raise ValueError("trimap values must be 1, 2 or 3; found %s" % sorted(np.unique(trimap)))
  return (trimap - 1).astype(np.uint8)


def resize_pair(image_bytes, mask_bytes, size):
  """Decodes and resizes one pet: (uint8 [size, size, 3] image, uint8 [size, size] classes)."""
  with Image.open(io.BytesIO(image_bytes)) as picture:
    image = np.asarray(picture.convert("RGB").resize((size, size), Image.BILINEAR))
  with Image.open(io.BytesIO(mask_bytes)) as picture:
    mask = trimap_to_classes(np.asarray(picture.resize((size, size), Image.NEAREST)))
  return image, mask


def check_image_size(image_size):
  if image_size < 32 or image_size % 32:
    raise errors.Error("--image_size=%d: use a multiple of 32 from 32 up (the U-Net halves the "
                       "image five times)" % image_size)


def shard_name(split, index, count):
  return "%s-%05d-of-%05d.tfrecord" % (split, index, count)


def _example(tf, index, pet_id, metadata, image, mask):
  def int64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

  def raw(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

  return tf.train.Example(features=tf.train.Features(feature={
      "index": int64(index), "pet_id": raw(pet_id.encode()), "image": raw(image.tobytes()),
      "mask": raw(mask.tobytes()), "size": int64(image.shape[0]),
      "class_id": int64(metadata["class_id"]), "species": int64(metadata["species"]),
  })).SerializeToString(deterministic=True)


def write_splits(petset_dir, out_dir, image_size, examples_per_shard=1000, log_every=1000):
  """Writes the split shards and splits.json into out_dir; returns the details (counts)."""
  with tensorflow_startup.quiet():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  check_image_size(image_size)
  pet_ids = sorted(os.listdir(petset_dir))
  members = {split: [p for p in pet_ids if split_of(p) == split] for split in SPLITS}
  done, shards = 0, {}
  for split in SPLITS:
    ids = members[split]
    count = max(1, -(-len(ids) // examples_per_shard))
    shards[split] = [shard_name(split, i, count) for i in range(count)]
    for shard in range(count):
      with tf.io.TFRecordWriter(os.path.join(out_dir, shards[split][shard])) as writer:
        for index in range(shard * examples_per_shard,
                           min(len(ids), (shard + 1) * examples_per_shard)):
          pet_dir = os.path.join(petset_dir, ids[index])
          with open(os.path.join(pet_dir, "image.jpg"), "rb") as f:
            image_bytes = f.read()
          with open(os.path.join(pet_dir, "mask.png"), "rb") as f:
            mask_bytes = f.read()
          with open(os.path.join(pet_dir, "metadata.json")) as f:
            metadata = json.load(f)
          image, mask = resize_pair(image_bytes, mask_bytes, image_size)
          writer.write(_example(tf, index, ids[index], metadata, image, mask))
          done += 1
          if done % log_every == 0:
            logging.info("partition: %d of %d pets", done, len(pet_ids))
  counts = {split: len(members[split]) for split in SPLITS}
  info = {"image_size": image_size, "num_classes": NUM_CLASSES, "class_names": CLASS_NAMES,
          "counts": counts, "shards": shards}
  files.write_json(os.path.join(out_dir, INFO_FILE), info)
  logging.info("partition: %s", counts)
  return {"counts": counts}


# --- The stage -----------------------------------------------------------------------------
def run_stage(store, petset_result, image_size, examples_per_shard):
  """The partition stage on a download Result."""
  params = {"image_size": image_size, "examples_per_shard": examples_per_shard}

  def build(out, unused_run_dir):
    return write_splits(petset_result.path, out, image_size, examples_per_shard)

  return stage.run(store, "partition", params, {"petset": petset_result}, {}, build)
