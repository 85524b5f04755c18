"""Every numeric precision runs on the CPU, for each task: train a few steps, export, reload, predict.

On Colab every user trains on a GPU, where ``mixed_precision = "auto"`` picks float16 (with loss
scaling); a TPU gets bfloat16. Here both are forced on the CPU, so a dtype error shows up in the
tests and not first on a user's GPU. Outputs must be float32 and finite.

float16 on a CPU is correct but slow: TensorFlow has no oneDNN float16 kernels for this CPU, and the
Eigen fallback of Conv2D's gradients is ~100x slower than float32 (a 3x3 conv of 2x64x64x32: 2.8 ms
float32, 250 ms float16, 2.6 ms bfloat16). The tiny models below keep that to seconds.

Each test restores the global Keras and tf_keras dtype policies (fixture ``restore_policies``).
"""

import dataclasses
import pathlib

import keras
import numpy as np
import pytest
import tf_keras

from helpers import config as config_module
from helpers import errors, images, precision, runs
from helpers.classification import augmentation, pipeline
from helpers.classification.config import ClassificationConfig
from helpers.detection.config import DetectionConfig
from helpers.grading.config import GradingConfig

POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@pytest.fixture(autouse=True)
def restore_policies():
    """Put back the global dtype policies of Keras 3 and tf_keras after each test."""
    keras_policy, tf_keras_policy = keras.mixed_precision.dtype_policy(), tf_keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_dtype_policy(keras_policy)
    tf_keras.mixed_precision.set_global_policy(tf_keras_policy)


def forget_policy() -> None:
    """Reset both global policies to float32, as in a new session on a CPU that reloads a saved model."""
    keras.mixed_precision.set_dtype_policy("float32")
    tf_keras.mixed_precision.set_global_policy("float32")


class OptimizerSpy(keras.callbacks.Callback):
    """Records the optimiser that ``fit`` really uses."""

    optimizer = None

    def on_train_begin(self, logs=None):
        self.optimizer = self.model.optimizer


# ----- the "auto" rule --------------------------------------------------------------------------


def test_auto_is_the_same_rule_and_help_text_for_every_task(monkeypatch):
    from helpers import strategy
    from helpers.classification import train as classification_train
    from helpers.detection import model as detection_model

    expected = {"tpu": ("bfloat16", "mixed_bfloat16"), "gpu": ("float16", "mixed_float16"),
                "cpu": ("float32", "float32")}
    for kind, (dtype, policy) in expected.items():
        monkeypatch.setattr(strategy, "accelerator_kind", lambda kind=kind: kind)
        assert precision.resolve("auto") == precision.resolve("auto", kind) == dtype
        assert detection_model.resolve_precision("auto") == dtype
        for config_class in (ClassificationConfig, GradingConfig):
            assert classification_train.choose_precision(config_class(mixed_precision="auto")) == policy
        for forced in ("float32", "float16", "bfloat16"):
            assert detection_model.resolve_precision(forced) == forced
            assert classification_train.choose_precision(ClassificationConfig(mixed_precision=forced)) == \
                precision.KERAS_POLICIES[forced]
    for config_class in (DetectionConfig, ClassificationConfig, GradingConfig):
        metadata = {item.name: item for item in dataclasses.fields(config_class)}["mixed_precision"].metadata
        assert (metadata["help"], metadata["choices"]) == (precision.HELP, precision.CHOICES), config_class
    with pytest.raises(errors.ConfigError, match="mixed_precision"):
        precision.resolve("float64", "cpu")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_augmentation_and_mixing_stay_float32_under_mixed_precision(dtype, tmp_path):
    # Built under a mixed policy, Keras's CutMix failed (tf.range in float16) and MixUp multiplied
    # float16 by float32; the pipeline now computes in float32 whatever the policy.
    from helpers.classification import demo_data

    keras.mixed_precision.set_dtype_policy(POLICIES[dtype])
    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=2, image_size=32)
    paths = sorted(data.rglob("*.png"))
    for chosen, mixing in (("randaugment", "cutmix"), ("augmix", "mixup")):
        config = ClassificationConfig(augmentation=chosen, mixing=mixing, image_size=32)
        batches = pipeline.training_dataset(paths, [index % 3 for index in range(len(paths))], 3, 32, 4, 1,
                                            augmenter=augmentation.build_augmenter(config),
                                            mixer=augmentation.build_mixer(config))
        batch, target, weight = next(iter(batches))
        assert (batch.dtype.name, target.dtype.name, weight.dtype.name) == ("float32",) * 3, (chosen, mixing)
        assert np.isfinite(batch.numpy()).all() and 0 <= batch.numpy().min() and batch.numpy().max() <= 255


# ----- classification and grading (Keras 3) -----------------------------------------------------


def check_optimizer(spy: OptimizerSpy, dtype: str) -> None:
    """float16 trains with Keras's dynamic loss scaling; bfloat16 (float32's exponent range) without."""
    assert spy.optimizer is not None
    assert isinstance(spy.optimizer, keras.optimizers.LossScaleOptimizer) is (dtype == "float16")


@pytest.mark.slow
@pytest.mark.parametrize("dtype, augmenter, mixing", [("float16", "randaugment", "cutmix"),
                                                      ("bfloat16", "augmix", "mixup")])
