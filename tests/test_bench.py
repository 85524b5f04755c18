"""The parts of the benchmark scripts that could silently bias a figure: label conversion and parsing."""

from __future__ import annotations

import pathlib
import sys
import time

import pytest

from helpers.detection import dataset as detection_dataset
from helpers.detection import demo_data

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import detection_vs_yolo  # noqa: E402
import finetune_vs_scratch  # noqa: E402
import notebook_times  # noqa: E402


@pytest.fixture
def voc_layout(tmp_path: pathlib.Path) -> pathlib.Path:
    """A PASCAL VOC folder (BCCD's layout) over synthetic images: 6 trainval stems, 2 of them val."""
    demo = demo_data.make_detection_demo(tmp_path / "demo", number_of_images=6, image_size=(160, 120))
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "JPEGImages").symlink_to(demo / "images")
    (voc / "Annotations").symlink_to(demo / "annotations")
    stems = sorted(path.stem for path in (demo / "annotations").glob("*.xml"))
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(stems) + "\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems[:2]) + "\n")
    return voc


def test_yolo_labels_are_the_doctors_boxes_in_the_same_class_order(voc_layout, tmp_path):
    yaml_path = detection_vs_yolo.write_yolo_dataset(voc_layout, tmp_path / "yolo", "trainval")
    dataset = detection_dataset.load_detection_dataset(voc_layout / "JPEGImages", voc_layout / "Annotations", progress=False)
    text = yaml_path.read_text()
    for index, name in enumerate(dataset.classes):
        assert f"  {index}: {name}" in text
    for item in dataset.items:
        lines = (tmp_path / "yolo" / "labels" / "trainval" / f"{item.stem}.txt").read_text().split("\n")
        boxes = [line.split() for line in lines if line]
        expected = dataset.usable_objects(item)
        assert len(boxes) == len(expected) > 0
        width, height = item.annotation.width, item.annotation.height
        for (label, cx, cy, w, h), obj in zip(boxes, expected):
            assert dataset.classes[int(label)] == obj.name
            # Back to pixel corners: within the 6-decimal rounding of the label file.
            assert (float(cx) - float(w) / 2) * width == pytest.approx(obj.xmin, abs=1e-3)
            assert (float(cy) + float(h) / 2) * height == pytest.approx(obj.ymax, abs=1e-3)
        assert (tmp_path / "yolo" / "images" / "trainval" / item.image_path.name).resolve() == item.image_path.resolve()
    assert len(list((tmp_path / "yolo" / "labels" / "val").glob("*.txt"))) == 2


def test_pytest_duration_lines_are_parsed():
    match = notebook_times.DURATION_LINE.match("312.45s setup    tests/test_detection_notebook.py::test_x")
    assert match.groups() == ("312.45", "setup", "tests/test_detection_notebook.py::test_x")
    assert notebook_times.DURATION_LINE.match("(3 durations < 0.005s hidden.  Use -vv to show these durations.)") is None


def test_finetune_split_keeps_pretraining_fine_tune_validation_and_test_apart(tmp_path):
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, stems in (("train", range(0, 20)), ("val", range(20, 26)), ("test", range(26, 30))):
        (main / f"{split}.txt").write_text("\n".join(f"img_{index:03d}" for index in stems) + "\n")
    parts = finetune_vs_scratch.detection_split(tmp_path, finetune_images=6, validation_images=4, smoke=False)
    assert [len(parts[name]) for name in ("A", "B", "validation", "test")] == [14, 6, 4, 4]
    assert set(parts["A"]) | set(parts["B"]) == {f"img_{index:03d}" for index in range(20)}
    assert not set(parts["A"]) & set(parts["B"])
    assert parts == finetune_vs_scratch.detection_split(tmp_path, 6, 4, smoke=False)  # seeded


def test_score_spread_flags_near_constant_scores():
    constant = finetune_vs_scratch.spread([0.013, 0.0131, 0.0129, 0.013])
    assert constant["fraction_within_0.01_of_median"] == 1.0 and constant["std"] < 0.001
    varied = finetune_vs_scratch.spread([0.1, 0.5, 0.9, 0.7])
    assert varied["fraction_within_0.01_of_median"] == 0.0 and varied["std"] > 0.2


