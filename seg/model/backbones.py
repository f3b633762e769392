"""The U-Net's encoders, one table entry each: what seg.model.unet builds, what
seg.configs.config accepts as --model_arch, and where seg.model.factory fetches ImageNet weights
all come from BACKBONES.

Adding an encoder is one entry (README, "Adding a backbone"). The module imports no
TensorFlow: the flags list its names before TensorFlow may load.
"""

import dataclasses
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
