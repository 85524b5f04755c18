"""Our pretrained classifier computes what Keras's own ``weights="imagenet"`` network computes.

For every backbone of the registry, the test writes a notop weight file in Keras's legacy ``.h5``
format (the format of the files keras.applications downloads) from a randomly initialised network
whose batch-normalisation statistics and input normalisation are perturbed (so no layer is an
identity), then compares, on the same RGB 0..255 images:

* the reference: ``keras.applications.<Constructor>(include_top=False, weights="imagenet")``, its
  download redirected to that file (``file_utils.get_file`` patched; no network), fed through
  Keras's ``preprocess_input``, as a user of keras.applications would;
* ours: ``build_classifier(name, 3, size, weights_path=<that file>)``.

The first convolution and the last feature map must agree. This guards against architecture
differences Keras makes only for ``weights == "imagenet"`` (EfficientNet-B0..B7 add a rescaling
layer after the stem's normalisation), which a weights file path does not trigger.
"""

import importlib
import warnings

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from helpers.classification import backbones, gradcam
from helpers.classification import model as model_module

IMAGE_SIZE = 64  # every registry backbone accepts 32 px and more; 64 keeps a few blocks above 1x1
# Measured on 2 shared CPU cores: B0, MobileNetV3 and ResNet50 take 7-9 s each, B1-B3 12-14 s,
# B4, B5 and V2-S 22-26 s.
SLOW = {"efficientnetb1", "efficientnetb2", "efficientnetb3", "efficientnetb4", "efficientnetb5", "efficientnetv2s"}
PREPROCESS_MODULES = (("EfficientNetV2", "efficientnet_v2"), ("EfficientNet", "efficientnet"),
                      ("MobileNetV3", "mobilenet_v3"), ("ResNet", "resnet50"))


def _constructor_options(spec) -> dict:
    """Keras constructor options our builder uses too (preprocessing inside the network)."""
    if spec.constructor.startswith(("EfficientNetV2", "MobileNetV3")):
        return {"include_preprocessing": True}
    return {}


def _preprocess_input(spec):
    """``keras.applications.<module>.preprocess_input`` for this backbone (what Keras's users call)."""
    module = next(name for prefix, name in PREPROCESS_MODULES if spec.constructor.startswith(prefix))
    return importlib.import_module(f"keras.applications.{module}").preprocess_input


def _perturb(network: keras.Model, random: np.random.Generator) -> None:
    """Non-trivial statistics and affine terms for every batch normalisation, non-trivial input moments."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape
            layer.moving_mean.assign(random.normal(0.0, 0.3, channels).astype("float32"))
            layer.moving_variance.assign(random.uniform(0.5, 2.0, channels).astype("float32"))
            if layer.gamma is not None:
                layer.gamma.assign(random.uniform(0.7, 1.3, channels).astype("float32"))
            if layer.beta is not None:
                layer.beta.assign(random.normal(0.0, 0.2, channels).astype("float32"))
        elif isinstance(layer, keras.layers.Normalization) and layer.input_mean is None:
            # Close to the ImageNet moments the real EfficientNet files carry, but not exactly them.
            layer.adapt_mean.assign(np.float32([0.485, 0.456, 0.406]) + random.normal(0, 0.02, 3).astype("float32"))
            layer.adapt_variance.assign(np.float32([0.229, 0.224, 0.225]) ** 2 * random.uniform(0.8, 1.2, 3)
                                        .astype("float32"))
            layer.finalize_state()


def _write_legacy_notop_file(spec, path) -> None:
    """A notop weight file in the legacy h5 layout keras.applications downloads (``layer_names`` + one group per layer).

    ``model.save_weights`` in Keras 3 only writes the newer ``.weights.h5`` layout, so the legacy
    writer is called directly.
    """
    constructor = getattr(keras.applications, spec.constructor)
    source = constructor(include_top=False, weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                         **_constructor_options(spec))
    _perturb(source, np.random.default_rng(7))
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)


def _keras_reference(spec, weights_file, monkeypatch) -> keras.Model:
    """Keras's own ``weights="imagenet"`` network, its download answered by ``weights_file``."""
    requested = []

    def local_get_file(fname=None, origin=None, **options):
        requested.append((fname, origin))
        return str(weights_file)

    constructor = getattr(keras.applications, spec.constructor)
    with monkeypatch.context() as patch, warnings.catch_warnings():
        patch.setattr(file_utils, "get_file", local_get_file)  # the module attribute keras.applications calls
        warnings.simplefilter("ignore", UserWarning)  # MobileNetV3 warns about sizes other than 224
        reference = constructor(include_top=False, weights="imagenet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                **_constructor_options(spec))
    assert requested and requested[0][0] == spec.weights_filename, requested  # same file as the registry's
    return reference


def _first_convolution(network: keras.Model) -> keras.layers.Layer:
    return next(layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D))


