"""The classifier: a ``keras.applications`` backbone plus a small head, in Keras 3.

Keras 3 (``import keras``) is used here and only here for classification; the detection models
use ``tf_keras`` through the Model Garden, and the two are never mixed in one model.

The model takes RGB pixels in 0..255, float32 [batch, S, S, 3], and returns class
probabilities float32 [batch, classes]. The backbone is built on the model's own input
(``input_tensor``), so its layers are part of one flat graph: fine-tuning the top N layers and
Grad-CAM (which needs the last feature map) work on named layers. Head layers are named
``head_*``; ``head_pooling``'s input is the last feature map.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import keras

from helpers import errors
from helpers.classification import backbones

HEAD_PREFIX = "head_"
MODEL_FILE_NAME = "classifier.keras"


@keras.saving.register_keras_serializable(package="dl4cells")
class CaffePreprocessing(keras.layers.Layer):
    """``keras.applications.resnet50.preprocess_input`` as a saved layer: RGB→BGR, minus the ImageNet means.

    Input and output: float [batch, H, W, 3]; input RGB 0..255.
    """

    MEANS_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.MEANS_BGR, dtype=inputs.dtype)


# keras.applications' EfficientNet-B0..B7 insert ``Rescaling(1 / sqrt(stddev))`` after the stem's
# ``Normalization`` only when ``weights == "imagenet"`` (keras/src/applications/efficientnet.py,
# tensorflow/tensorflow#49930: the stored normalisation alone does not reproduce the input scale
# the ImageNet weights were trained at). A weights *file path*, which is what we pass so
# that Keras never downloads on its own, builds the network without it: every image then reaches
# stem_conv about 2.1x too small (1 / sqrt(0.224)) and the ImageNet features are degraded.
# No other registry constructor changes its architecture with ``weights``; the parity test
# (tests/test_pretrained_parity.py) compares every backbone with Keras's own imagenet network.
IMAGENET_ONLY_RESCALING = frozenset(f"EfficientNetB{index}" for index in range(8))
# keras.src.applications.efficientnet.IMAGENET_STDDEV_RGB (a private constant, so copied here).
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _backbone(spec: backbones.BackboneSpec, inputs, weights_path: str | None):
    """The keras.applications network called on ``inputs`` (its layers join the outer graph).

    With ``weights_path`` the result computes what ``weights="imagenet"`` computes in Keras; the
    file is loaded with ``load_weights`` exactly as Keras loads its download. From scratch
    (``weights_path=None``) it is Keras's ``weights=None`` network, unchanged.
    Models saved before this rescaling was added reload from their ``.keras`` file with their own
    layers (no rescaling): they keep computing what they were trained to compute; only networks
    built from the ImageNet file from now on get the Keras ImageNet input scale.
    """
    constructor = getattr(keras.applications, spec.constructor)
    options: dict[str, Any] = {"include_top": False}
    if spec.constructor.startswith(("EfficientNetV2", "MobileNetV3")):
        options["include_preprocessing"] = True
    if weights_path is None or spec.constructor not in IMAGENET_ONLY_RESCALING:
        return constructor(weights=weights_path, input_tensor=inputs, **options)
    # Keras's weights=None graph, rebuilt on ``inputs`` with fresh layers and Keras's imagenet-only
    # Rescaling inserted after the stem normalisation (keras.models.clone_model's documented way
    # to insert layers); then the file is loaded as Keras loads its download. Fresh layers, not
    # the template's: a layer called in two graphs would make ``layer.output`` (Grad-CAM,
    # feature maps) ambiguous. The inserted layer has no weights, so the legacy h5 loader, which
    # matches layers with weights in order, reads the file unchanged.
    template = constructor(weights=None, input_shape=tuple(inputs.shape[1:]), **options)
    stem_normalization = next(layer for layer in template.layers if isinstance(layer, keras.layers.Normalization))

    def call_with_imagenet_rescaling(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if layer.name == stem_normalization.name:
            outputs = keras.layers.Rescaling([1.0 / math.sqrt(stddev) for stddev in _IMAGENET_STDDEV_RGB],
                                             name="imagenet_stddev_rescaling")(outputs)
        return outputs

    network = keras.models.clone_model(template, input_tensors=inputs, call_function=call_with_imagenet_rescaling)
    network.load_weights(weights_path)
    return network


def build_classifier(backbone_name: str, number_of_classes: int, image_size: int, weights_path: str | None = None,
                     dropout: float = 0.2, batch_norm_momentum: float | None = None) -> keras.Model:
    """Build the classifier (see the module docstring for inputs and outputs).

    Args:
        backbone_name: a ``backbones.BACKBONES`` name.
        number_of_classes: outputs of the softmax layer (at least 2).
        image_size: S, the square input side in pixels.
        weights_path: an ImageNet notop .h5 file (``backbones.download_weights``), or None for random weights.
        dropout: dropout rate before the classification layer.
        batch_norm_momentum: if given, the momentum of every batch-normalisation layer's moving averages.
            Training from scratch needs a lower one (e.g. 0.9) than keras.applications' ImageNet-scale
            0.99–0.999: otherwise after a few hundred steps the averages used for validation and
            prediction still mostly hold their initial values, and every image gets the same class.
    """
    spec = backbones.get_backbone(backbone_name)
    if number_of_classes < 2:
        raise errors.DatasetError(f"classes: found {number_of_classes}; a classifier needs at least 2 classes. "
                                  f"Add images of another class.")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = CaffePreprocessing(name="caffe_preprocessing")(inputs) if spec.preprocessing == "caffe" else inputs
    backbone = _backbone(spec, features, weights_path)
    if batch_norm_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = batch_norm_momentum
    pooled = keras.layers.GlobalAveragePooling2D(name=HEAD_PREFIX + "pooling")(backbone.output)
    dropped = keras.layers.Dropout(dropout, name=HEAD_PREFIX + "dropout")(pooled)
    # float32 output even under mixed precision, so the softmax and the loss stay stable.
    outputs = keras.layers.Dense(number_of_classes, activation="softmax", dtype="float32",
                                 name=HEAD_PREFIX + "classes")(dropped)
    return keras.Model(inputs, outputs, name=f"{spec.name}_classifier")


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers in graph order (everything but the input and the ``head_*`` layers)."""
    return [layer for layer in model.layers
            if not layer.name.startswith(HEAD_PREFIX) and not isinstance(layer, keras.layers.InputLayer)]


