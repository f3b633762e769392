"""The U-Net's encoders, one table entry each: what seg.model.unet builds, what
seg.configs.config accepts as --model_arch, and where weights_file finds ImageNet weights all
come from BACKBONES.

Adding an encoder is one entry (docs/layout.md, "Adding a backbone"). The module imports no
TensorFlow: the flags list its names, and a dry run plans with them, before TensorFlow may load.
"""

import dataclasses
import os
import typing

from pipeline import errors

# keras.applications publishes its ImageNet weights under this URL; reproseg keys a model on
# the weights file's digest, not on where it came from.
_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# keras.applications.imagenet_utils' modes that seg.model.unet builds as layers.
PREPROCESSING = ("tf", "caffe")


@dataclasses.dataclass(frozen=True)
class Backbone:
  """An encoder from keras.applications, and how the U-Net uses it.

  application: the keras.applications constructor's name (called with include_top=False).
  skip_layers: the 5 encoder layers whose outputs feed the decoder, at 1/2, 1/4, 1/8, 1/16 and
    1/32 of the input side; the last is the decoder's input.
  preprocessing: what the encoder was trained on, by keras.applications.imagenet_utils' mode
    names: "tf" (RGB scaled to [-1, 1]) or "caffe" (BGR minus the ImageNet channel means).
  imagenet_file: the ImageNet weights file without the classifier ({size}: the image side),
    under _KERAS_WEIGHTS + imagenet_folder.
  imagenet_sizes: the image sides it has ImageNet weights for; None: any side.

  Raises ValueError for a preprocessing mode seg.model.unet does not have (PREPROCESSING).
  """
  application: str
  skip_layers: tuple
  preprocessing: str
  imagenet_folder: str
  imagenet_file: str
  imagenet_sizes: typing.Optional[tuple] = None

  def __post_init__(self):
    if self.preprocessing not in PREPROCESSING:
      raise ValueError("%s: preprocessing %r is not one of %s; seg.model.unet._preprocess would "
                       "need the new mode" % (self.application, self.preprocessing,
                                              PREPROCESSING))

  def imagenet_weights(self, image_size):
    """(file name, URL) of the ImageNet weights for images of image_size pixels a side.

    Raises errors.Error if there are none for that size.
    """
    if self.imagenet_sizes and image_size not in self.imagenet_sizes:
      raise errors.Error("%s has ImageNet weights for image sizes %s, not %d: change "
                         "--image_size, or train the encoder from scratch with "
                         "--backbone_weights=none --nofreeze_backbone"
                         % (self.application, self.imagenet_sizes, image_size))
    name = self.imagenet_file.format(size=image_size)
    return name, _KERAS_WEIGHTS + self.imagenet_folder + "/" + name


BACKBONES = {
    "mobilenetv2": Backbone(
        application="MobileNetV2",
        skip_layers=("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                     "block_13_expand_relu", "block_16_project"),
        preprocessing="tf",
        imagenet_folder="mobilenet_v2",
        imagenet_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        imagenet_sizes=(96, 128, 160, 192, 224)),
    # Skips taken before each pool, as MobileNetV2's are taken before each stride
    # (docs/seed.md: the seed took them after).
    "vgg19": Backbone(
        application="VGG19",
        skip_layers=("block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4",
                     "block5_pool"),
        preprocessing="caffe",
        imagenet_folder="vgg19",
        imagenet_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def _keras_models_folder():
  """Where keras.utils.get_file keeps files of cache_subdir "models": under $KERAS_HOME, else
  ~/.keras (/tmp/.keras if the home folder cannot be written), or /tmp/.keras if that folder
  cannot be written (keras/src/backend/config.py's keras_home, keras/src/utils/file_utils.py)."""
  if "KERAS_HOME" in os.environ:
    home = os.environ["KERAS_HOME"]
  else:
    base = os.path.expanduser("~")
    home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
  base = os.path.expanduser(home)
  if not os.access(base, os.W_OK):
    base = os.path.join("/tmp", ".keras")
  return os.path.join(base, "models")


def weights_file(model_config, image_size, fetch=True):
  """The encoder's weights file for model_config.backbone_weights, or None for 'none'.

  'imagenet' is keras.applications' file (BACKBONES), fetched once into ~/.keras/models; with
  fetch=False (a dry run), it must be there already. Raises errors.Error if there are no
  ImageNet weights for image_size, or the file is missing and not fetched, or the fetch fails.
  """
  if model_config.backbone_weights == "none":
    return None
  if model_config.backbone_weights != "imagenet":
    return model_config.backbone_weights
  name, url = BACKBONES[model_config.model_arch].imagenet_weights(image_size)
  if not fetch:
    path = os.path.join(_keras_models_folder(), name)
    if not os.path.exists(path):
      raise errors.Error("a dry run fetches nothing, and the ImageNet weights %s (whose digest "
                         "is in the key) are not in %s: run the command once without "
                         "--dry_run, or pass --backbone_weights=PATH"
                         % (name, _keras_models_folder()))
    return path
  import keras  # pylint: disable=g-import-not-at-top
  try:
    return keras.utils.get_file(name, url, cache_subdir="models")
  except Exception as e:  # get_file raises several types for a failed download
    raise errors.Error(
        "could not fetch the ImageNet weights %s (%s). Offline, copy that file into "
        "~/.keras/models/, pass --backbone_weights=PATH, or train the encoder from scratch "
        "with --backbone_weights=none --nofreeze_backbone (the synthetic dataset's default)"
        % (name, e)) from e
