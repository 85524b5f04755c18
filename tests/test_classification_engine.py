"""Classification engine pieces without training: backbones and weights, model, Grad-CAM, export, predict."""

import csv
import functools
import hashlib
import http.server
import importlib
import socket
import threading

import keras
import numpy as np
import pytest

from helpers import config as config_module
from helpers import errors, runs
from helpers.classification import backbones, demo_data, gradcam, predict, train
from helpers.classification import model as model_module
from helpers.classification.config import ClassificationConfig

KERAS_MODULES = {"EfficientNet": "efficientnet", "EfficientNetV2": "efficientnet_v2", "MobileNetV3": "mobilenet_v3",
                 "ResNet": "resnet"}


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_registry_uses_the_weight_files_and_hashes_keras_applications_uses(name):
    spec = backbones.BACKBONES[name]
    family = "EfficientNetV2" if spec.constructor.startswith("EfficientNetV2") else \
        next(prefix for prefix in ("EfficientNet", "MobileNetV3", "ResNet") if spec.constructor.startswith(prefix))
    source = importlib.import_module(f"keras.src.applications.{KERAS_MODULES[family]}")
    base = getattr(source, "BASE_WEIGHTS_PATH", None) or source.BASE_WEIGHT_PATH
    assert spec.weights_url.startswith(base)
    assert spec.weights_md5 in {hashes[1] for hashes in source.WEIGHTS_HASHES.values()}, "notop hash unknown to keras"
    assert hasattr(keras.applications, spec.constructor)


@pytest.mark.parametrize("name", ["efficientnetb0", "efficientnetb3", "efficientnetb4", "efficientnetb5"])
def test_each_efficientnet_has_its_own_weight_file_hash_and_input_size(name):
    from keras.src.applications import efficientnet

    spec = backbones.BACKBONES[name]
    variant = name.removeprefix("efficientnet")  # "b4": keras's key for EfficientNetB4
    assert spec.weights_url == efficientnet.BASE_WEIGHTS_PATH + f"{name}_notop.h5"
    assert spec.weights_md5 == efficientnet.WEIGHTS_HASHES[variant][1]
    assert spec.default_image_size == {"b0": 224, "b3": 300, "b4": 380, "b5": 456}[variant]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def weight_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights_notop.h5").write_bytes(b"pretend weights " * 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weights_notop.h5", served / "weights_notop.h5"
    server.shutdown()


def test_download_weights_checks_the_md5_and_fails_clearly_offline(weight_server, tmp_path):
    url, served_file = weight_server
    good = hashlib.md5(served_file.read_bytes()).hexdigest()
    spec = backbones.BackboneSpec("test", "MobileNetV3Small", 224, url, good, "included", "test")
    download = backbones.download_weights(spec, cache_dir=tmp_path / "cache", progress=False)
    assert download.path.read_bytes() == served_file.read_bytes() and not download.reused
    wrong = backbones.BackboneSpec("test", "MobileNetV3Small", 224, url, "0" * 32, "included", "test")
    with pytest.raises(errors.DownloadError, match="expected md5 0{32}"):
        backbones.download_weights(wrong, cache_dir=tmp_path / "cache", progress=False)
    offline = backbones.BackboneSpec("test", "MobileNetV3Small", 224, f"http://127.0.0.1:{free_port()}/w.h5", good,
                                     "included", "test")
    with pytest.raises(errors.DownloadError):
        backbones.download_weights(offline, cache_dir=tmp_path / "cache", progress=False)


def test_config_presets_and_phases():
    quick = config_module.config_from_form(ClassificationConfig, "quick")
    assert (quick.backbone, quick.pretrained, quick.image_size, quick.epochs) == ("mobilenetv3small", "none", 64, 2)
    assert train.phases(quick) == [("all", 1, 2)]
    default = config_module.config_from_form(ClassificationConfig, "default", epochs=10, head_epochs=3)
    assert train.phases(default) == [("head", 1, 3), ("fine_tune", 4, 10)]
    assert train.phases(config_module.config_from_form(ClassificationConfig, "default", epochs=3, head_epochs=3)) \
        == [("head", 1, 3)]
    with pytest.raises(errors.ConfigError, match="head_epochs"):
        config_module.config_from_form(ClassificationConfig, "default", epochs=2, head_epochs=3)
    with pytest.raises(errors.ConfigError, match="backbone"):
        config_module.config_from_form(ClassificationConfig, "default", backbone="vgg16")


