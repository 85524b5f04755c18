"""The classification backbones: ``keras.applications`` networks and their ImageNet weights.

Every entry names the Keras constructor, the image size its ImageNet weights were trained at,
and the "notop" weight file that ``keras.applications`` itself downloads (same URL, same MD5).
The file is fetched through ``helpers.downloads.cached_download`` (one cache for the whole
project, visible, resumable, checked against that MD5 on every use) and the network is then built
from it (``helpers.classification.model``: with ``weights=<that file>``, or for EfficientNet
B0–B7 with ``weights=None`` plus the rescaling layer Keras adds only for ``weights="imagenet"``,
then ``load_weights``), so Keras never downloads anything on its own and computes exactly what its
own ImageNet model computes (``tests/test_pretrained_parity.py``). Offline, ``download_weights`` raises
``DownloadError``; training from scratch must be chosen explicitly (``pretrained = "none"``).

Preprocessing lives inside the model: EfficientNet, EfficientNetV2 and MobileNetV3 include
their own rescaling layers; ResNet50 gets the "caffe" preprocessing of
``keras.applications.resnet50.preprocess_input`` as a serialisable layer (``model.CaffePreprocessing``).
So every model takes RGB pixels in 0..255.
This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import pathlib

from helpers import errors

_KERAS_APPLICATIONS = "https://storage.googleapis.com/keras-applications/"
_TENSORFLOW_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone of the registry.

    Attributes:
        name: the form value, e.g. "efficientnetb0".
        constructor: attribute of ``keras.applications``, e.g. "EfficientNetB0".
        default_image_size: side in pixels of the ImageNet training images.
        weights_url: the ImageNet "notop" .h5 file keras.applications uses.
        weights_md5: its MD5, as published in keras.applications (checked after download).
        preprocessing: "included" (the constructor adds its own) or "caffe" (added by us).
        description: one plain sentence for the form and the report.
    """

    name: str
    constructor: str
    default_image_size: int
    weights_url: str
    weights_md5: str
    preprocessing: str
    description: str

    @property
    def weights_filename(self) -> str:
        return self.weights_url.rsplit("/", 1)[-1]


def _spec(name, constructor, size, url, md5, preprocessing, description) -> BackboneSpec:
    return BackboneSpec(name, constructor, size, url, md5, preprocessing, description)


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    _spec("efficientnetb0", "EfficientNetB0", 224, _KERAS_APPLICATIONS + "efficientnetb0_notop.h5",
          "50bc09e76180e00e4465e1a485ddc09d", "included", "EfficientNet-B0, 4.0 M parameters (Tan & Le 2019)."),
    _spec("efficientnetb1", "EfficientNetB1", 240, _KERAS_APPLICATIONS + "efficientnetb1_notop.h5",
          "74c4e6b3e1f6a1eea24c589628592432", "included", "EfficientNet-B1, 6.5 M parameters."),
    _spec("efficientnetb2", "EfficientNetB2", 260, _KERAS_APPLICATIONS + "efficientnetb2_notop.h5",
          "111f8e2ac8aa800a7a99e3239f7bfb39", "included", "EfficientNet-B2, 7.8 M parameters."),
    _spec("efficientnetb3", "EfficientNetB3", 300, _KERAS_APPLICATIONS + "efficientnetb3_notop.h5",
          "af6d107764bb5b1abb91932881670226", "included", "EfficientNet-B3, 10.8 M parameters."),
    _spec("efficientnetb4", "EfficientNetB4", 380, _KERAS_APPLICATIONS + "efficientnetb4_notop.h5",
          "ebc24e6d6c33eaebbd558eafbeedf1ba", "included", "EfficientNet-B4, 17.7 M parameters (slow on a CPU)."),
    _spec("efficientnetb5", "EfficientNetB5", 456, _KERAS_APPLICATIONS + "efficientnetb5_notop.h5",
          "38879255a25d3c92d5e44e04ae6cec6f", "included", "EfficientNet-B5, 28.5 M parameters (needs a large GPU)."),
    _spec("efficientnetv2s", "EfficientNetV2S", 384,
          _TENSORFLOW_APPLICATIONS + "efficientnet_v2/efficientnetv2-s_notop.h5",
          "af0682fb74e8c54910f2d4393339c070", "included", "EfficientNetV2-S, 20 M parameters (Tan & Le 2021)."),
    _spec("mobilenetv3small", "MobileNetV3Small", 224,
          _TENSORFLOW_APPLICATIONS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
          "d3e8ec802a04aa4fc771ee12a9a9b836", "included", "MobileNetV3-Small, 1 M parameters: fastest, for CPUs."),
    _spec("mobilenetv3large", "MobileNetV3Large", 224,
          _TENSORFLOW_APPLICATIONS + "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
          "07fb09a5933dd0c8eaafa16978110389", "included", "MobileNetV3-Large, 3 M parameters."),
    _spec("resnet50", "ResNet50", 224,
          _TENSORFLOW_APPLICATIONS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "4d473c1dd8becc155b73f8504c6f6626", "caffe", "ResNet-50, 23.6 M parameters (He et al. 2016)."),
)}


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry called ``name``; ModelError listing the choices otherwise."""
    if name not in BACKBONES:
        raise errors.ModelError(f"backbone: {name!r} is not available. Choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def download_weights(spec: BackboneSpec, cache_dir: str | pathlib.Path | None = None, progress: bool = True):
    """Fetch the ImageNet notop weights of ``spec`` into the shared download cache.

    Returns:
        The ``helpers.downloads.Download`` (path, url, sha256, size_bytes, reused).

    Raises:
        DownloadError: offline, or the file's MD5 differs from the one keras.applications publishes.
    """
    from helpers import downloads  # local: only needed when pretrained weights are asked for

    # The MD5 keras.applications publishes is pinned: checked after the download and on every reuse.
    return downloads.cached_download(spec.weights_url, cache_dir=cache_dir, md5=spec.weights_md5 or None,
                                     progress=progress)