def test_ablation_overrides_become_model_garden_overrides():
    import bccd

    overrides = bccd.parse_overrides(["task.train_data.parser.aug_scale_min=0.5",
                                      "task.train_data.parser.aug_scale_max=1.5",
                                      "task.model.anchor.aspect_ratios=[0.8, 1.0, 1.25]"])
    assert overrides == {"task": {"train_data": {"parser": {"aug_scale_min": 0.5, "aug_scale_max": 1.5}},
                                  "model": {"anchor": {"aspect_ratios": [0.8, 1.0, 1.25]}}}}
    with pytest.raises(SystemExit, match="PATH=VALUE"):
        bccd.parse_overrides(["task.model.anchor.num_scales"])


def test_ablation_overrides_reach_the_experiment_and_are_undone(tmp_path):
    import bccd

    from helpers import config as config_module
    from helpers.detection import model as model_module
    from helpers.detection.config import DetectionConfig

    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=str(tmp_path),
                                            annotations_dir=str(tmp_path), model_path=str(tmp_path), model_name="r")
    overrides = bccd.parse_overrides(["task.model.anchor.aspect_ratios=[0.8, 1.0, 1.25]",
                                      "task.train_data.parser.match_threshold=0.4"])
    with bccd.experiment_overrides(overrides):
        experiment = model_module.build_experiment(config, 3)
    assert list(experiment.task.model.anchor.aspect_ratios) == [0.8, 1.0, 1.25]
    assert experiment.task.train_data.parser.match_threshold == 0.4
    assert list(model_module.build_experiment(config, 3).task.model.anchor.aspect_ratios) == [0.5, 1.0, 2.0]
    with pytest.raises(KeyError), bccd.experiment_overrides(bccd.parse_overrides(["task.model.anchor.misspelt=1"])):
        model_module.build_experiment(config, 3)


def test_fine_tune_momentum_diagnostic_edits_only_pretrained_runs(tmp_path):
    from helpers import config as config_module
    from helpers.detection import model as model_module
    from helpers.detection.config import DetectionConfig

    def experiment(pretrained: str):
        config = config_module.config_from_form(DetectionConfig, "quick", images_dir=str(tmp_path),
                                                annotations_dir=str(tmp_path), model_path=str(tmp_path),
                                                model_name="r", pretrained=pretrained)
        return model_module.build_experiment(config, 3)

    unchanged = experiment("coco").task.model.norm_activation.norm_momentum
    with finetune_vs_scratch.fine_tune_norm_momentum(0.5):
        assert experiment("coco").task.model.norm_activation.norm_momentum == 0.5
        assert experiment("none").task.model.norm_activation.norm_momentum == unchanged != 0.5
    assert experiment("coco").task.model.norm_activation.norm_momentum == unchanged


def test_sync_bn_switch_of_the_speed_bench_keeps_model_garden_setting_only_inside(tmp_path):
    import detection_speed

    from helpers import config as config_module
    from helpers.detection import model as model_module
    from helpers.detection.config import DetectionConfig

    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=str(tmp_path),
                                            annotations_dir=str(tmp_path), model_path=str(tmp_path), model_name="r")
    with detection_speed.keep_model_garden_sync_bn():
        assert model_module.build_experiment(config, 3, replicas=1).task.model.norm_activation.use_sync_bn
    assert not model_module.build_experiment(config, 3, replicas=1).task.model.norm_activation.use_sync_bn
    assert model_module.build_experiment(config, 3, replicas=2).task.model.norm_activation.use_sync_bn


def test_thread_limit_of_the_speed_bench_reaches_the_input_pipeline():
    import detection_speed
    import tensorflow as tf

    dataset = tf.data.Dataset.range(3)
    assert detection_speed.with_threads(dataset, 0) is dataset
    limited = detection_speed.with_threads(dataset, 1).options().threading
    assert (limited.private_threadpool_size, limited.max_intra_op_parallelism) == (1, 1)


def test_speed_bench_counts_cpu_seconds_of_the_timed_calls_only():
    import detection_speed

    calls = []

    def busy():
        calls.append(1)
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass

    wall, cpu = detection_speed.time_steps_with_cpu(busy, warmup=1, steps=3)
    assert len(calls) == 4
    assert 0.04 <= cpu <= 0.5 and 0.04 <= wall <= 5


def test_yolo_side_takes_a_budget_or_a_number_of_epochs_not_both(capsys):
    import yolo_bccd

    for arguments in ([], ["--budget-seconds", "60", "--epochs", "2"]):
        with pytest.raises(SystemExit):
            yolo_bccd.main(["--data", "d.yaml", "--test-images", "t", "--output", "o", *arguments])
        assert "exactly one of --budget-seconds and --epochs" in capsys.readouterr().err
