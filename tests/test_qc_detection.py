"""Detection QC: our figures equal a direct pycocotools computation; counts and matrix on hand-made cases."""

import contextlib
import dataclasses
import io
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import coco, cocoeval

from helpers import annotation_formats, errors, voc
from helpers.detection import dataset as detection_dataset
from helpers import prediction_formats
from helpers.qc import detection
from tests.conftest import REPOSITORY_ROOT, shared_dataset

CLASSES = ("Erythrozyt", "débris", "platelet")


def box(name, xmin, ymin, xmax, ymax, difficult=False):
    return voc.VocObject(name, float(xmin), float(ymin), float(xmax), float(ymax), difficult=difficult)


def annotation(filename, objects, size=(200, 150)):
    return voc.VocAnnotation(filename=filename, width=size[0], height=size[1], depth=3, objects=list(objects))


def detection_of(filename, name, score, xmin, ymin, xmax, ymax):
    return prediction_formats.Detection(filename, name, float(score), float(xmin), float(ymin), float(xmax), float(ymax))


# ---------------------------------------------------------------- generated cases


def generated_case(seed):
    """Ground truth of 6 images (one empty, one difficult box) and predictions: jittered boxes, misses, FPs."""
    rng = np.random.default_rng(seed)
    ground_truth, predictions = {}, []
    for index in range(6):
        filename = f"bild_{index}.png"
        objects = []
        for _ in range(0 if index == 0 else int(rng.integers(1, 7))):
            x, y = rng.uniform(0, 150), rng.uniform(0, 110)
            objects.append(box(CLASSES[int(rng.integers(0, 3))], x, y, x + rng.uniform(8, 50), y + rng.uniform(8, 40)))
        if index == 2:
            objects.append(box("débris", 20, 20, 60, 50, difficult=True))
        ground_truth[filename] = annotation(filename, objects)
        for obj in objects:
            if rng.random() < 0.2:
                continue  # missed
            width, height = obj.xmax - obj.xmin, obj.ymax - obj.ymin
            shift = rng.normal(0, 0.12, 4) * [width, height, width, height]
            name = obj.name if rng.random() < 0.85 else CLASSES[int(rng.integers(0, 3))]
            predictions.append(detection_of(filename, name, rng.uniform(0.05, 1.0), obj.xmin + shift[0],
                                            obj.ymin + shift[1], obj.xmax + shift[2], obj.ymax + shift[3]))
        for _ in range(int(rng.integers(0, 4))):  # false positives, the empty image included
            x, y = rng.uniform(0, 150), rng.uniform(0, 110)
            predictions.append(detection_of(filename, CLASSES[int(rng.integers(0, 3))], rng.uniform(0.05, 1.0),
                                            x, y, x + rng.uniform(8, 40), y + rng.uniform(8, 40)))
    return ground_truth, predictions


def direct_cocoeval(ground_truth, predictions, category_names, category_ids=None):
    """COCOeval on COCO dictionaries built here by hand; returns the evaluated object."""
    image_ids = {name: 100 + position for position, name in enumerate(ground_truth)}
    categories = [{"id": 10 + position, "name": name} for position, name in enumerate(category_names)]
    category_of = {entry["name"]: entry["id"] for entry in categories}
    annotations = []
    for filename, item in ground_truth.items():
        for obj in item.objects:
            width, height = obj.xmax - obj.xmin, obj.ymax - obj.ymin
            annotations.append({"id": len(annotations) + 1, "image_id": image_ids[filename],
                                "category_id": category_of[obj.name], "bbox": [obj.xmin, obj.ymin, width, height],
                                "area": width * height, "iscrowd": 1 if obj.difficult else 0})
    results = [{"image_id": image_ids[p.filename], "category_id": category_of[p.class_name],
                "bbox": [p.xmin, p.ymin, p.xmax - p.xmin, p.ymax - p.ymin], "score": p.score}
               for p in predictions if p.class_name in category_of]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco.COCO()
        truth.dataset = {"images": [{"id": identifier, "width": 200, "height": 150}
                                    for identifier in image_ids.values()],
                         "categories": categories, "annotations": annotations}
        truth.createIndex()
        evaluator = cocoeval.COCOeval(truth, truth.loadRes(results), "bbox")
        if category_ids is not None:
            evaluator.params.catIds = [category_of[name] for name in category_ids]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_equals_direct_pycocotools(seed):
    ground_truth, predictions = generated_case(seed)
    evaluation = detection.evaluate_detection(ground_truth, predictions)
    names = sorted({obj.name for item in ground_truth.values() for obj in item.objects})
    direct = direct_cocoeval(ground_truth, predictions, names)
    assert 0.0 < evaluation.map50 < 1.0  # the case is neither trivial nor hopeless
    assert evaluation.map50_95 == pytest.approx(direct.stats[0], abs=1e-12)
    assert evaluation.map50 == pytest.approx(direct.stats[1], abs=1e-12)
    assert evaluation.map75 == pytest.approx(direct.stats[2], abs=1e-12)
    for name in names:  # per class: a separate COCOeval restricted to that one category
        alone = direct_cocoeval(ground_truth, predictions, names, category_ids=[name])
        assert evaluation.per_class[name]["ap50_95"] == pytest.approx(alone.stats[0], abs=1e-12)
        assert evaluation.per_class[name]["ap50"] == pytest.approx(alone.stats[1], abs=1e-12)
    assert evaluation.number_of_images == 6


