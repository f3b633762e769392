"""tf.data input pipelines over the partition stage's TFRecord splits.

Training order and augmentation are pure functions of (seed, epoch, example): epoch e reads
the split shuffled with a seed derived from (seed, e), and flips example i left-right when a
stateless draw keyed by (seed, e, i) says so, image and mask alike. Any epoch can therefore
be rebuilt on its own, which is what resuming from a checkpoint needs.
"""

import json
import os

import tensorflow as tf

from data_tools import partition
from pipeline import seeds


def split_info(splits_dir):
  with open(os.path.join(splits_dir, "splits.json")) as f:
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


def _to_model(image, mask):
  return tf.cast(image, tf.float32), tf.cast(mask, tf.int32)


def training_batches(splits_dir, seed, epoch, batch_size, steps, augment=True, rows=None):
  """Batches of epoch `epoch`: `steps` batches of (float image, int mask), reshuffled on each
  pass over the split (a pass ends, and the next begins, within an epoch when needed).

  rows=(start, stop): only those rows of each batch, one worker's slice (seg.distribute).
  """
  dataset, count = records(splits_dir, "training")
  if count < batch_size:
    raise ValueError("the training split has %d examples, fewer than --batch_size=%d"
                     % (count, batch_size))
  flip_seed = seeds.derive_seed(seed, "flip", epoch)

  def augment_fn(index, image, mask):
    if augment:
      # One stateless draw flips image and mask together.
      both = tf.concat([image, mask[..., None]], axis=-1)
      both = tf.image.stateless_random_flip_left_right(
          both, seed=tf.stack([tf.constant(flip_seed, tf.int64), index]))
      image, mask = both[..., :3], both[..., 3]
    return _to_model(image, mask)

  dataset = dataset.cache().shuffle(
      count, seed=seeds.derive_seed(seed, "shuffle", epoch), reshuffle_each_iteration=True)
  dataset = (dataset.repeat()
             .map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .batch(batch_size, drop_remainder=True)
             .take(steps))
  if rows:
    start, stop = rows
    dataset = dataset.map(lambda images, masks: (images[start:stop], masks[start:stop]))
  return dataset.prefetch(2)


def ordered_batches(splits_dir, split, batch_size):
  """The whole split in stored order, batched (the last batch may be smaller)."""
  dataset, count = records(splits_dir, split)
  dataset = dataset.map(lambda index, image, mask: _to_model(image, mask),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.batch(batch_size).prefetch(2), count