def test_model_shapes_and_trainable_phases_keep_batch_norm_frozen():
    model = model_module.build_classifier("mobilenetv3small", 3, 32)
    assert model.input.shape[1:] == (32, 32, 3) and model.output.shape[1:] == (3,)
    layers = model_module.backbone_layers(model)
    assert model_module.set_trainable(model, "head") == 0
    assert model.get_layer("head_classes").trainable
    count = model_module.set_trainable(model, "fine_tune", 30)
    top = layers[-30:]
    normalisation = [layer for layer in top if isinstance(layer, keras.layers.BatchNormalization)]
    assert normalisation and not any(layer.trainable for layer in normalisation)
    assert count == len(top) - len(normalisation)
    assert not any(layer.trainable for layer in layers[:-30])
    assert model_module.set_trainable(model, "all") == len(layers)
    with pytest.raises(errors.DatasetError, match="at least 2"):
        model_module.build_classifier("mobilenetv3small", 1, 32)


def test_from_scratch_batch_norm_momentum_is_set_and_saved(tmp_path):
    model = model_module.build_classifier("efficientnetb0", 2, 32, batch_norm_momentum=0.9)
    path = tmp_path / "scratch.keras"
    model.save(path)
    normalisation = [layer for layer in model_module.load_classifier(path).layers
                     if isinstance(layer, keras.layers.BatchNormalization)]
    assert normalisation and {layer.momentum for layer in normalisation} == {0.9}
    default = model_module.build_classifier("efficientnetb0", 2, 32)
    assert {layer.momentum for layer in default.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}


def test_caffe_preprocessing_matches_keras_resnet50_and_survives_saving(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(model_module.CaffePreprocessing()(pixels))
    np.testing.assert_allclose(ours, keras.applications.resnet50.preprocess_input(pixels.copy()), atol=1e-4)
    model = model_module.build_classifier("resnet50", 2, 32)
    path = tmp_path / "resnet.keras"
    model.save(path)
    reloaded = model_module.load_classifier(path)
    np.testing.assert_allclose(reloaded.predict(pixels[:, :, :, :].repeat(8, 1).repeat(8, 2), verbose=0),
                               model.predict(pixels.repeat(8, 1).repeat(8, 2), verbose=0), atol=1e-5)


def test_export_predict_folder_and_gradcam(tmp_path):
    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=2, image_size=40)
    (data / "synthetic_oval" / "broken.png").write_bytes(b"not an image")
    config = config_module.config_from_form(ClassificationConfig, "quick", images_dir=str(data),
                                            model_path=str(tmp_path / "models"), model_name="run", image_size=32)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    classes = sorted(demo_data.CLASSIFICATION_CLASSES)
    model = model_module.build_classifier("mobilenetv3small", len(classes), 32)
    predict.export_model(model, classes, run)
    result = predict.predict_folder(run.root, data, tmp_path / "out")
    with result.csv_path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["filename", "label"] + [f"score_{name}" for name in classes]
    assert len(rows) == 6 and rows[0]["filename"] == "synthetic_lobed/synthetic_lobed_000.png"
    assert len(result.skipped) == 1 and "broken.png" in result.skipped[0]
    assert not (data / "predictions.csv").exists()
    reloaded, names, size = predict.load_run_model(run)
    assert names == classes and size == 32
    heatmap, chosen, probability = gradcam.gradcam_heatmap(reloaded, np.full((32, 32, 3), 120, np.uint8))
    assert heatmap.ndim == 2 and 0 <= heatmap.min() and heatmap.max() <= 1 and 0 <= chosen < 3 and 0 < probability <= 1
    figure = gradcam.gradcam_figure(reloaded, data / "synthetic_round" / "synthetic_round_000.png", classes,
                                    tmp_path / "gradcam.png", true_label="synthetic_round")
    assert figure.stat().st_size > 1000


def test_progress_line_tolerates_an_epoch_without_figures():
    import io

    stream = io.StringIO()
    callback = train.ProgressCallback(3, stream=stream)
    callback.on_epoch_end(0, {"loss": 0.5, "epoch_seconds": 2.0, "validation_accuracy": 0.75})
    callback.on_epoch_end(1, None)  # a task whose logs lack the classification figures
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Epoch 1: loss 0.5000, validation accuracy 0.750, balanced accuracy nan (2 s)"
    assert lines[1] == "Epoch 2: loss nan (nan s)"
