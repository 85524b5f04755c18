"""The detection engine end to end on tiny synthetic data: train, resume after a kill, export, predict.

One small run (128 px SpineNet-Mobile from scratch, a few steps) is shared by the module's tests;
the kill/resume test trains a second run in a subprocess on two logical CPU devices
(MirroredStrategy) and kills it mid-epoch.
"""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import config as config_module
from helpers import history, images, runs
from helpers.detection import dataset as detection_dataset
from helpers.detection import demo_data
from tests.conftest import REPOSITORY_ROOT

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from helpers.detection import backbones, export, inference, predict, train  # noqa: E402
from helpers.detection import model as model_module  # noqa: E402
from helpers.detection.config import DetectionConfig  # noqa: E402


def small_config(data: pathlib.Path, model_path: pathlib.Path, name: str, **overrides) -> DetectionConfig:
    values = dict(images_dir=str(data / "images"), annotations_dir=str(data / "annotations"),
                  model_path=str(model_path), model_name=name, image_size=128, epochs=2, steps_per_epoch=3,
                  learning_rate_schedule="constant", score_threshold=0.0)
    values.update(overrides)
    return config_module.config_from_form(DetectionConfig, "quick", **values)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data = demo_data.make_detection_demo(tmp_path_factory.mktemp("data") / "demo", number_of_images=8,
                                         image_size=(160, 128))
    return detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    config = small_config(dataset.images_dir.parent, tmp_path_factory.mktemp("models"), "engine")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(dataset.classes)
    result = train.train_detector(config, run, dataset.items[:6], dataset.items[6:], dataset.classes,
                                  dataset.usable_objects)
    export.export_saved_model(result.model, config, dataset.classes, run.exported_model,
                              pixel_scale=result.pixel_scale)
    return {"config": config, "run": run, "result": result}


def test_history_has_one_row_per_epoch_with_validation_map(trained):
    rows = history.read_history(trained["run"].history_path)
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert row["train_total_loss"] > 0 and row["epoch_seconds"] > 0
        assert 0.0 <= row["validation_map50"] <= 1.0 and 0.0 <= row["validation_map50_95"] <= row["validation_map50"]
    assert trained["result"].epochs_completed == 2
    assert pathlib.Path(trained["result"].best_checkpoint + ".index").is_file()


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(trained):
    loop = trained["result"].loop
    batch = next(iter(loop.task.build_inputs(loop.experiment.task.train_data)))
    fixed = iter(tf.data.Dataset.from_tensors(batch).repeat())
    step = train._train_step_function(loop)
    saved_weights = loop.model.get_weights()  # later tests compare the export with this model
    losses = []
    for _ in range(6):
        for metric in loop.metrics:
            metric.reset_state()
        step(fixed)
        losses.append(float(loop.metrics[0].result()))
    loop.model.set_weights(saved_weights)
    assert losses[-1] < losses[0], losses


def test_giou_box_term_is_added_with_its_weight_and_vanishes_for_exact_boxes(trained):
    loop = trained["result"].loop
    features, labels = next(iter(loop.task.build_inputs(loop.experiment.task.train_data)))
    outputs = tf.nest.map_structure(lambda tensor: tf.cast(tensor, tf.float32), loop.model(features, training=False))
    assert float(tf.reduce_sum(labels["box_weights"])) > 0  # the batch has positive anchors

    def total(iou_weight: float) -> float:
        return float(model_module.weighted_total_loss(loop.task, outputs, labels, loop.model.losses, 1.0,
                                                      iou_weight)[0])

    term = float(model_module.box_iou_loss(loop.task, outputs, labels))
    assert 0.0 < term < 2.0  # an untrained model's boxes are not exact
    assert total(2.0) - total(0.0) == pytest.approx(2.0 * term, rel=1e-4)
    exact = {**outputs, "box_outputs": labels["box_targets"]}
    assert float(model_module.box_iou_loss(loop.task, exact, labels)) == pytest.approx(0.0, abs=1e-5)


def test_rerun_with_more_epochs_resumes_instead_of_restarting(trained, dataset):
    config = small_config(dataset.images_dir.parent, pathlib.Path(trained["config"].model_path), "engine", epochs=3)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    assert run.resumed
    result = train.train_detector(config, run, dataset.items[:6], dataset.items[6:], dataset.classes,
                                  dataset.usable_objects)
    assert result.resumed_from_epoch == 2 and result.epochs_completed == 3
    assert [row["epoch"] for row in history.read_history(run.history_path)] == [1, 2, 3]


