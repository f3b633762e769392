"""The partition rule, the trimap mapping and the split files."""

import io
import json
import os

import numpy as np
from absl.testing import absltest
from PIL import Image

from data_tools import partition
from pipeline import errors

# md5 hex digests from coreutils `md5sum` and buckets (digest mod 10) from `bc`, computed
# outside Python: printf %s ID | md5sum;  echo "ibase=16; HEX % A" | bc
INDEPENDENT_MD5 = {
    "Abyssinian_1": ("4f51e517a08d6f38e96a297acca39c08", 8),
    "american_bulldog_8": ("b6fb1a59f11208247b2eb9484274d42a", 8),
    "beagle_116": ("f99b2a0c0865a1b6de794145f80e84f2", 8),
    "Egyptian_Mau_14": ("f46cac06a40c9bc881340cf1cef7fc10", 6),
    "yorkshire_terrier_190": ("e2b0aa1281888bfcd9b4ea34d24b2bcf", 9),
    "pug_52": ("191600040b54bfad5593eb9100de9e21", 5),
    "Sphynx_3": ("ccf8502729d5f243841d1d10eb8f06f2", 6),
    "samoyed_7": ("cd2fbf744a68b07ff89c12c47d35bf3e", 4),
    "chihuahua_121": ("fc44145cd804881935c880ad2cfb4a85", 9),
    "keeshond_99": ("427e5ff517c3aa772669ce84c9a09cce", 8),
    "Persian_12": ("999a31d00758fb32fb1082ed214e45bb", 1),
    "boxer_1": ("96854809bc69cc05a7c4d7154aae6193", 7),
}
BUCKET_SPLIT = {0: "training", 1: "training", 2: "training", 3: "training", 4: "training",
                5: "training", 6: "training", 7: "validation", 8: "calibration", 9: "test"}


def png(array):
  out = io.BytesIO()
  Image.fromarray(np.asarray(array, np.uint8)).save(out, format="PNG")
  return out.getvalue()


class SplitRuleTest(absltest.TestCase):

  def test_split_matches_independent_md5(self):
    for pet_id, (_, bucket) in INDEPENDENT_MD5.items():
      self.assertEqual(partition.split_of(pet_id), BUCKET_SPLIT[bucket], pet_id)

  def test_every_split_is_covered(self):
    self.assertEqual({BUCKET_SPLIT[b] for _, b in INDEPENDENT_MD5.values()},
                     set(partition.SPLITS))


class TrimapTest(absltest.TestCase):

  def test_trimap_values_map_to_classes(self):
    np.testing.assert_array_equal(partition.trimap_to_classes([[1, 2, 3]]), [[0, 1, 2]])

  def test_other_values_are_refused(self):
    with self.assertRaisesRegex(ValueError, "1, 2 or 3"):
      partition.trimap_to_classes([[0, 1]])

  def test_masks_resize_by_nearest_neighbour(self):
    trimap = np.full((40, 60), 2, np.uint8)
    trimap[10:30, 20:40] = 1
    trimap[10, 20:40] = 3
    image = np.zeros((40, 60, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG")
    resized_image, mask = partition.resize_pair(out.getvalue(), png(trimap), 32)
    self.assertEqual(resized_image.shape, (32, 32, 3))
    self.assertEqual(mask.shape, (32, 32))
    self.assertEqual(set(np.unique(mask).tolist()), {0, 1, 2})  # no blended values

  def test_image_size_must_be_a_multiple_of_32(self):
    for bad in (0, 16, 100):
      with self.assertRaisesRegex(errors.Error, "multiple of 32"):
        partition.check_image_size(bad)


class WriteSplitsTest(absltest.TestCase):

  def test_splits_hold_every_pet_once_in_sorted_order(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    petset = self.create_tempdir().full_path
    for pet_id in INDEPENDENT_MD5:
      os.makedirs(os.path.join(petset, pet_id))
      out = io.BytesIO()
      Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(out, format="JPEG")
      for name, data in (("image.jpg", out.getvalue()),
                         ("mask.png", png(np.full((20, 30), 2))),
                         ("metadata.json", b'{"class_id": 1, "species": 1}')):
        with open(os.path.join(petset, pet_id, name), "wb") as f:
          f.write(data)
    out_dir = self.create_tempdir().full_path
    details = partition.write_splits(petset, out_dir, 32, examples_per_shard=2)
    with open(os.path.join(out_dir, "splits.json")) as f:
      info = json.load(f)
    expected = {s: sorted(p for p, (_, b) in INDEPENDENT_MD5.items() if BUCKET_SPLIT[b] == s)
                for s in partition.SPLITS}
    self.assertEqual(details["counts"], {s: len(v) for s, v in expected.items()})
    for split in partition.SPLITS:
      ids = []
      for shard in info["shards"][split]:
        for record in tf.data.TFRecordDataset(os.path.join(out_dir, shard)):
          example = tf.train.Example.FromString(record.numpy())
          ids.append(example.features.feature["pet_id"].bytes_list.value[0].decode())
          mask = np.frombuffer(example.features.feature["mask"].bytes_list.value[0], np.uint8)
          self.assertEqual(mask.size, 32 * 32)
          self.assertTrue(np.all(mask == 1))  # trimap 2 (background) -> class 1
      self.assertEqual(ids, expected[split], split)
    self.assertLen(info["shards"]["training"], 3)  # 6 pets, 2 a shard


if __name__ == "__main__":
  absltest.main()
