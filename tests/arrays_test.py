"""The deterministic arrays file used for weights and checkpoints."""

import numpy as np
from absl.testing import absltest

from pipeline import arrays


class ArraysTest(absltest.TestCase):

  def test_round_trip_keeps_names_dtypes_and_shapes(self):
    named = [("scalar", np.array(7, np.int64)), ("matrix", np.arange(6, dtype=">f4").reshape(2, 3)),
             ("empty", np.zeros((0, 4), np.float16)), ("state", np.array([1, 2], np.uint32))]
    path = self.create_tempfile().full_path
    arrays.save(path, named)
    loaded = arrays.load(path)
    self.assertEqual([n for n, _ in loaded], [n for n, _ in named])
    for (_, want), (_, got) in zip(named, loaded):
      self.assertEqual(got.shape, want.shape)
      self.assertEqual(got.dtype, want.dtype.newbyteorder("<"))
      np.testing.assert_array_equal(got, want)

  def test_equal_arrays_give_equal_bytes_and_fingerprints(self):
    one = [("w", np.arange(4, dtype=np.float32))]
    two = [("w", np.arange(4, dtype=">f4"))]  # same values, other byte order in memory
    self.assertEqual(arrays.encode(one), arrays.encode(two))
    self.assertEqual(arrays.fingerprint(one), arrays.fingerprint(two))

  def test_any_change_changes_the_fingerprint(self):
    base = arrays.fingerprint([("w", np.zeros(3, np.float32))])["digest"]
    for changed in ([("v", np.zeros(3, np.float32))], [("w", np.zeros(3, np.float64))],
                    [("w", np.zeros((3, 1), np.float32))],
                    [("w", np.array([0, 0, np.float32(1e-45)], np.float32))]):
      self.assertNotEqual(arrays.fingerprint(changed)["digest"], base, changed)


if __name__ == "__main__":
  absltest.main()