def sorted_rows(detections) -> np.ndarray:
    """[N, 5] (xmin, ymin, xmax, ymax, score) in a canonical order (near-equal scores may swap ranks)."""
    rows = np.array([[d.xmin, d.ymin, d.xmax, d.ymax, d.score] for d in detections]).round(2)
    return rows[np.lexsort(rows.T[::-1])]


def test_exported_model_reloads_and_gives_the_in_memory_models_boxes(trained, dataset, tmp_path):
    """Both signatures of the SavedModel give the in-memory model's boxes: ``serving_default`` on a whole
    image, ``detect_windows`` on one full window (the in-memory path resizes it by exactly 1)."""
    detector = export.load_exported_model(trained["run"].exported_model)
    assert detector.class_names == dataset.classes and detector.image_size == 128
    assert detector.pixel_scale == trained["result"].pixel_scale
    path = dataset.items[6].image_path
    in_memory = inference.preprocess_and_detect(trained["result"].model, [path], 128, dataset.classes, 0.0)[0]
    reloaded = detector._detect_whole(images.read_image(path), 0.0, path.name)
    assert len(reloaded) == len(in_memory) > 0
    np.testing.assert_allclose(sorted_rows(reloaded), sorted_rows(in_memory), atol=1e-3)
    window = images.write_image(tmp_path / "window.png", images.read_image(path)[:128, :128])
    in_memory = inference.preprocess_and_detect(trained["result"].model, [window], 128, dataset.classes, 0.0)[0]
    boxes, scores, _ = detector._detect_windows([images.read_image(window)])[0]
    assert len(scores) == len(in_memory) > 0
    np.testing.assert_allclose(sorted_rows([dataclasses.replace(d, xmin=b[0], ymin=b[1], xmax=b[2], ymax=b[3], score=s)
                                            for d, b, s in zip(in_memory, boxes, scores)]),
                               sorted_rows(in_memory), atol=1e-3)
    height, width = images.read_image(path).shape[:2]
    tiled = detector.detect(images.read_image(path), score_threshold=0.0, filename=path.name)
    assert tiled and all(0 <= d.xmin <= d.xmax <= width and 0 <= d.ymin <= d.ymax <= height for d in tiled)


def test_exported_model_takes_images_of_any_size(trained):
    detector = export.load_exported_model(trained["run"].exported_model)
    for height, width in ((50, 300), (400, 90)):
        pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        for detection in detector.detect(pixels, score_threshold=0.0):
            assert 0 <= detection.xmin <= detection.xmax <= width and 0 <= detection.ymin <= detection.ymax <= height


def test_predict_folder_writes_csv_voc_coco_and_overlays(trained, dataset, tmp_path):
    from helpers import voc
    from helpers import prediction_formats

    result = predict.predict_folder(trained["run"].root, dataset.images_dir, tmp_path / "results", progress=False,
                                    score_threshold=0.0)
    assert result.images == len(dataset.items)
    rows = prediction_formats.read_predictions_csv(result.csv_path)
    assert len(rows) == len(result.detections)
    assert len(list((tmp_path / "results" / "voc").glob("*.xml"))) == len(dataset.items)
    for path in (tmp_path / "results" / "voc").glob("*.xml"):
        assert all(obj.score is not None for obj in voc.read_voc(path).objects)
    assert len(list((tmp_path / "results" / "overlays").glob("*.png"))) == len(dataset.items)
    with pytest.raises(ValueError, match="not empty"):
        predict.predict_folder(trained["run"].root, dataset.images_dir, tmp_path / "results", progress=False)