def set_trainable(model: keras.Model, phase: str, fine_tune_layers: int = 0) -> int:
    """Freeze or unfreeze layers for a training phase; returns the number of trainable backbone layers.

    Args:
        model: a model from ``build_classifier``.
        phase: ``"head"`` (backbone frozen), ``"fine_tune"`` (the top ``fine_tune_layers`` backbone
            layers trainable, batch normalisation kept frozen so its ImageNet statistics survive
            small batches) or ``"all"`` (every layer, batch normalisation included: training from scratch).
        fine_tune_layers: N for ``"fine_tune"``.
    """
    layers = backbone_layers(model)
    if phase == "all":
        trainable = set(range(len(layers)))
    elif phase == "head":
        trainable = set()
    elif phase == "fine_tune":
        trainable = set(range(max(0, len(layers) - fine_tune_layers), len(layers)))
    else:
        raise errors.ConfigError(f"phase: {phase!r} is not 'head', 'fine_tune' or 'all'.")
    count = 0
    for index, layer in enumerate(layers):
        layer.trainable = index in trainable and (phase == "all" or
                                                  not isinstance(layer, keras.layers.BatchNormalization))
        count += int(layer.trainable)
    for layer in model.layers:
        if layer.name.startswith(HEAD_PREFIX):
            layer.trainable = True
    return count


def feature_map_tensor(model: keras.Model):
    """The last feature map (input of ``head_pooling``): float [batch, h, w, channels] symbolic tensor."""
    return model.get_layer(HEAD_PREFIX + "pooling").input


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0):
    """Adam, AdamW or Lion (Keras 3 implementations)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    if name == "lion":
        # Lion's sign updates are larger than Adam's: the Lion paper uses a 3–10× smaller rate.
        return keras.optimizers.Lion(learning_rate, weight_decay=weight_decay or None)
    raise errors.ConfigError(f"optimizer: {name!r} is not 'adam', 'adamw' or 'lion'.")


def compile_model(model: keras.Model, optimizer, label_smoothing: float) -> None:
    """Compile with categorical cross-entropy on one-hot (or mixed) targets; accuracy and macro F1 (Keras metrics)."""
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                           keras.metrics.F1Score(average="macro", name="macro_f1")])


def load_classifier(path: str | pathlib.Path, compile: bool = False) -> keras.Model:
    """Reload a saved classifier (``.keras``); ModelError naming the file otherwise."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.ModelError(f"{path}: no saved classifier here. Give the run folder of a finished training run.")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (OSError, ValueError) as error:
        raise errors.ModelError(f"{path}: cannot be loaded as a Keras 3 classifier ({error}). "
                                f"Train again, or choose the folder of another run.") from None