def test_difficult_box_is_ignored_not_a_miss_nor_a_false_positive():
    ground_truth = {"a.png": annotation("a.png", [box("cell", 10, 10, 50, 50), box("cell", 100, 10, 140, 50, True)])}
    on_difficult = detection_of("a.png", "cell", 0.9, 100, 10, 140, 50)
    on_regular = detection_of("a.png", "cell", 0.8, 10, 10, 50, 50)
    evaluation = detection.evaluate_detection(ground_truth, [on_difficult, on_regular])
    # A false positive ranked first would give AP50 0.5; a missed difficult box would cap recall at 0.5.
    assert evaluation.map50 == pytest.approx(1.0)
    cell = evaluation.per_class["cell"]
    assert (cell["tp"], cell["fp"], cell["fn"], cell["ground_truth_boxes"], cell["difficult_boxes"]) == (1, 0, 0, 1, 1)
    assert evaluation.confusion_matrix == [[1, 0], [0, 0]]
    alone = detection.evaluate_detection(ground_truth, [on_regular])
    assert alone.map50 == pytest.approx(1.0) and alone.per_class["cell"]["fn"] == 0


def test_perfect_predictions_give_map_one():
    ground_truth, _ = generated_case(5)
    perfect = [detection_of(name, obj.name, 1.0, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
               for name, item in ground_truth.items() for obj in item.objects]
    evaluation = detection.evaluate_detection(ground_truth, perfect)
    assert (evaluation.map50, evaluation.map50_95, evaluation.map75) == (pytest.approx(1.0),) * 3
    assert all(values["fp"] == 0 and values["fn"] == 0 for values in evaluation.per_class.values())


def test_unknown_class_is_listed_and_left_out_of_the_mean():
    ground_truth, predictions = generated_case(1)
    ghost = detection_of("bild_1.png", "Geist", 0.99, 0, 0, 30, 30)
    with_ghost = detection.evaluate_detection(ground_truth, predictions + [ghost])
    without = detection.evaluate_detection(ground_truth, predictions)
    assert with_ghost.unknown_classes == ["Geist"]
    assert with_ghost.classes[-1] == "Geist"
    assert math.isnan(with_ghost.per_class["Geist"]["ap50"])
    assert with_ghost.per_class["Geist"]["fp"] == 1
    assert with_ghost.map50 == without.map50 and with_ghost.map50_95 == without.map50_95
    assert with_ghost.confusion_matrix[-1][with_ghost.classes.index("Geist")] == 1  # (background, Geist)
    assert with_ghost.to_json_dict()["per_class"]["Geist"]["ap50"] is None


def test_class_order_follows_the_classes_argument():
    ground_truth, predictions = generated_case(2)
    evaluation = detection.evaluate_detection(ground_truth, predictions, classes=["platelet", "unused"])
    assert evaluation.classes[:2] == ["platelet", "unused"]
    assert math.isnan(evaluation.per_class["unused"]["ap50"])
    assert evaluation.unknown_classes == []


def test_prediction_for_an_image_without_ground_truth_is_an_error_naming_it():
    ground_truth, predictions = generated_case(0)
    stray = detection_of("fremd_ü.jpg", "platelet", 0.5, 0, 0, 10, 10)
    with pytest.raises(errors.DatasetError, match="fremd_ü.jpg"):
        detection.evaluate_detection(ground_truth, predictions + [stray])


def test_counts_on_a_hand_made_case():
    ground_truth = {
        "a.png": annotation("a.png", [box("A", 0, 0, 10, 10), box("A", 20, 20, 30, 30), box("B", 40, 40, 50, 50)]),
        "b.png": annotation("b.png", []),
    }
    predictions = [
        detection_of("a.png", "A", 0.9, 0, 0, 10, 10),      # TP A
        detection_of("a.png", "A", 0.8, 0, 0, 10, 9),       # duplicate of the same box: FP A
        detection_of("a.png", "A", 0.2, 20, 20, 30, 30),    # below the score threshold: not counted, box 2 is FN
        detection_of("a.png", "A", 0.7, 40, 40, 50, 50),    # on the B box: FP A, and B is FN
        detection_of("b.png", "B", 0.95, 5, 5, 15, 15),     # empty image: FP B
        detection_of("a.png", "B", 0.6, 100, 100, 110, 110),  # nowhere: FP B
    ]
    evaluation = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.3)
    a, b = evaluation.per_class["A"], evaluation.per_class["B"]
    assert (a["tp"], a["fp"], a["fn"], a["ground_truth_boxes"]) == (1, 2, 1, 2)
    assert (b["tp"], b["fp"], b["fn"], b["ground_truth_boxes"]) == (0, 2, 1, 1)
    assert a["precision"] == pytest.approx(1 / 3) and a["recall"] == pytest.approx(0.5)
    assert a["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert (b["precision"], b["recall"], b["f1"]) == (0.0, 0.0, 0.0)
    # the same boxes at a lower threshold: the 0.2 detection now finds box 2
    lower = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.1)
    assert (lower.per_class["A"]["tp"], lower.per_class["A"]["fn"]) == (2, 0)
    assert evaluation.thresholds == {"iou_threshold": 0.5, "score_threshold": 0.3, "max_detections": 100,
                                     "map": "COCO IoU 0.50:0.05:0.95, area all"}


