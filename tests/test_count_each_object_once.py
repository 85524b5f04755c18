"""Point 9 of issue 23: counts take each object once, and overlay labels do not cover each other.

Fast unit tests on hand-made boxes (no model): the class-agnostic merge behind counts.csv, its
effect reported by QC, and the label placement of ``outputs.draw_boxes``.
"""

import itertools

import numpy as np
import pytest

from helpers import prediction_formats, voc
from helpers.detection import outputs
from helpers.qc import detection


def box(image, name, score, corners):
    return prediction_formats.Detection(image, name, score, *corners)


# One WBC in a.png that the model also called an RBC (IoU 0.81 between the two boxes), one RBC
# nearby (IoU 0 with both), and one RBC in b.png on the same spot as a.png's pair (another image).
DOUBLE_LABELLED = [box("a.png", "WBC", 0.9, (10, 10, 60, 60)), box("a.png", "RBC", 0.6, (12, 12, 57, 57)),
                   box("a.png", "RBC", 0.8, (100, 100, 140, 140)), box("b.png", "RBC", 0.7, (12, 12, 57, 57))]


def test_merge_keeps_the_best_box_of_overlapping_classes_per_image_only():
    kept = prediction_formats.merge_across_classes(DOUBLE_LABELLED, 0.5)
    assert [(row.filename, row.class_name, row.score) for row in kept] == [
        ("a.png", "WBC", 0.9), ("a.png", "RBC", 0.8), ("b.png", "RBC", 0.7)]
    # above the boxes' IoU (0.81) nothing is merged
    assert len(prediction_formats.merge_across_classes(DOUBLE_LABELLED, 0.85)) == 4


def test_counts_count_each_object_once_only_when_asked():
    every_box = prediction_formats.count_per_image(DOUBLE_LABELLED, ["a.png", "b.png"], ["RBC", "WBC"], 0.3)
    once = prediction_formats.count_per_image(DOUBLE_LABELLED, ["a.png", "b.png"], ["RBC", "WBC"], 0.3, merge_iou=0.5)
    assert every_box["a.png"] == {"RBC": 2, "WBC": 1} and once["a.png"] == {"RBC": 1, "WBC": 1}
    assert every_box["b.png"] == once["b.png"] == {"RBC": 1, "WBC": 0}
    assert "counted once" in prediction_formats.count_rule(0.3, 0.5) and "each counted" in prediction_formats.count_rule(0.3, None)


def test_qc_reports_count_errors_with_and_without_the_merge():
    ground_truth = {"a.png": voc.VocAnnotation("a.png", 200, 200, 3, [voc.VocObject("WBC", 10, 10, 60, 60),
                                                                   voc.VocObject("RBC", 100, 100, 140, 140)]),
                    "b.png": voc.VocAnnotation("b.png", 200, 200, 3, [voc.VocObject("RBC", 12, 12, 57, 57)])}
    evaluation = detection.evaluate_detection(ground_truth, DOUBLE_LABELLED, score_threshold=0.3)
    counts = evaluation.count_agreement
    assert counts.merge_iou == prediction_formats.COUNT_MERGE_IOU
    assert counts.each_object_once == {"iou_threshold": 0.5, "total_mae_without_merge": 0.5,
                                       "total_mae_with_merge": 0.0, "summed_class_mae_without_merge": 0.5,
                                       "summed_class_mae_with_merge": 0.0, "boxes_merged": 1}
    assert counts.summed_mean_absolute_error == 0.0  # counts as counts.csv writes them: each object once
    every_box = detection.evaluate_detection(ground_truth, DOUBLE_LABELLED, score_threshold=0.3,
                                             count_merge_iou=None).count_agreement
    assert every_box.summed_mean_absolute_error == 0.5 and every_box.each_object_once == counts.each_object_once
    sentence = detection.count_summary_lines(counts)[-1]
    assert "removes 1 of the counted boxes" in sentence and "0.500 without, 0.000 with" in sentence
    assert evaluation.to_json_dict()["count_agreement"]["each_object_once"]["boxes_merged"] == 1


def test_labels_of_boxes_at_one_corner_do_not_overlap_and_stay_in_the_image():
    boxes = [(50, 50, 150, 150), (52, 51, 140, 160), (55, 48, 120, 120), (300, 10, 390, 90), (-5, 0, 40, 30)]
    sizes = [(60, 14), (70, 14), (50, 14), (400, 14), (30, 14)]
    places = outputs.place_labels(boxes, sizes, image_width=400, image_height=200)
    for first, second in itertools.combinations(places, 2):
        assert not outputs._rectangles_overlap(first, second), (first, second)
    for (left, top, right, bottom), (width, height) in zip(places, sizes):
        assert 0 <= left and right <= 400 and 0 <= top and bottom <= 200 and (right - left, bottom - top) == (width, height)
    assert places[0] == (50, 36, 110, 50)  # the first label sits just above its box
    assert places[1][1] == 51 and places[2][1] == 76  # the next ones move down in label steps, into their boxes


def test_a_label_with_no_free_place_takes_the_least_covered_one():
    places = outputs.place_labels([(0, 20, 100, 34), (0, 20, 100, 34)], [(50, 14), (50, 14)], 100, 100)
    assert places[0] == (0, 6, 50, 20) and places[1] == (0, 20, 50, 34)
    crowded = outputs.place_labels([(0, 0, 50, 14)] * 3, [(50, 14)] * 3, 50, 14)
    assert crowded == [(0, 0, 50, 14)] * 3  # nowhere else to go: drawn, never lost


def test_overlay_draws_every_label_without_error():
    image = np.zeros((120, 160, 3), np.uint8)
    drawn = outputs.draw_boxes(image, DOUBLE_LABELLED[:3])
    assert drawn.shape == image.shape and drawn.any() and not image.any()
