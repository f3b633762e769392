"""Turns extracted Oxford-IIIT Pet archives into a petset: one folder per pet id holding
image.jpg, mask.png (the raw trimap) and metadata.json.

The real archives have quirks; each is handled by a fixed rule, logged with the pet id, and
counted in the stage manifest. Nothing is changed silently and nothing crashes the stage:
- `._*` AppleDouble files and files that are not .jpg are skipped;
- an image that is not an RGB JPEG (PNG data, CMYK, alpha, grey) is converted to RGB and
  re-encoded as a JPEG (quality 95): "normalised";
- an image that does not decode, has no trimap, or whose trimap does not decode, has another
  size or holds values other than 1, 2, 3 is skipped;
- an image with no list.txt row gets its metadata from its file name (breed from the stem,
  species from the case of the first letter), marked "metadata_source": "file_name";
  an unknown breed is skipped.
"""

import collections
import io
import os

import numpy as np
from absl import logging
from PIL import Image

from data_tools import oxford
from pipeline import digest
from pipeline import errors

_VALID_TRIMAP = frozenset((oxford.TRIMAP_PET, oxford.TRIMAP_BACKGROUND, oxford.TRIMAP_BORDER))


def parse_list(text):
  """{pet id: (class id, species, breed id)} from list.txt; comment lines start with '#'."""
  rows = {}
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip() or line.startswith("#"):
      continue
    fields = line.split()
    if len(fields) != 4:
      raise errors.Error("annotations/list.txt line %d is not 'Image CLASS-ID SPECIES BREED-ID': "
                       "%r" % (number, line))
    rows[fields[0]] = tuple(int(f) for f in fields[1:])
  return rows


def _metadata(pet_id, rows, table):
  breed = oxford.breed_of(pet_id)
  if pet_id in rows:
    class_id, species, breed_id = rows[pet_id]
    source = "list.txt"
  elif breed in table:
    class_id, species, breed_id = table[breed]
    source = "file_name"
  else:
    return None
  return {"pet_id": pet_id, "class_id": class_id, "species": species,
          "species_name": {1: "cat", 2: "dog"}.get(species), "breed_id": breed_id,
          "breed_name": breed, "metadata_source": source}


def _rgb_jpeg(data):
  """(bytes to store, normalisation reason or None, size); raises on undecodable data."""
  with Image.open(io.BytesIO(data)) as picture:
    picture.load()
    if picture.format == "JPEG" and picture.mode == "RGB":
      return data, None, picture.size
    reason = "%s %s" % (picture.format, picture.mode)
    out = io.BytesIO()
    picture.convert("RGB").save(out, format="JPEG", quality=95)
    return out.getvalue(), reason, picture.size


def _check_trimap(data, size):
  """None if the trimap is usable, else (reason, detail)."""
  with Image.open(io.BytesIO(data)) as picture:
    picture.load()
    if picture.size != size:
      return ("trimap size differs from image size",
              "%dx%d vs %dx%d" % (picture.size + size))
    values = set(np.unique(np.asarray(picture)).tolist())
  if not values <= _VALID_TRIMAP:
    return "trimap values other than 1, 2, 3", str(sorted(values - _VALID_TRIMAP))
  return None


def build(extracted, out_dir, log_every=1000):
  """Writes the petset of the archives extracted into `extracted` to out_dir.

  Returns the details for the manifest: pet count, skipped and normalised files by reason.
  """
  images_dir = os.path.join(extracted, "images")
  annotations_dir = os.path.join(extracted, "annotations")
  trimaps_dir = os.path.join(annotations_dir, "trimaps")
  for needed in (images_dir, trimaps_dir, os.path.join(annotations_dir, "list.txt")):
    if not os.path.exists(needed):
      raise errors.Error(
          "the archives hold no %s: are they the Oxford-IIIT Pet images.tar.gz and "
          "annotations.tar.gz?" % os.path.relpath(needed, extracted))
  with open(os.path.join(annotations_dir, "list.txt")) as f:
    rows = parse_list(f.read())
  table = oxford.breed_table()
  skipped = collections.defaultdict(list)
  normalised = collections.defaultdict(list)
  from_file_name = []

  def skip(name, reason, detail=""):
    logging.info("petset: skipped %s: %s%s", name, reason, " (%s)" % detail if detail else "")
    skipped[reason].append(name)

  names = sorted(os.listdir(images_dir))
  image_ids = set()
  for number, name in enumerate(names, 1):
    if number % log_every == 0:
      logging.info("petset: %d of %d files", number, len(names))
    stem, ext = os.path.splitext(name)
    if name.startswith("._"):
      skip(name, "AppleDouble file")
      continue
    if ext != ".jpg":
      skip(name, "not a .jpg file")
      continue
    image_ids.add(stem)
    trimap_path = os.path.join(trimaps_dir, stem + ".png")
    if not os.path.exists(trimap_path):
      skip(name, "no trimap")
      continue
    with open(os.path.join(images_dir, name), "rb") as f:
      raw = f.read()
    try:
      image, reason, size = _rgb_jpeg(raw)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      skip(name, "image does not decode", e)
      continue
    with open(trimap_path, "rb") as f:
      trimap = f.read()
    try:
      problem = _check_trimap(trimap, size)
    except (OSError, ValueError) as e:
      problem = "trimap does not decode", e
    if problem:
      skip(name, *problem)
      continue
    metadata = _metadata(stem, rows, table)
    if metadata is None:
      skip(name, "no list.txt row and an unknown breed", oxford.breed_of(stem))
      continue
    if reason:
      logging.info("petset: normalised %s: %s -> JPEG RGB", name, reason)
      normalised[reason].append(stem)
    if metadata["metadata_source"] == "file_name":
      logging.info("petset: %s has no list.txt row; metadata from its file name", stem)
      from_file_name.append(stem)
    pet_dir = os.path.join(out_dir, stem)
    os.makedirs(pet_dir)
    for file_name, data in (("image.jpg", image), ("mask.png", trimap),
                            ("metadata.json", digest.readable_json(metadata))):
      with open(os.path.join(pet_dir, file_name), "wb") as f:
        f.write(data)
  for name in sorted(os.listdir(trimaps_dir)):
    if name.startswith("._"):
      skip("annotations/trimaps/" + name, "AppleDouble file")
    elif os.path.splitext(name)[0] not in image_ids:
      skip("annotations/trimaps/" + name, "trimap without image")
  pets = len(os.listdir(out_dir))
  if pets == 0:
    raise errors.Error("no usable pet in the archives (skipped: %s)"
                     % {k: len(v) for k, v in skipped.items()})
  logging.info("petset: %d pets, %d skipped, %d normalised", pets,
               sum(map(len, skipped.values())), sum(map(len, normalised.values())))
  return {"pets": pets,
          "skipped": {k: sorted(v) for k, v in sorted(skipped.items())},
          "normalised": {k: sorted(v) for k, v in sorted(normalised.items())},
          "metadata_from_file_name": sorted(from_file_name)}