def test_iou_threshold_decides_a_match():
    ground_truth = {"a.png": annotation("a.png", [box("A", 0, 0, 10, 10)])}
    shifted = [detection_of("a.png", "A", 0.9, 4, 0, 14, 10)]  # IoU 6*10 / (2*100 - 60) = 0.4286
    assert detection.evaluate_detection(ground_truth, shifted, iou_threshold=0.5).per_class["A"]["tp"] == 0
    assert detection.evaluate_detection(ground_truth, shifted, iou_threshold=0.4).per_class["A"]["tp"] == 1


def test_confusion_matrix_on_a_hand_made_case():
    ground_truth = {"a.png": annotation("a.png", [box("A", 0, 0, 10, 10), box("B", 20, 20, 30, 30),
                                                  box("B", 40, 40, 50, 50), box("C", 60, 60, 70, 70)])}
    predictions = [
        detection_of("a.png", "A", 0.9, 0, 0, 10, 10),        # A as A
        detection_of("a.png", "A", 0.8, 20, 20, 30, 30),      # B as A
        detection_of("a.png", "C", 0.7, 100, 100, 120, 120),  # background as C
        detection_of("a.png", "B", 0.6, 0, 0, 10, 10),        # A already taken: background as B
        detection_of("a.png", "B", 0.1, 40, 40, 50, 50),      # below the score threshold: the B box stays missed
    ]
    evaluation = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.3)
    assert evaluation.confusion_matrix_labels == ["A", "B", "C", "background"]
    assert evaluation.confusion_matrix == [
        [1, 0, 0, 0],   # A: found as A
        [1, 0, 0, 1],   # B: one called A, one missed
        [0, 0, 0, 1],   # C: missed
        [0, 1, 1, 0],   # background: a B and a C detection on nothing
    ]


def test_pr_curves_are_cocoeval_precision_at_iou_05():
    ground_truth, predictions = generated_case(3)
    evaluation = detection.evaluate_detection(ground_truth, predictions)
    names = list(evaluation.classes)
    direct = direct_cocoeval(ground_truth, predictions, names)
    for index, name in enumerate(names):
        curve = evaluation.pr_curves[name]
        assert curve["recall"] == pytest.approx(list(np.linspace(0, 1, 101)))
        assert curve["precision"] == pytest.approx(list(direct.eval["precision"][0, :, index, 0, -1]))
    assert set(evaluation.per_class) == set(names)