def test_classification_trains_exports_and_predicts(dtype, augmenter, mixing, tmp_path):
    from helpers.classification import dataset, demo_data, predict, train

    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=3, image_size=32)
    config = config_module.config_from_form(
        ClassificationConfig, "quick", images_dir=str(data), model_path=str(tmp_path / "models"), model_name="run",
        image_size=32, epochs=1, batch_size=4, steps_per_epoch=2, augmentation=augmenter, mixing=mixing,
        mixed_precision=dtype)
    checked = dataset.load_classification_dataset(data, progress=False)
    items, spy = checked.items, OptimizerSpy()
    validation = items[2::3]
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    result = train.train_classifier(config, run, [item for item in items if item not in validation], validation,
                                    checked.classes, callbacks=[spy])
    assert result.precision == POLICIES[dtype] == keras.mixed_precision.dtype_policy().name
    check_optimizer(spy, dtype)
    predict.export_model(result.model, checked.classes, run)
    forget_policy()
    model, classes, size = predict.load_run_model(run)
    assert POLICIES[dtype] in {layer.dtype_policy.name for layer in model.layers}  # saved with the run's precision
    probabilities, kept, skipped = predict.predict_paths(model, [item.path for item in items], size, progress=False)
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(items), len(classes)) and not skipped
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, head", [("float16", "cumulative"), ("bfloat16", "regression")])
def test_grading_trains_exports_and_grades(dtype, head, tmp_path):
    from helpers.grading import dataset, demo_data, predict
    from helpers.grading import train as grading_train

    images_dir, labels_csv = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=1, num_grades=3,
                                                         image_size=32)
    config = config_module.config_from_form(
        GradingConfig, "quick", images_dir=str(images_dir), labels_csv=str(labels_csv),
        model_path=str(tmp_path / "models"), model_name="run", num_grades=3, referable_threshold=1, image_size=32,
        epochs=1, batch_size=2, steps_per_epoch=2, head=head, augmentation="randaugment", mixed_precision=dtype)
    items = dataset.load_grading_dataset(config.images_dir, config.labels_csv, config.num_grades, config.grade_column,
                                         config.group_column, 1, filename_column=config.filename_column).items
    run, spy = runs.open_run_folder(config.model_path, config.model_name, config), OptimizerSpy()
    training = grading_train.train_grader(config, run, items[::2], items[1::2], callbacks=[spy])
    assert training.result.precision == POLICIES[dtype]
    check_optimizer(spy, dtype)
    grading_train.export(training, config, run)
    forget_policy()
    model, settings = predict.load_grader(run)
    paths = [item.path for item in items]
    outputs, kept, _ = grading_train.predict_outputs(model, paths, config, progress=False)
    assert outputs.dtype == np.float32 and outputs.shape == (len(items), 2 if head == "cumulative" else 1)
    assert np.isfinite(outputs).all()
    grades, scores, _, _ = predict.grade_paths(model, settings, paths, progress=False)
    assert set(grades.tolist()) <= {0, 1, 2} and np.isfinite(scores).all()


# ----- detection (tf_keras, TF Model Garden) ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype, validate", [("float16", True), ("bfloat16", False)])
def test_detection_trains_exports_and_detects(dtype, validate, tmp_path):
    import tensorflow as tf

    from helpers.detection import dataset as detection_dataset
    from helpers.detection import demo_data
    from helpers.detection import export, train

    data = demo_data.make_detection_demo(tmp_path / "demo", number_of_images=3, image_size=(160, 128))
    checked = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    config = config_module.config_from_form(
        DetectionConfig, "quick", images_dir=str(data / "images"), annotations_dir=str(data / "annotations"),
        model_path=str(tmp_path / "models"), model_name="run", image_size=128, epochs=1, steps_per_epoch=2,
        learning_rate_schedule="constant", score_threshold=0.0, mixed_precision=dtype)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(checked.classes)
    result = train.train_detector(config, run, checked.items[:2], checked.items[2:] if validate else [],
                                  checked.classes, checked.usable_objects)
    assert tf_keras.mixed_precision.global_policy().name == POLICIES[dtype]
    # Model Garden wraps the optimiser in a dynamic LossScaleOptimizer for float16 (runtime.loss_scale None).
    assert isinstance(result.loop.optimizer, tf_keras.mixed_precision.LossScaleOptimizer) is (dtype == "float16")
    row = result.best_metrics
    assert np.isfinite(row["train_total_loss"]) and (not validate or np.isfinite(row["validation_loss"]))
    export.export_saved_model(result.model, config, checked.classes, run.exported_model,
                              pixel_scale=result.pixel_scale)
    forget_policy()
    pixels = images.read_image(checked.items[2].image_path)
    raw = tf.saved_model.load(str(run.exported_model)).signatures["serving_default"](image=tf.constant(pixels))
    assert raw["boxes"].dtype == raw["scores"].dtype == tf.float32 and raw["boxes"].shape[0] > 0
    assert np.isfinite(raw["boxes"].numpy()).all() and np.isfinite(raw["scores"].numpy()).all()
    detections = export.load_exported_model(run.exported_model).detect(pixels, score_threshold=0.0)
    height, width = pixels.shape[:2]
    assert detections and all(0 <= d.xmin <= d.xmax <= width and 0 <= d.ymin <= d.ymax <= height and
                              0 <= d.score <= 1 for d in detections)
    assert pathlib.Path(result.best_checkpoint + ".index").is_file()
