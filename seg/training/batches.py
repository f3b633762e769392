"""Training batches over the partition stage's training split (read by data_tools.split_reader).

Training order and augmentation are pure functions of (seed, epoch, example): epoch e reads
the split shuffled with a seed derived from (seed, e), and flips example i left-right when a
stateless draw keyed by (seed, e, i) says so, image and mask alike. Any epoch can therefore
be rebuilt on its own, which is what resuming from a checkpoint needs.
"""

import tensorflow as tf

from data_tools import split_reader
from pipeline import seeds


def training_batches(splits_dir, seed, epoch, batch_size, steps, augment=True, rows=None):
  """Batches of epoch `epoch`: `steps` batches of (float image, int mask), reshuffled on each
  pass over the split (a pass ends, and the next begins, within an epoch when needed).

  rows=(start, stop): only those rows of each batch, one worker's slice (seg.training.distribute).
  """
  dataset, count = split_reader.records(splits_dir, "training")
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
    return split_reader.model_input(image, mask)

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