def f1_case():
    """Class A: 3 boxes, 4 detections (0.9 on box 1, 0.8 on nothing, 0.6 on box 2, 0.4 on box 1 again); W: 1 box, 0.5 on it."""
    ground_truth = {"a.png": annotation("a.png", [box("A", 0, 0, 10, 10), box("A", 20, 20, 30, 30),
                                                  box("A", 40, 40, 50, 50), box("W", 60, 60, 80, 80)])}
    predictions = [detection_of("a.png", "A", 0.9, 0, 0, 10, 10), detection_of("a.png", "A", 0.8, 100, 100, 110, 110),
                   detection_of("a.png", "A", 0.6, 20, 20, 30, 30), detection_of("a.png", "A", 0.4, 0, 0, 10, 10),
                   detection_of("a.png", "W", 0.5, 60, 60, 80, 80)]
    return ground_truth, predictions


def test_f1_curve_on_a_hand_made_case():
    ground_truth, predictions = f1_case()
    curves = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.3).f1_curves
    assert curves.score_thresholds == [round(0.01 * step, 2) for step in range(101)]  # 0.3 is on the grid
    at = {threshold: position for position, threshold in enumerate(curves.score_thresholds)}
    a, pooled = curves.per_class["A"], curves.per_class["all classes"]
    # A by hand: (TP, FP, FN) and F1 for score >= t; the 0.4 duplicate of box 1 is an FP at every t <= 0.4.
    for threshold, counts, f1 in ((0.0, (2, 2, 1), 4 / 7), (0.4, (2, 2, 1), 4 / 7), (0.41, (2, 1, 1), 2 / 3),
                                  (0.6, (2, 1, 1), 2 / 3), (0.61, (1, 1, 2), 0.4), (0.8, (1, 1, 2), 0.4),
                                  (0.81, (1, 0, 2), 0.5), (0.9, (1, 0, 2), 0.5), (0.91, (0, 0, 3), 0.0)):
        position = at[threshold]
        assert (a["tp"][position], a["fp"][position], a["fn"][position]) == counts, threshold
        assert a["f1"][position] == pytest.approx(f1), threshold
    assert a["precision"][at[0.5]] == pytest.approx(2 / 3) and a["recall"][at[0.5]] == pytest.approx(2 / 3)
    # All classes pooled: at 0.5 TP 3 (A 2, W 1), FP 1, FN 1 -> F1 0.75; at 0.51 W's detection is gone.
    assert pooled["f1"][at[0.5]] == pytest.approx(0.75) and pooled["f1"][at[0.51]] == pytest.approx(4 / 7)
    assert pooled["f1"][at[0.3]] == pytest.approx(2 * 0.6 * 0.75 / 1.35)  # TP 3, FP 2, FN 1
    # Best F1: A's 2/3 holds on 0.41..0.60, the pooled 0.75 on 0.41..0.50; ties go to the one nearest 0.3.
    assert curves.best["A"] == pytest.approx({"score_threshold": 0.41, "f1": 2 / 3, "precision": 2 / 3,
                                              "recall": 2 / 3})
    assert curves.best["all classes"]["score_threshold"] == 0.41 and curves.best["W"]["score_threshold"] == 0.3
    assert curves.lowest_prediction_score == 0.4 and curves.best_threshold_note.startswith("chosen on these")
    nearer = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.55).f1_curves
    assert 0.55 in nearer.score_thresholds and nearer.best["A"]["score_threshold"] == 0.55


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_curve_equals_matching_again_at_each_threshold(seed):
    """One matching serves every threshold: each point equals the table of an evaluation at that threshold."""
    ground_truth, predictions = generated_case(seed)
    curves = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.3).f1_curves
    for threshold in (0.0, 0.2, 0.45, 0.7, 0.95):
        again = detection.evaluate_detection(ground_truth, predictions, score_threshold=threshold).per_class
        position = curves.score_thresholds.index(threshold)
        for name, values in again.items():
            point = {key: curves.per_class[name][key][position] for key in ("tp", "fp", "fn", "f1")}
            assert point == pytest.approx({key: values[key] for key in ("tp", "fp", "fn", "f1")}), (name, threshold)
        pooled = [sum(values[key] for values in again.values()) for key in ("tp", "fp", "fn")]
        assert [curves.per_class["all classes"][key][position] for key in ("tp", "fp", "fn")] == pooled


def test_no_predictions_gives_zero_map_and_all_misses():
    ground_truth, _ = generated_case(4)
    evaluation = detection.evaluate_detection(ground_truth, [])
    assert evaluation.map50 == 0.0 and evaluation.map50_95 == 0.0
    boxes = sum(not obj.difficult for item in ground_truth.values() for obj in item.objects)
    assert sum(values["fn"] for values in evaluation.per_class.values()) == boxes