KILLED_TRAINING = textwrap.dedent("""
    import os, signal, sys
    import tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    # Grappler's optimisation of the two-replica step graph is single-threaded and, for 3 steps, costs more
    # than it saves: 215 -> 155 CPU s for this process (2026-12-07). What is tested (kill, checkpoint,
    # history, resume) is Python around the step; the logical CPUs only stand in for several GPUs.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    from helpers import config as config_module, runs
    from helpers.detection import dataset as detection_dataset
    from helpers import strategy
    from helpers.detection import train
    from helpers.detection.config import DetectionConfig

    class KillMidEpoch:
        def on_step_end(self, step, steps_per_epoch, logs):
            if logs["epoch"] == 2 and step == 2:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    data, model_path = sys.argv[1], sys.argv[2]
    dataset = detection_dataset.load_detection_dataset(data + "/images", data + "/annotations", progress=False)
    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=data + "/images",
        annotations_dir=data + "/annotations", model_path=model_path, model_name="killed", image_size=128,
        epochs=3, steps_per_epoch=3)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    chosen = strategy.choose_strategy(mirror_cpus=True)
    print(strategy.describe_strategy(chosen), flush=True)
    train.train_detector(config, run, dataset.items[:6], [], dataset.classes, dataset.usable_objects,
                         callbacks=(KillMidEpoch(),), strategy=chosen)
""")


def test_killed_mid_epoch_then_rerun_ends_with_all_epochs_and_a_consistent_history(dataset, tmp_path):
    script = tmp_path / "killed_training.py"
    script.write_text(KILLED_TRAINING, encoding="utf-8")
    completed = subprocess.run([sys.executable, str(script), str(dataset.images_dir.parent), str(tmp_path)],
                               cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)})
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-3000:]
    assert "MirroredStrategy" in completed.stdout  # the multi-device path ran on 2 logical CPUs
    run_folder = tmp_path / "killed"
    assert [row["epoch"] for row in history.read_history(run_folder / "history.csv")] == [1]

    data = str(dataset.images_dir.parent)  # the same settings as the killed process, or the run would be refused
    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=data + "/images",
                                            annotations_dir=data + "/annotations", model_path=str(tmp_path),
                                            model_name="killed", image_size=128, epochs=3, steps_per_epoch=3)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    result = train.train_detector(config, run, dataset.items[:6], [], dataset.classes, dataset.usable_objects)
    assert result.resumed_from_epoch == 1 and result.epochs_completed == 3
    assert [row["epoch"] for row in history.read_history(run.history_path)] == [1, 2, 3]


def test_coco_weights_are_downloaded_and_loaded_into_backbone_not_head(tmp_path, http_server):
    import tarfile

    config = small_config(tmp_path, tmp_path / "models", "pretrained_source")
    # A "published" checkpoint made the way Model Garden's trainer saves them: model + checkpoint_items at the root.
    source_model = model_module.build_model(config, num_classes=1)
    checkpoint_dir = tmp_path / "published"
    tf.train.Checkpoint(model=source_model, **source_model.checkpoint_items).write(str(checkpoint_dir / "ckpt-1"))
    archive = http_server.root / "weights.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(checkpoint_dir, arcname="spinenet49mobile")
    spec = backbones.BackboneSpec(**{**backbones.get_backbone("spinenet49_mobile").__dict__,
                                     "checkpoint_url": f"{http_server.url}/weights.tar.gz"})
    weights = backbones.download_pretrained(spec, cache_dir=tmp_path / "cache", progress=False)
    assert len(weights.sha256) == 64 and not weights.reused
    target = model_module.build_model(config, num_classes=3)
    assert backbones.load_pretrained(target, spec, weights) == ["backbone"]
    for source_variable, target_variable in zip(source_model.backbone.weights, target.backbone.weights):
        np.testing.assert_array_equal(source_variable.numpy(), target_variable.numpy())
    assert backbones.download_pretrained(spec, cache_dir=tmp_path / "cache", progress=False).reused


def test_a_trained_run_can_start_a_new_run_and_a_mismatched_model_is_refused(trained, dataset):
    from helpers import errors

    fresh = model_module.build_model(trained["config"], num_classes=len(dataset.classes))
    prefix = model_module.restore_weights(fresh, trained["run"].root)  # "continue from a previously saved model"
    assert prefix.startswith(str(trained["run"].checkpoints / "best"))
    reference = model_module.build_model(trained["config"], num_classes=len(dataset.classes))
    tf.train.Checkpoint(model=reference).read(prefix).expect_partial()
    for restored, expected in zip(fresh.weights, reference.weights):
        np.testing.assert_array_equal(restored.numpy(), expected.numpy())
    other_classes = model_module.build_model(trained["config"], num_classes=len(dataset.classes) + 2)
    with pytest.raises(errors.ModelError, match="same classes"):
        model_module.restore_weights(other_classes, trained["run"].root)


