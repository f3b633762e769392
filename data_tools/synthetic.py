"""A synthetic twin of the Oxford-IIIT Pet archives, for offline runs and tests.

It writes images.tar.gz and annotations.tar.gz in exactly the Oxford layout: images/*.jpg,
annotations/trimaps/*.png (1 pet, 2 background, 3 border), annotations/list.txt with its
comment header, trainval.txt, test.txt and xmls/. The pets are star-shaped blobs with a
striped coat on smooth, noisy backgrounds, with a border band labelled 3, so a U-Net learns
them in minutes. With quirks on, the archives carry the real dataset's oddities (PNG data,
CMYK, alpha and grey images named .jpg, AppleDouble `._` files, an image with no trimap, an
image with no list.txt row, a .mat file), so the code that reads the real dataset is the
code the tests run. The bytes depend only on the seed, the count, the size and the quirks.
"""

import io
import os

import numpy as np
from PIL import Image

from data_tools import archive
from data_tools import oxford
from pipeline import stage

# Which pet (by position in generation order) carries which quirk.
QUIRKS = {
    3: "png_data", 5: "cmyk", 7: "rgba_png", 9: "grayscale", 11: "no_trimap",
    13: "no_list_row", 15: "appledouble", 17: "appledouble",
}
MIN_IMAGES_WITH_QUIRKS = max(QUIRKS) + 1


def _pet_ids(count):
  """count pet ids, spread round-robin over the 37 breeds, numbered from 1 per breed."""
  numbers, ids = {}, []
  for i in range(count):
    breed = oxford.BREEDS[i % len(oxford.BREEDS)][0]
    numbers[breed] = numbers.get(breed, 0) + 1
    ids.append("%s_%d" % (breed, numbers[breed]))
  return ids


