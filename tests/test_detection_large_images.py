"""Large fields of view with small objects, end to end: the quick preset trains in windows at the pixel
scale chosen from the boxes, finds the small objects in held-out large images, reports an object cut by
a window seam once, and finds (almost) none of them when the whole image is shrunk into one window
(what every model did before pixel scales).

Data: the synthetic demo's cells (small cells about 24 px) in 512 x 384 fields holding up to 33 cells
each; the quick preset's 256-px window would shrink such a field to half, making small cells 12 px.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from helpers import config as config_module
from helpers import images, runs, voc
from helpers.detection import dataset as detection_dataset
from helpers.detection import demo_data, tiling

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

from helpers.detection import export, predict, quality, train  # noqa: E402
from helpers.detection.config import DetectionConfig  # noqa: E402
from helpers.qc import detection as detection_qc  # noqa: E402

FIELD = (512, 384)
EPOCHS = 20
SMALL = "synthetic_small_cell"
# The bars of the held-out test, set from the spread of this quick training (20 epochs on 6 fields, not
# deterministic on a CPU) at scale 0.944, auto's choice here. Four runs (two of this test, two with the
# scale typed) gave mAP50 0.873, 0.713, 0.672, 0.582 and small-cell AP50 0.844, 0.784, 0.714, 0.497
# (2026-12-07): a bar of 0.5 would have failed one run in four. Shrunk whole into one window, the same
# models find no small cell (AP50 0.000, the test below).
MIN_MAP50 = 0.4
MIN_SMALL_CELL_AP50 = 0.35


@pytest.fixture(scope="module")
def large_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("large_fields")
    data = demo_data.make_detection_demo(root / "train", number_of_images=8, image_size=FIELD, seed=11,
                                         extra_objects=30)
    test = demo_data.make_detection_demo(root / "test", number_of_images=3, image_size=FIELD, seed=12,
                                         extra_objects=30)
    config = config_module.config_from_form(
        DetectionConfig, "quick", images_dir=str(data / "images"), annotations_dir=str(data / "annotations"),
        model_path=str(root / "models"), model_name="large_fields", epochs=EPOCHS, validation_interval=EPOCHS)
    dataset = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    scale = train.pixel_scale_for(config, dataset.items, dataset.usable_objects)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(dataset.classes)
    result = train.train_detector(config, run, dataset.items[:6], dataset.items[6:], dataset.classes,
                                  dataset.usable_objects, pixel_scale=scale)
    export.export_saved_model(result.model, config, dataset.classes, run.exported_model, pixel_scale=result.pixel_scale)
    return {"config": config, "run": run, "scale": scale, "test": test, "classes": dataset.classes}


def test_auto_chooses_tiles_at_a_scale_where_small_cells_are_large_enough(large_run):
    scale = large_run["scale"]
    whole = large_run["config"].image_size / FIELD[0]
    assert scale.chosen_by == "auto" and scale.scale > whole
    assert scale.windows_for(*FIELD) > 1
    assert 24 * scale.scale >= tiling.MIN_OBJECT_PIXELS - 0.5
    metadata = export.load_exported_model(large_run["run"].exported_model).pixel_scale
    assert metadata == scale


def test_small_cells_are_found_in_held_out_large_fields(large_run):
    test = large_run["test"]
    result = quality.evaluate_run(large_run["run"], str(test / "images"), str(test / "annotations"), progress=False)
    print(f"large fields, windows: mAP50 {result.evaluation.map50:.3f}, small cells AP50 "
          f"{result.evaluation.per_class[SMALL]['ap50']:.3f}")
    assert result.evaluation.map50 >= MIN_MAP50, result.summary_text()
    assert result.evaluation.per_class[SMALL]["ap50"] >= MIN_SMALL_CELL_AP50, result.summary_text()
    assert result.pixel_scale == large_run["scale"]
    assert "pixel scale" in result.summary_text()


def _ground_truth(folder: pathlib.Path) -> dict:
    return {path.with_suffix(".png").name: voc.read_voc(path) for path in sorted((folder / "annotations").glob("*.xml"))}


def test_shrinking_the_whole_field_into_one_window_loses_the_small_cells(large_run, tmp_path):
    """Object_size_ratio = scale / (window / field width) presents each field whole in one window."""
    test, scale = large_run["test"], large_run["scale"]
    ratio = scale.scale / (scale.window / FIELD[0])
    tiles = predict.predict_folder(large_run["run"].root, test / "images", tmp_path / "tiles", progress=False,
                                   score_threshold=0.05)
    whole = predict.predict_folder(large_run["run"].root, test / "images", tmp_path / "whole", progress=False,
                                   score_threshold=0.05, object_size_ratio=ratio)
    assert set(whole.image_sizes) == set(tiles.image_sizes)
    ground_truth = _ground_truth(test)
    scores = {name: detection_qc.evaluate_detection(ground_truth, result.detections, classes=large_run["classes"],
                                                    score_threshold=0.3)
              for name, result in (("tiles", tiles), ("whole", whole))}
    print({name: (round(score.map50, 3), round(score.per_class[SMALL]["ap50"], 3)) for name, score in scores.items()})
    assert scores["tiles"].per_class[SMALL]["ap50"] >= scores["whole"].per_class[SMALL]["ap50"] + 0.3
    settings = (tmp_path / "whole" / "prediction_settings.json").read_text(encoding="utf-8")
    assert f'"object_size_ratio": {ratio}' in settings


def test_a_cell_cut_by_a_window_seam_is_reported_once(large_run):
    """Every annotated cell that crosses a seam between two windows has at most one detection of its
    class over it (IoU >= 0.5, at the run's score threshold), and cells across seams are found about as
    often as the other cells (score >= 0.05): the merge neither duplicates nor loses them."""
    test, scale = large_run["test"], large_run["scale"]
    detector = export.load_exported_model(large_run["run"].exported_model)
    threshold = large_run["config"].score_threshold
    found = {"crossing": [], "other": []}
    for name, annotation in _ground_truth(test).items():
        pixels = images.read_image(test / "images" / name)
        scaled = tiling.ScaledImage(tiling.ArraySource(pixels), scale.scale)
        areas = scaled.windows(scale.window, scale.overlap)
        seams_x = {area.x / scaled.x_scale for area in areas if area.x > 0}
        seams_x |= {(area.x + area.width) / scaled.x_scale for area in areas if area.x + area.width < scaled.width}
        detections = detector.detect(pixels, score_threshold=0.05)
        for obj in annotation.objects:
            box = np.array([obj.xmin, obj.ymin, obj.xmax, obj.ymax])
            same_class = [d for d in detections if d.class_name == obj.name]
            overlaps = _iou(box, np.array([[d.xmin, d.ymin, d.xmax, d.ymax] for d in same_class]))
            confident = sum(1 for d, overlap in zip(same_class, overlaps) if overlap >= 0.5 and d.score >= threshold)
            crossing = any(obj.xmin < seam < obj.xmax for seam in seams_x)
            if crossing:
                assert confident <= 1, f"{name}: {obj} reported {confident} times"
            found["crossing" if crossing else "other"].append(bool((overlaps >= 0.5).any()))
    rates = {kind: float(np.mean(values)) for kind, values in found.items()}
    print(f"{len(found['crossing'])} cells cross a seam; found (IoU >= 0.5, score >= 0.05): {rates}")
    assert len(found["crossing"]) >= 5
    assert rates["crossing"] >= 0.75 * rates["other"]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if not len(boxes):
        return np.zeros(0)
    left, top = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    right, bottom = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    areas = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (areas - inter)


def job_files(folder: pathlib.Path) -> dict[str, bytes]:
    """The files a prediction writes (a job's own bookkeeping left out), by path under ``folder``."""
    from helpers import prediction_jobs

    bookkeeping = (prediction_jobs.PER_IMAGE_FOLDER, prediction_jobs.PER_PART_FOLDER, prediction_jobs.JOB_FILE)
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*")
            if path.is_file() and path.relative_to(folder).parts[0] not in bookkeeping}


def test_fields_cut_into_parts_on_two_workers_give_the_single_process_files_and_resume_by_part(large_run, tmp_path):
    from helpers import prediction_jobs
    from helpers.detection import prediction_job

    run, source = large_run["run"], large_run["test"] / "images"
    single = predict.predict_folder(run.root, source, tmp_path / "single", progress=False)
    expected = job_files(tmp_path / "single")
    windows = large_run["scale"].windows_for(*FIELD)
    parts = -(-windows // 2)  # 2 windows per part
    assert windows >= 4 and len(single.counts) == 3

    on_workers = prediction_jobs.run_job(prediction_job.job_predictor(run, tmp_path / "job2", str(source),
                                                                      windows_per_part=2),
                                         str(source), tmp_path / "job2", workers=2, progress=False)
    assert (on_workers.images, on_workers.predicted) == (3, 3)
    assert len(list((tmp_path / "job2" / prediction_jobs.PER_PART_FOLDER).rglob("*.json"))) == 3 * parts
    assert job_files(tmp_path / "job2") == expected  # the seams of parts merged exactly as in one process

    predictor = prediction_job.job_predictor(run, tmp_path / "job", str(source), windows_per_part=2)
    prediction_jobs.run_job(predictor, str(source), tmp_path / "job", progress=False)
    per_image, per_part = tmp_path / "job" / prediction_jobs.PER_IMAGE_FOLDER, tmp_path / "job" / prediction_jobs.PER_PART_FOLDER
    # As if the job was killed while predicting the last part of one field: its record and that part are gone.
    name = sorted(path.stem for path in per_image.glob("*.json"))[0]
    prediction_jobs.result_path(per_image, name).unlink()
    prediction_jobs.part_path(per_image, name, parts - 1, parts).unlink()
    kept = {path: path.stat().st_mtime_ns for path in per_part.rglob("*.json")}
    again = prediction_jobs.run_job(predictor, str(source), tmp_path / "job", progress=False)
    assert (again.predicted, again.resumed, again.images) == (1, 2, 3)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # only the missing part was predicted again
    assert prediction_jobs.part_path(per_image, name, parts - 1, parts).is_file()
    assert job_files(tmp_path / "job") == expected
