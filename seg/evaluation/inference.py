"""A trained model at work over a split (seg.model.factory loads it from a train output)."""

import dataclasses

import numpy as np
import tensorflow as tf

from data_tools import split_reader
from pipeline import errors


@dataclasses.dataclass(frozen=True)
class SplitOutputs:
  """A whole split's examples and the model's logits, in stored order (by pet id)."""
  split: str          # its name, e.g. "calibration"
  pet_ids: list
  images: np.ndarray  # uint8 [n, size, size, 3]
  masks: np.ndarray   # uint8 [n, size, size], class ids
  logits: np.ndarray  # float32 [n, size, size, classes]
  class_names: tuple  # by class id, as the partition output's splits.json names them

  def batches(self, batch_size):
    """[(logits, masks)] in batches, as the calibration metrics take them."""
    return [(self.logits[i:i + batch_size], self.masks[i:i + batch_size])
            for i in range(0, len(self.masks), batch_size)]

  def check_finite(self, stage):
    """Raises errors.Error, naming the stage and the split, if a logit is NaN or ±Infinity:
    the model's weights come from a training run that diverged, and no metric of them means
    anything (NaN, or a division by zero in the calibration bins)."""
    bad = np.count_nonzero(~np.isfinite(self.logits))
    if bad:
      raise errors.Error(
          "%s: %d of the model's %d logits on the %s split are NaN or infinite: the train "
          "output's weights come from a training run that diverged. Train again with a lower "
          "--learning_rate" % (stage, bad, self.logits.size, self.split))

  def predictions(self):
    return np.argmax(self.logits, -1).astype(np.uint8)


def run_on_split(model, splits_dir, split, batch_size):
  """SplitOutputs of a model over one split, batch by batch."""
  dataset, _ = split_reader.records(splits_dir, split, key="pet_id")
  forward = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False))
  pet_ids, images, masks, logits = [], [], [], []
  for ids, image, mask in dataset.batch(batch_size):
    pet_ids += [i.decode() for i in ids.numpy()]
    images.append(image.numpy())
    masks.append(mask.numpy())
    logits.append(forward(image).numpy())
  if not masks:
    raise errors.Error("the %s split has no examples: a dataset this small leaves it empty; "
                       "use more pets (--synthetic_images)" % split)
  return SplitOutputs(split, pet_ids, np.concatenate(images), np.concatenate(masks),
                      np.concatenate(logits),
                      tuple(split_reader.split_info(splits_dir)["class_names"]))


def confusion(masks, predictions, num_classes):
  """int64 [true, predicted] pixel counts."""
  flat = masks.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                        num_classes)