def render_pet(rng, size):
  """One (RGB uint8 image, trimap uint8) pair with a random height and width near size."""
  h, w = (int(size * f) for f in rng.uniform(0.8, 1.25, size=2))
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

  # Background: a smooth colour gradient plus pixel noise.
  corners = rng.uniform(0, 255, size=(2, 2, 3))
  fy, fx = (yy / (h - 1))[..., None], (xx / (w - 1))[..., None]
  background = (corners[0, 0] * (1 - fy) * (1 - fx) + corners[0, 1] * (1 - fy) * fx +
                corners[1, 0] * fy * (1 - fx) + corners[1, 1] * fy * fx)
  background += rng.normal(0, 12, size=(h, w, 3))

  # Pet: a star-shaped blob r(theta) with a striped coat.
  cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
  radius = rng.uniform(0.2, 0.33) * min(h, w)
  dy, dx = yy - cy, xx - cx
  rho, theta = np.hypot(dy, dx), np.arctan2(dy, dx)
  wobble = np.ones_like(theta)
  for k in (2, 3, 5):
    wobble += rng.uniform(0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
  edge = radius * wobble  # the outline, as a radius for every pixel's angle
  coat_a, coat_b = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
  stripes = 0.5 + 0.5 * np.sin((dx * np.cos(theta.mean()) + dy) * rng.uniform(0.5, 1.2))
  coat = coat_a * stripes[..., None] + coat_b * (1 - stripes[..., None])
  coat += rng.normal(0, 6, size=(h, w, 3))

  # Soft edge over the border band, as photographs have.
  band = max(1.0, 0.04 * min(h, w))
  alpha = np.clip((edge - rho) / band + 0.5, 0, 1)[..., None]
  image = np.clip(alpha * coat + (1 - alpha) * background, 0, 255).round().astype(np.uint8)

  trimap = np.full((h, w), oxford.TRIMAP_BACKGROUND, np.uint8)
  trimap[rho < edge] = oxford.TRIMAP_PET
  trimap[np.abs(rho - edge) < band] = oxford.TRIMAP_BORDER
  return image, trimap


def _encode(array, fmt, mode=None, **options):
  out = io.BytesIO()
  picture = Image.fromarray(array)
  if mode:
    picture = picture.convert(mode)
  picture.save(out, format=fmt, **options)
  return out.getvalue()


def _encode_image(image, quirk):
  if quirk == "png_data":
    return _encode(image, "PNG")
  if quirk == "rgba_png":
    return _encode(image, "PNG", mode="RGBA")
  if quirk == "cmyk":
    return _encode(image, "JPEG", mode="CMYK", quality=90)
  if quirk == "grayscale":
    return _encode(image, "JPEG", mode="L", quality=90)
  return _encode(image, "JPEG", quality=90)


def _head_box_xml(pet_id, image):
  h, w = image.shape[:2]
  return ("<annotation><folder>OXIIIT</folder><filename>%s.jpg</filename>"
          "<size><width>%d</width><height>%d</height><depth>3</depth></size>"
          "<object><name>%s</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax>"
          "<ymax>%d</ymax></bndbox></object></annotation>\n"
          % (pet_id, w, h, "cat" if oxford.species_of(pet_id) == 1 else "dog",
             w // 4, h // 4, w // 2, h // 2)).encode()


def archives(seed, count, size, quirks=True):
  """{archive name: {member path: bytes}} for both archives."""
  if quirks and count < MIN_IMAGES_WITH_QUIRKS:
    raise ValueError("a synthetic dataset with quirks needs at least %d images, not %d"
                     % (MIN_IMAGES_WITH_QUIRKS, count))
  rng = np.random.default_rng(seed)
  table = oxford.breed_table()
  images, annotations, rows = {}, {}, {"trainval": [], "test": []}
  list_rows = []
  for index, pet_id in enumerate(_pet_ids(count)):
    quirk = QUIRKS.get(index) if quirks else None
    image, trimap = render_pet(rng, size)
    images["images/%s.jpg" % pet_id] = _encode_image(image, quirk)
    if quirk != "no_trimap":
      annotations["annotations/trimaps/%s.png" % pet_id] = _encode(trimap, "PNG")
    if quirk == "appledouble":
      annotations["annotations/trimaps/._%s.png" % pet_id] = b"\x00\x05\x16\x07AppleDouble"
    class_id, species, breed_id = table[oxford.breed_of(pet_id)]
    row = "%s %d %d %d\n" % (pet_id, class_id, species, breed_id)
    if quirk != "no_list_row":
      list_rows.append(row)
      # The dataset splits each breed about in half: odd numbers trainval, even test.
      split = "trainval" if int(pet_id.rsplit("_", 1)[1]) % 2 else "test"
      rows[split].append(row)
      if split == "trainval":
        annotations["annotations/xmls/%s.xml" % pet_id] = _head_box_xml(pet_id, image)
  if quirks:
    images["images/Abyssinian_101.mat"] = b"MATLAB 5.0 MAT-file, not an image\n"
  annotations["annotations/list.txt"] = (oxford.LIST_HEADER + "".join(sorted(list_rows))).encode()
  for split, split_rows in rows.items():
    annotations["annotations/%s.txt" % split] = "".join(sorted(split_rows)).encode()
  annotations["annotations/README"] = (
      b"Synthetic twin of the Oxford-IIIT Pet dataset made by reproseg "
      b"(data_tools/synthetic.py); not photographs.\n")
  return {"images.tar.gz": images, "annotations.tar.gz": annotations}


def write_archives(out_dir, seed, count, size, quirks=True):
  """Writes images.tar.gz and annotations.tar.gz into out_dir; returns {name: member count}."""
  members = archives(seed, count, size, quirks)
  for name, files in members.items():
    archive.write_tar_gz(os.path.join(out_dir, name), files)
  return {name: len(files) for name, files in members.items()}


# --- The stage -----------------------------------------------------------------------------
def run_stage(store, seed, count, size, quirks):
  """The synthetic stage: both archives, a pure function of its parameters."""
  params = {"seed": seed, "images": count, "image_size": size, "quirks": quirks}

  def build(out, unused_run_dir):
    return {"members": write_archives(out, seed, count, size, quirks)}

  return stage.run(store, "synthetic", params, {}, {}, build)