def _assert_close(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    scale = float(np.abs(reference).max())
    difference = float(np.abs(ours - reference).max())
    assert difference <= 1e-5 * max(scale, 1.0), (f"{what}: max abs difference {difference:.3g} "
                                                  f"(reference max abs {scale:.3g})")


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                                  for name in sorted(backbones.BACKBONES)])
def test_pretrained_backbone_matches_keras_imagenet_network(name, tmp_path, monkeypatch):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # the source network's kernels, so a failure reproduces
    spec = backbones.get_backbone(name)
    weights_file = tmp_path / spec.weights_filename
    _write_legacy_notop_file(spec, weights_file)
    reference = _keras_reference(spec, weights_file, monkeypatch)
    ours = model_module.build_classifier(name, 3, IMAGE_SIZE, weights_path=str(weights_file))

    reference_convolution, our_convolution = _first_convolution(reference), _first_convolution(ours)
    assert our_convolution.name == reference_convolution.name
    reference_outputs = keras.Model(reference.input, [reference_convolution.output, reference.output])
    our_outputs = keras.Model(ours.input, [our_convolution.output, model_module.feature_map_tensor(ours)])

    images = np.random.default_rng(3).uniform(0, 255, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    reference_stem, reference_features = reference_outputs.predict(_preprocess_input(spec)(images.copy()), verbose=0)
    our_stem, our_features = our_outputs.predict(images, verbose=0)
    assert our_features.shape == reference_features.shape
    _assert_close(our_stem, reference_stem, f"{name} {our_convolution.name}")
    _assert_close(our_features, reference_features, f"{name} last feature map")


@pytest.mark.slow  # about 20 s: saves and reloads a whole EfficientNet-B0
def test_pretrained_efficientnet_saves_reloads_fine_tunes_and_explains(tmp_path):
    """The inserted rescaling survives ``.keras`` saving; layer counting and Grad-CAM see one flat graph."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    spec = backbones.get_backbone("efficientnetb0")
    weights_file = tmp_path / spec.weights_filename
    _write_legacy_notop_file(spec, weights_file)
    model = model_module.build_classifier("efficientnetb0", 3, IMAGE_SIZE, weights_path=str(weights_file),
                                          batch_norm_momentum=0.9)
    layers = model_module.backbone_layers(model)
    assert "imagenet_stddev_rescaling" in [layer.name for layer in layers]
    assert {layer.momentum for layer in layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    assert model_module.set_trainable(model, "all") == len(layers)
    assert model_module.set_trainable(model, "fine_tune", 20) == len(
        [layer for layer in layers[-20:] if not isinstance(layer, keras.layers.BatchNormalization)])
    images = np.random.default_rng(5).uniform(0, 255, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    path = tmp_path / "pretrained.keras"
    model.save(path)
    reloaded = model_module.load_classifier(path)
    assert "imagenet_stddev_rescaling" in [layer.name for layer in reloaded.layers]
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    heatmap, chosen, probability = gradcam.gradcam_heatmap(reloaded, images[0].astype(np.uint8))
    assert heatmap.ndim == 2 and 0 <= chosen < 3 and 0 < probability <= 1
    scratch = model_module.build_classifier("efficientnetb0", 3, IMAGE_SIZE)  # Keras's weights=None network
    assert "imagenet_stddev_rescaling" not in [layer.name for layer in scratch.layers]