def test_bad_thresholds_are_config_errors():
    ground_truth, predictions = generated_case(0)
    with pytest.raises(errors.ConfigError, match="iou_threshold"):
        detection.evaluate_detection(ground_truth, predictions, iou_threshold=1.5)
    with pytest.raises(errors.ConfigError, match="max_detections"):
        detection.evaluate_detection(ground_truth, predictions, max_detections=0)


def test_json_dict_is_strict_json_and_plots_are_written(tmp_path):
    ground_truth, predictions = generated_case(0)
    evaluation = detection.evaluate_detection(ground_truth, predictions, classes=["platelet", "unused"])
    text = json.dumps(evaluation.to_json_dict(), allow_nan=False)
    assert json.loads(text)["per_class"]["unused"]["ap50"] is None
    for plot in (detection.plot_per_class_ap, detection.plot_pr_curves, detection.plot_confusion_matrix,
                 detection.plot_f1_curve):
        path = plot(evaluation, tmp_path / f"{plot.__name__}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- folders and the command


def write_ground_truth_folder(folder, ground_truth):
    """One VOC file per image, named after the image stem."""
    for filename, item in ground_truth.items():
        voc.write_voc(item, folder / f"{pathlib.PurePath(filename).stem}.xml")


def test_load_ground_truth_and_stem_matching(tmp_path):
    ground_truth, _ = generated_case(0)
    write_ground_truth_folder(tmp_path, ground_truth)
    voc.write_voc(annotation("", [box("A", 1, 1, 5, 5), box("A", 3, 3, 3, 9)]), tmp_path / "ohne_name.xml")
    loaded = annotation_formats.load_ground_truth(tmp_path)
    assert set(loaded) == set(ground_truth) | {"ohne_name"}
    assert loaded["bild_1.png"] == ground_truth["bild_1.png"]
    assert len(loaded["ohne_name"].objects) == 1  # the zero-width box is left out
    names = ("bild_1.jpg", "C:\\x\\bild_2.png", "ohne_name.tif")  # other extension, Windows folder, XML stem
    renamed = [detection_of(name, "A", 0.5, 0, 0, 1, 1) for name in names]
    assert [p.filename for p in detection.match_predictions(loaded, renamed)] == ["bild_1.png", "bild_2.png",
                                                                                 "ohne_name"]


def run_command(*arguments):
    return subprocess.run([sys.executable, "-m", "helpers.qc", *arguments], cwd=REPOSITORY_ROOT,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_command_json_equals_the_function(tmp_path):
    ground_truth, predictions = generated_case(2)
    annotations_dir = tmp_path / "annotations"
    write_ground_truth_folder(annotations_dir, ground_truth)
    csv_path = prediction_formats.write_predictions_csv(predictions, tmp_path / "predictions.csv")
    completed = run_command("detection", "--ground-truth", str(annotations_dir), "--predictions", str(csv_path),
                            "--score-threshold", "0.4", "--iou-threshold", "0.6", "--json")
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)  # the whole of stdout is one JSON object
    expected = detection.evaluate_detection(annotation_formats.load_ground_truth(annotations_dir),
                                            prediction_formats.read_predictions_csv(csv_path), score_threshold=0.4,
                                            iou_threshold=0.6).to_json_dict()
    assert printed == expected
    assert printed["thresholds"]["iou_threshold"] == 0.6 and "débris" in printed["per_class"]
    curves = printed["f1_curves"]  # the F1 curve travels in the JSON, at the command's thresholds
    assert curves["iou_threshold"] == 0.6 and 0.4 in curves["score_thresholds"]
    assert set(curves["per_class"]) == set(printed["classes"]) | {"all classes"}


def test_command_table_and_user_error(tmp_path):
    ground_truth, predictions = generated_case(2)
    write_ground_truth_folder(tmp_path / "annotations", ground_truth)
    csv_path = prediction_formats.write_predictions_csv(predictions + [detection_of("fremd.png", "A", 0.5, 0, 0, 9, 9)],
                                             tmp_path / "predictions.csv")
    failed = run_command("detection", "--ground-truth", str(tmp_path / "annotations"), "--predictions", str(csv_path),
                         "--json")
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(failed.stderr.strip().splitlines()) == 1 and "fremd.png" in failed.stderr
    prediction_formats.write_predictions_csv(predictions, csv_path)
    table = run_command("detection", "--ground-truth", str(tmp_path / "annotations"), "--predictions", str(csv_path))
    assert table.returncode == 0 and "mAP50-95" in table.stdout and "IoU >= 0.5" in table.stdout


def test_qc_modules_do_not_import_tensorflow():
    code = ("import sys, helpers.qc.__main__, helpers.qc.detection, helpers.qc.classification, helpers.qc.grading, "
            "helpers.detection.outputs; print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY_ROOT, capture_output=True, text=True)
    assert completed.stdout.strip() == "False", completed.stderr


# ---------------------------------------------------------------- the real BCCD data


def test_bccd_ground_truth_against_itself_gives_map_one(tmp_path):
    bccd = shared_dataset("bccd")
    stems = (bccd / "ImageSets" / "Main" / "test.txt").read_text().split()
    dataset = detection_dataset.load_detection_dataset(bccd / "JPEGImages", bccd / "Annotations", progress=False)
    items = [item for item in dataset.items if item.stem in set(stems)]
    assert len(items) == len(stems) == 72
    ground_truth = {item.image_path.name: dataclasses.replace(item.annotation, objects=dataset.usable_objects(item))
                    for item in items}
    as_predictions = [detection_of(name, obj.name, 1.0, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                      for name, item in ground_truth.items() for obj in item.objects]
    evaluation = detection.evaluate_detection(ground_truth, as_predictions)
    assert evaluation.map50 == pytest.approx(1.0) and evaluation.map50_95 == pytest.approx(1.0)
    assert evaluation.classes == ["Platelets", "RBC", "WBC"]
    # The command on the whole folder: zero-area boxes are left out of the ground truth, so it is 1.0 too.
    loaded = annotation_formats.load_ground_truth(bccd / "Annotations")
    csv_path = prediction_formats.write_predictions_csv(
        [detection_of(name, obj.name, 1.0, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
         for name, item in loaded.items() for obj in item.objects], tmp_path / "predictions.csv")
    completed = run_command("detection", "--ground-truth", str(bccd / "Annotations"), "--predictions", str(csv_path),
                            "--json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["map50"] == pytest.approx(1.0)
    assert "zero or negative area" in completed.stderr


# ---------------------------------------------------------------- counts per image


def test_count_statistics_on_hand_made_counts():
    predicted, annotated = [3, 5, 2, 0], [2, 5, 4, 0]  # differences 1, 0, -2, 0
    values = detection.count_statistics(predicted, annotated)
    assert values.images == 4 and (values.annotated_total, values.predicted_total) == (11, 10)
    assert values.mean_absolute_error == pytest.approx(3 / 4)
    # relative error only over the 3 images with annotated > 0: (1/2 + 0/5 + 2/4) / 3; the empty image is left out
    assert values.mean_relative_error == pytest.approx(1 / 3) and values.relative_error_images == 3
    assert values.bias == pytest.approx(-0.25)
    sd = math.sqrt((1.25 ** 2 + 0.25 ** 2 + 1.75 ** 2 + 0.25 ** 2) / 3)  # ddof = 1
    assert values.sd_difference == pytest.approx(sd)
    assert values.lower_limit_of_agreement == pytest.approx(-0.25 - 1.96 * sd)
    assert values.upper_limit_of_agreement == pytest.approx(-0.25 + 1.96 * sd)
    # r = sum(da dp) / sqrt(sum da^2 sum dp^2) with da, dp the deviations from the means 2.75 and 2.5
    assert values.pearson_r == pytest.approx(11.5 / math.sqrt(14.75 * 13))
    perfect = detection.count_statistics([4, 1, 7], [4, 1, 7])
    assert (perfect.mean_absolute_error, perfect.bias, perfect.lower_limit_of_agreement,
            perfect.upper_limit_of_agreement, perfect.pearson_r) == (0, 0, 0, 0, pytest.approx(1.0))


def test_count_statistics_undefined_cases_are_nan():
    constant_annotated = detection.count_statistics([1, 2, 3], [2, 2, 2])
    assert math.isnan(constant_annotated.pearson_r) and constant_annotated.mean_absolute_error == pytest.approx(2 / 3)
    assert math.isnan(detection.count_statistics([2, 2, 2], [1, 2, 3]).pearson_r)
    nothing_annotated = detection.count_statistics([1, 0, 2], [0, 0, 0])
    assert math.isnan(nothing_annotated.mean_relative_error) and nothing_annotated.relative_error_images == 0
    assert nothing_annotated.bias == pytest.approx(1.0) and nothing_annotated.mean_absolute_error == pytest.approx(1.0)
    one_image = detection.count_statistics([3], [1])
    assert one_image.bias == 2 and math.isnan(one_image.sd_difference) and math.isnan(one_image.upper_limit_of_agreement)
    assert math.isnan(one_image.pearson_r)
    with pytest.raises(ValueError):
        detection.count_statistics([1, 2], [1])


def count_case():
    """3 images: a.png 2 RBC + 1 difficult RBC, b.png 1 WBC, c.png empty; detections at chosen scores."""
    ground_truth = {"a.png": annotation("a.png", [box("RBC", 0, 0, 10, 10), box("RBC", 20, 20, 30, 30),
                                                  box("RBC", 40, 40, 50, 50, difficult=True)]),
                    "b.png": annotation("b.png", [box("WBC", 0, 0, 40, 40)]),
                    "c.png": annotation("c.png", [])}
    predictions = [detection_of("a.png", "RBC", 0.9, 0, 0, 10, 10), detection_of("a.png", "RBC", 0.8, 20, 20, 30, 30),
                   detection_of("a.png", "RBC", 0.2, 40, 40, 50, 50), detection_of("b.png", "WBC", 0.95, 0, 0, 40, 40),
                   detection_of("b.png", "RBC", 0.4, 60, 60, 70, 70), detection_of("c.png", "WBC", 0.35, 5, 5, 25, 25)]
    return ground_truth, predictions


def test_count_agreement_on_hand_made_detections():
    ground_truth, predictions = count_case()
    agreement = detection.evaluate_detection(ground_truth, predictions, score_threshold=0.3).count_agreement
    assert agreement.classes == ["RBC", "WBC"]
    # the difficult box is not an annotated object; the 0.2 detection is below the threshold
    assert agreement.per_image == {"a.png": {"annotated": {"RBC": 2, "WBC": 0}, "predicted": {"RBC": 2, "WBC": 0}},
                                   "b.png": {"annotated": {"RBC": 0, "WBC": 1}, "predicted": {"RBC": 1, "WBC": 1}},
                                   "c.png": {"annotated": {"RBC": 0, "WBC": 0}, "predicted": {"RBC": 0, "WBC": 1}}}
    rbc, wbc = agreement.per_class["RBC"], agreement.per_class["WBC"]
    assert rbc.mean_absolute_error == pytest.approx(1 / 3) and rbc.bias == pytest.approx(1 / 3)
    assert rbc.mean_relative_error == 0 and rbc.relative_error_images == 1
    assert wbc.mean_absolute_error == pytest.approx(1 / 3) and wbc.pearson_r == pytest.approx(0.5)
    assert agreement.all_classes.predicted_total == 5 and agreement.all_classes.annotated_total == 3
    assert agreement.summed_mean_absolute_error == pytest.approx(2 / 3)
    # thresholds 0.45 ... 0.80 all count perfectly; the tie goes to the one closest to 0.3
    assert agreement.best_score_threshold == 0.45 and agreement.best_summed_mean_absolute_error == 0
    assert agreement.best_threshold_note == "chosen on these QC images (optimistic)"
    scan = dict(zip(agreement.threshold_scan["score_thresholds"],
                    agreement.threshold_scan["summed_mean_absolute_error"]))
    assert scan[0.3] == pytest.approx(2 / 3) and scan[0.8] == 0 and scan[0.85] == pytest.approx(1 / 3)
    assert scan[0.05] == pytest.approx(1.0)  # the 0.2 detection of the difficult cell now counts as an extra
    assert agreement.lowest_prediction_score == 0.2


def test_count_agreement_in_json_and_text_of_the_command(tmp_path):
    ground_truth, predictions = count_case()
    write_ground_truth_folder(tmp_path / "annotations", ground_truth)
    csv_path = prediction_formats.write_predictions_csv(predictions, tmp_path / "predictions.csv")
    arguments = ("detection", "--ground-truth", str(tmp_path / "annotations"), "--predictions", str(csv_path))
    completed = run_command(*arguments, "--json")
    assert completed.returncode == 0, completed.stderr
    counts = json.loads(completed.stdout)["count_agreement"]
    assert counts["score_threshold"] == 0.3 and counts["best_score_threshold"] == 0.45
    assert counts["best_threshold_note"] == "chosen on these QC images (optimistic)"
    assert set(counts["per_class"]["WBC"]) == {
        "images", "annotated_total", "predicted_total", "mean_absolute_error", "mean_relative_error",
        "relative_error_images", "pearson_r", "bias", "sd_difference", "lower_limit_of_agreement",
        "upper_limit_of_agreement"}
    assert counts["per_class"]["RBC"]["pearson_r"] == pytest.approx(math.sqrt(3) / 2)  # a = 2, 0, 0; p = 2, 1, 0
    assert counts["per_image"]["c.png"] == {"annotated": {"RBC": 0, "WBC": 0}, "predicted": {"RBC": 0, "WBC": 1}}
    assert len(counts["threshold_scan"]["score_thresholds"]) == len(counts["threshold_scan"]["summed_mean_absolute_error"])
    # nothing scores >= 0.96, so every predicted count is 0: r undefined -> null in JSON
    strict = json.loads(run_command(*arguments, "--score-threshold", "0.96", "--json").stdout)["count_agreement"]
    assert strict["per_class"]["WBC"]["pearson_r"] is None and strict["per_class"]["RBC"]["mean_relative_error"] == 1
    table = run_command(*arguments)
    assert "Best count agreement at score threshold 0.45" in table.stdout and "Pearson r" in table.stdout


def test_count_plots_are_written_for_edge_cases(tmp_path):
    ground_truth, predictions = count_case()
    single = {"a.png": ground_truth["a.png"]}  # one image: no limits of agreement, no r
    for name, evaluation in (("three", detection.evaluate_detection(ground_truth, predictions)),
                             ("one", detection.evaluate_detection(single, predictions[:3])),
                             ("none", detection.evaluate_detection({"c.png": ground_truth["c.png"]}, []))):
        for plot in (detection.plot_count_scatter, detection.plot_bland_altman, detection.plot_f1_curve,
                     detection.plot_confusion_matrix):
            path = plot(evaluation, tmp_path / f"{name}_{plot.__name__}.png")
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qc_report_pdf_has_the_count_section(tmp_path):
    import pypdf

    from helpers import config as config_module
    from helpers import runs
    from helpers.detection import demo_data
    from helpers.detection import quality, reports
    from helpers.detection.config import DetectionConfig

    data = demo_data.make_detection_demo(tmp_path / "data", number_of_images=5, image_size=(160, 128))
    dataset = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=str(data / "images"),
                                            annotations_dir=str(data / "annotations"), model_path=str(tmp_path / "m"),
                                            model_name="counts")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    ground_truth = {item.image_path.name: dataclasses.replace(item.annotation, filename=item.image_path.name,
                                                              objects=dataset.usable_objects(item))
                    for item in dataset.items}
    rng = np.random.default_rng(0)
    predictions = [detection_of(name, obj.name, rng.uniform(0.05, 1.0), obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                   for name, item in ground_truth.items() for obj in item.objects]
    evaluation = detection.evaluate_detection(ground_truth, predictions, score_threshold=config.score_threshold)
    result = quality.QualityResult(
        run=run, config=config, evaluation=evaluation, source="synthetic test", ground_truth=ground_truth,
        image_paths={item.image_path.name: item.image_path for item in dataset.items}, predictions=predictions,
        output_dir=run.qc / "test")
    result.plots = {"count_scatter": detection.plot_count_scatter(evaluation, result.output_dir / "count_scatter.png"),
                    "count_bland_altman": detection.plot_bland_altman(evaluation,
                                                                      result.output_dir / "count_bland_altman.png")}
    path = reports.qc_report(result)
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages).replace("\n", " ")
    assert "Counts: predicted vs annotated objects per image" in text
    assert "Bland-Altman bias" in text and "95 % limits of agreement" in text and "Pearson r" in text
    best = evaluation.count_agreement.best_score_threshold
    assert f"Best count agreement at score threshold {best:g}" in text
    assert "chosen on these QC images (optimistic)" in text
    for name in ("count_scatter", "count_bland_altman"):
        assert result.plots[name].is_file()


def test_a_dense_field_of_view_is_not_capped_at_cocos_100_detections():
    """150 cells of one class in one image, all found: mAP 1.0 (COCO's cap of 100 would miss 50)."""
    cells = [voc.VocObject("cell", 20.0 * column, 20.0 * row, 20.0 * column + 15, 20.0 * row + 15)
             for row in range(10) for column in range(15)]
    ground_truth = {"field.png": voc.VocAnnotation(filename="field.png", width=300, height=200, depth=3, objects=cells)}
    predictions = [prediction_formats.Detection("field.png", "cell", 0.9 - index * 0.001, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                   for index, obj in enumerate(cells)]
    assert detection.default_max_detections(ground_truth) == 300
    evaluation = detection.evaluate_detection(ground_truth, predictions)
    assert evaluation.thresholds["max_detections"] == 300
    assert evaluation.map50 == pytest.approx(1.0) and evaluation.map50_95 == pytest.approx(1.0)
    capped = detection.evaluate_detection(ground_truth, predictions, max_detections=100)
    assert capped.map50 < 0.7
