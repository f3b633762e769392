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


# A pet to keep: its id, the bytes of image.jpg (an RGB JPEG) and of mask.png (the raw trimap),
# its metadata dict, and the format and mode its image was re-encoded from (e.g. "PNG RGBA", the
# key in the manifest's "normalised"), or None if the image is kept byte for byte.
_Pet = collections.namedtuple("_Pet", "pet_id image trimap metadata normalised")
# A file that is not kept: why (the key in the manifest's "skipped") and a detail for the log.
_Skip = collections.namedtuple("_Skip", "reason detail", defaults=("",))


def _read(path):
  """The bytes of the file at path."""
  with open(path, "rb") as f:
    return f.read()


def _not_an_image(name):
  """The _Skip of images/<name> if it is not a pet's image file, else None."""
  if name.startswith("._"):
    return _Skip("AppleDouble file")
  if os.path.splitext(name)[1] != ".jpg":
    return _Skip("not a .jpg file")
  return None


def _examine_pet(name, images_dir, trimaps_dir, rows, table):
  """The _Pet of images_dir/<name> and its trimap trimaps_dir/<stem>.png, or the _Skip of the
  first rule that refuses it: not an image file, no trimap, the image does not decode, the
  trimap does not decode or does not fit the image, no list.txt row and an unknown breed. rows
  is parse_list's, table oxford.breed_table(). Raises OSError if a file cannot be read.
  """
  not_an_image = _not_an_image(name)
  if not_an_image:
    return not_an_image
  pet_id = os.path.splitext(name)[0]
  trimap_path = os.path.join(trimaps_dir, pet_id + ".png")
  if not os.path.exists(trimap_path):
    return _Skip("no trimap")
  raw = _read(os.path.join(images_dir, name))
  try:
    image, normalised, size = _rgb_jpeg(raw)
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    return _Skip("image does not decode", e)
  trimap = _read(trimap_path)
  try:
    problem = _check_trimap(trimap, size)
  except (OSError, ValueError) as e:
    problem = "trimap does not decode", e
  if problem:
    return _Skip(*problem)
  metadata = _metadata(pet_id, rows, table)
  if metadata is None:
    return _Skip("no list.txt row and an unknown breed", oxford.breed_of(pet_id))
  return _Pet(pet_id, image, trimap, metadata, normalised)


def _write_pet(pet, out_dir):
  """Writes out_dir/<pet id>/ image.jpg, mask.png and metadata.json; raises
  FileExistsError if that folder exists."""
  pet_dir = os.path.join(out_dir, pet.pet_id)
  os.makedirs(pet_dir)
  for file_name, data in (("image.jpg", pet.image), ("mask.png", pet.trimap),
                          ("metadata.json", digest.readable_json(pet.metadata))):
    with open(os.path.join(pet_dir, file_name), "wb") as f:
      f.write(data)


def _stray_trimaps(trimaps_dir, image_names):
  """(name, reason) of each file in trimaps_dir, in name order, that is an AppleDouble file or
  whose stem is that of no image file among image_names (the file names in images/; a skipped
  pet's image counts). name is relative to the extracted folder."""
  image_ids = {os.path.splitext(n)[0] for n in image_names if _not_an_image(n) is None}
  for name in sorted(os.listdir(trimaps_dir)):
    if name.startswith("._"):
      yield "annotations/trimaps/" + name, "AppleDouble file"
    elif os.path.splitext(name)[0] not in image_ids:
      yield "annotations/trimaps/" + name, "trimap without image"


def _open_extracted(extracted):
  """(images folder, trimaps folder, parse_list rows) of the archives extracted into
  `extracted`; raises errors.Error naming what is missing."""
  images_dir = os.path.join(extracted, "images")
  annotations_dir = os.path.join(extracted, "annotations")
  trimaps_dir = os.path.join(annotations_dir, "trimaps")
  for needed in (images_dir, trimaps_dir, os.path.join(annotations_dir, "list.txt")):
    if not os.path.exists(needed):
      raise errors.Error(
          "the archives hold no %s: are they the Oxford-IIIT Pet images.tar.gz and "
          "annotations.tar.gz?" % os.path.relpath(needed, extracted))
  with open(os.path.join(annotations_dir, "list.txt")) as f:
    return images_dir, trimaps_dir, parse_list(f.read())


def write_petset(extracted, out_dir, log_every=1000):
  """Writes the petset of the archives extracted into `extracted` to out_dir: a folder per pet
  kept, in image file name order.

  Returns the details for the manifest: {"pets": number of folders in out_dir, "skipped":
  {reason: [file names]}, "normalised": {reason: [pet ids]}, "metadata_from_file_name": [pet
  ids]}, keys and lists sorted. Raises errors.Error if the archives lack a folder or list.txt,
  or hold no usable pet.
  """
  images_dir, trimaps_dir, rows = _open_extracted(extracted)
  table = oxford.breed_table()
  skipped = collections.defaultdict(list)
  normalised = collections.defaultdict(list)
  from_file_name = []

  def skip(name, reason, detail=""):
    logging.info("petset: skipped %s: %s%s", name, reason, " (%s)" % detail if detail else "")
    skipped[reason].append(name)

  names = sorted(os.listdir(images_dir))
  for number, name in enumerate(names, 1):
    if number % log_every == 0:
      logging.info("petset: %d of %d files", number, len(names))
    pet = _examine_pet(name, images_dir, trimaps_dir, rows, table)
    if isinstance(pet, _Skip):
      skip(name, *pet)
      continue
    if pet.normalised:
      logging.info("petset: normalised %s: %s -> JPEG RGB", name, pet.normalised)
      normalised[pet.normalised].append(pet.pet_id)
    if pet.metadata["metadata_source"] == "file_name":
      logging.info("petset: %s has no list.txt row; metadata from its file name", pet.pet_id)
      from_file_name.append(pet.pet_id)
    _write_pet(pet, out_dir)
  for name, reason in _stray_trimaps(trimaps_dir, names):
    skip(name, reason)
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
