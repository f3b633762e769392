"""The reader of the partition stage's splits (data_tools.partition writes them): splits.json
and the TFRecord shards, as tf.data datasets in stored order (by pet id). Training's shuffled,
augmented batches are seg.training.batches'.
"""

import json
import os

import tensorflow as tf

from data_tools import partition


def split_info(splits_dir):
  """splits.json of a partition output: image_size, num_classes, class_names, and counts and
  shards by split."""
  with open(os.path.join(splits_dir, partition.INFO_FILE)) as f:
    return json.load(f)


def _parse(image_size, key):
  spec = {key: tf.io.FixedLenFeature([], tf.int64 if key == "index" else tf.string),
          "image": tf.io.FixedLenFeature([], tf.string),
          "mask": tf.io.FixedLenFeature([], tf.string)}

  def parse(record):
    example = tf.io.parse_single_example(record, spec)
    image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), [image_size, image_size, 3])
    mask = tf.reshape(tf.io.decode_raw(example["mask"], tf.uint8), [image_size, image_size])
    return example[key], image, mask

  return parse


def records(splits_dir, split, key="index"):
  """The split's (key, uint8 image, uint8 mask) examples in stored order (by pet id), and
  their count; key is "index" (the example's number) or "pet_id"."""
  if split not in partition.SPLITS:
    raise ValueError("unknown split %r" % split)
  info = split_info(splits_dir)
  files = [os.path.join(splits_dir, name) for name in info["shards"][split]]
  dataset = tf.data.TFRecordDataset(files).map(_parse(info["image_size"], key),
                                               num_parallel_calls=tf.data.AUTOTUNE,
                                               deterministic=True)
  return dataset, info["counts"][split]


def model_input(image, mask):
  """(float32 image, int32 mask): the types the model and its loss take."""
  return tf.cast(image, tf.float32), tf.cast(mask, tf.int32)


def ordered_batches(splits_dir, split, batch_size):
  """The whole split in stored order, batched (the last batch may be smaller)."""
  dataset, count = records(splits_dir, split)
  dataset = dataset.map(lambda index, image, mask: model_input(image, mask),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.batch(batch_size).prefetch(2), count