def test_detection_generator_keeps_1000_candidates_per_class_not_model_gardens_5000(tmp_path):
    """5,000 made inference 8-10x slower than the network on a CPU (docs/benchmarks.md §9); 1,000 >= any max_detections."""
    model_module._import_model_garden()
    from official.core import exp_factory

    spec = backbones.get_backbone("spinenet49_mobile")
    assert exp_factory.get_exp_config(spec.experiment).task.model.detection_generator.pre_nms_top_k == 5000
    config = small_config(tmp_path, tmp_path / "models", "top_k")
    generator = model_module.build_experiment(config, 2).task.model.detection_generator
    assert generator.pre_nms_top_k == model_module.PRE_NMS_TOP_K == 1000
    assert generator.pre_nms_top_k >= DetectionConfig.__dataclass_fields__["max_detections"].metadata["maximum"]


def test_synchronised_batch_norm_only_when_several_replicas_share_a_batch(tmp_path):
    model_module._import_model_garden()  # registers Model Garden's RetinaNet experiments
    from official.core import exp_factory

    model_garden_sync = {}
    for name, spec in backbones.BACKBONES.items():
        model_garden = exp_factory.get_exp_config(spec.experiment)
        model_garden.task.model.override(spec.model_overrides, is_strict=True)
        model_garden_sync[name] = model_garden.task.model.norm_activation.use_sync_bn
        config = small_config(tmp_path, tmp_path / "models", "sync", backbone=name, pretrained="none")
        one_replica = (model_module.build_experiment(config, 2), model_module.build_experiment(config, 2, replicas=1))
        for experiment in one_replica:
            assert experiment.task.model.norm_activation.use_sync_bn is False, name
        assert model_module.build_experiment(config, 2, replicas=2).task.model.norm_activation.use_sync_bn is \
            model_garden_sync[name], name
    assert model_garden_sync["spinenet49_mobile"]  # Model Garden's recipe has it, so the test means something
    config = small_config(tmp_path, tmp_path / "models", "sync")
    models = {}
    for replicas, expected in ((1, False), (2, True)):
        models[replicas] = model_module.build_model_from_experiment(
            model_module.build_experiment(config, 2, replicas=replicas))
        synchronised = [layer for layer in models[replicas].submodules if getattr(layer, "synchronized", False)]
        assert bool(synchronised) is expected, replicas
    # A run trained on several GPUs resumes on one (and back): the checkpoint is the same either way.
    prefix = tf.train.Checkpoint(model=models[2]).write(str(tmp_path / "synchronised" / "ckpt"))
    tf.train.Checkpoint(model=models[1]).read(prefix).assert_consumed()
    for single, several in zip(models[1].weights, models[2].weights):
        np.testing.assert_array_equal(single.numpy(), several.numpy())


def test_validation_epochs_on_a_cpu_are_every_few_and_every_one_at_the_end():
    assert train.validation_epochs(14, 0, "cpu") == {4, 8, 12, 13, 14}
    assert train.validation_epochs(14, 0, "gpu") == set(range(1, 15))
    assert train.validation_epochs(40, 0, "cpu") == {10, 20, 30, 37, 38, 39, 40}
    assert train.validation_epochs(50, 0, "cpu") == {13, 26, 39} | set(range(46, 51))
    assert train.validation_epochs(2, 0, "cpu") == {1, 2}
    assert train.validation_epochs(1, 0, "cpu") == {1}
    assert train.validation_epochs(5, 2, "gpu") == {2, 4, 5}  # a number typed in the form wins everywhere


def test_unvalidated_epochs_have_no_scores_and_cannot_become_the_best(dataset, tmp_path):
    config = small_config(dataset.images_dir.parent, tmp_path, "interval", epochs=5, steps_per_epoch=1,
                          validation_interval=2)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(dataset.classes)
    result = train.train_detector(config, run, dataset.items[:6], dataset.items[6:], dataset.classes,
                                  dataset.usable_objects)
    rows = history.read_history(run.history_path)
    validated = [row["epoch"] for row in rows if not np.isnan(row["validation_map50"])]
    assert validated == [2, 4, 5]
    assert all(row["validation_seconds"] > 0 for row in rows if row["epoch"] in validated)
    assert all(np.isnan(row["validation_seconds"]) for row in rows if row["epoch"] not in validated)
    assert result.best_epoch in validated
    assert "Cache" in type(result.loop.validator.dataset).__name__  # decoded once, kept in memory
