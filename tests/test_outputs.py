"""Prediction files: CSV, VOC and COCO round trips (unicode included), bad CSV rows, drawings."""

import contextlib
import io
import json
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pytest
from pycocotools import coco

from helpers import errors, figures, prediction_formats, voc
from helpers.detection import outputs

DETECTIONS = [
    prediction_formats.Detection("Blutausstrich_ü 1.png", "Erythrozyt", 0.98765, 10.126, 20.5, 110.0, 80.994),
    prediction_formats.Detection("Blutausstrich_ü 1.png", "Thrombozyt, µ \"klein\"", 0.5, 0.0, 0.0, 5.25, 7.5),
    prediction_formats.Detection("細胞.jpg", "白血球", 0.12345, 300.333, 40.0, 420.777, 140.0),
]


def rounded(detection):
    return prediction_formats.Detection(detection.filename, detection.class_name, round(detection.score, 4),
                             *(round(getattr(detection, name), 2) for name in ("xmin", "ymin", "xmax", "ymax")))


def test_csv_round_trip_with_unicode_and_quoting(tmp_path):
    path = prediction_formats.write_predictions_csv(DETECTIONS, tmp_path / "sub" / "predictions.csv")
    text = path.read_bytes().decode("utf-8")
    assert text.splitlines()[0] == ",".join(prediction_formats.PREDICTION_COLUMNS)
    assert "0.9877,10.13,20.50,110.00,80.99" in text  # 4-decimal scores, 2-decimal coordinates
    assert prediction_formats.read_predictions_csv(path) == [rounded(detection) for detection in DETECTIONS]


def test_csv_from_another_tool_bom_extra_and_reordered_columns(tmp_path):
    path = tmp_path / "other.csv"
    path.write_bytes("\ufeffxmin,ymin,xmax,ymax,score,class,filename,model\n"
                     "1,2,3,4,0.5,RBC,a.png,yolo\n\n5.5,6,7,8,0.25,WBC, b.png ,yolo\n".encode("utf-8"))
    assert prediction_formats.read_predictions_csv(path) == [prediction_formats.Detection("a.png", "RBC", 0.5, 1, 2, 3, 4),
                                                  prediction_formats.Detection("b.png", "WBC", 0.25, 5.5, 6, 7, 8)]


@pytest.mark.parametrize("content, expected", [
    ("filename,class,score,xmin,ymin,xmax\na.png,A,0.5,1,2,3\n", r"line 1: missing column\(s\) ymax"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,A,0.5,1,2,3,4\na.png,A,high,1,2,3,4\n", "line 3: column 'score'"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,A,0.5,9,2,3,4\n", "line 2: xmax 3 < xmin 9"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,A,0.5,1,8,3,4\n", "line 2: ymax 4 < ymin 8"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,,0.5,1,2,3,4\n", "line 2: column 'class' is empty"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,A,0.5,1,2,nan,4\n", "line 2: column 'xmax'"),
    ("filename,class,score,xmin,ymin,xmax,ymax\na.png,A,0.5,1,2,3\n", "line 2: column 'ymax' is empty"),
    ("", "missing column"),
])
def test_bad_csv_is_rejected_with_file_and_line(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(errors.DatasetError, match=expected) as caught:
        prediction_formats.read_predictions_csv(path)
    assert str(path) in str(caught.value)


def test_csv_that_is_not_utf8_or_missing(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("filename,class,score,xmin,ymin,xmax,ymax\nä.png,A,0.5,1,2,3,4\n".encode("latin-1"))
    with pytest.raises(errors.DatasetError, match="UTF-8"):
        prediction_formats.read_predictions_csv(path)
    with pytest.raises(errors.DatasetError, match="not found"):
        prediction_formats.read_predictions_csv(tmp_path / "absent.csv")


def test_voc_predictions_round_trip_and_labelimg_layout(tmp_path):
    of_one_image = DETECTIONS[:2]
    path = prediction_formats.write_voc_predictions(of_one_image, "Blutausstrich_ü 1.png", 640, 480, tmp_path / "a.xml")
    annotation = voc.read_voc(path)
    assert (annotation.filename, annotation.width, annotation.height) == ("Blutausstrich_ü 1.png", 640, 480)
    read_back = [prediction_formats.Detection(annotation.filename, obj.name, obj.score, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                 for obj in annotation.objects]
    assert read_back == [rounded(detection) for detection in of_one_image]
    # LabelImg reads size/width, object/name and bndbox/xmin...; int(float(text)) must work on each coordinate.
    root = ElementTree.parse(path).getroot()
    assert root.find("size/width").text == "640"
    first = root.findall("object")[0]
    assert first.find("name").text == "Erythrozyt" and int(float(first.find("bndbox/xmin").text)) == 10


def test_coco_results_round_trip_through_pycocotools(tmp_path):
    image_ids = {"Blutausstrich_ü 1.png": 7, "細胞.jpg": 9}
    category_ids = {"Erythrozyt": 1, "Thrombozyt, µ \"klein\"": 2, "白血球": 3}
    path = prediction_formats.write_coco_results(DETECTIONS, tmp_path / "results.json", image_ids, category_ids)
    results = json.loads(path.read_text(encoding="utf-8"))
    assert results[0] == {"image_id": 7, "category_id": 1, "bbox": [10.126, 20.5, 110.0 - 10.126, 80.994 - 20.5],
                          "score": 0.98765}
    truth = coco.COCO()
    truth.dataset = {"images": [{"id": 7}, {"id": 9}], "annotations": [],
                     "categories": [{"id": identifier, "name": name} for name, identifier in category_ids.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        loaded = truth.loadRes(str(path))
    assert len(loaded.getAnnIds(imgIds=[9])) == 1 and loaded.anns[3]["area"] == pytest.approx(120.444 * 100)
    with pytest.raises(errors.DatasetError, match="Thrombozyt"):
        prediction_formats.write_coco_results(DETECTIONS, tmp_path / "bad.json", image_ids, {"Erythrozyt": 1})


def test_class_colours_are_distinct_and_stable():
    names = [f"class {index}" for index in range(25)]
    colours = figures.class_colours(names)
    assert len(set(colours.values())) == 25
    assert colours == figures.class_colours(names)
    assert figures.class_colours(["A", "B"])["A"] == (31, 119, 180)  # tab10 blue, as the doctor's plots
    assert all(all(0 <= channel <= 255 for channel in colour) for colour in colours.values())


def test_draw_boxes_returns_a_copy_with_coloured_boxes():
    image = np.full((100, 120, 3), 255, dtype=np.uint8)
    boxes = [prediction_formats.Detection("x.png", "Zelle ä", 0.9, 10, 40, 60, 90),
             voc.VocObject("白血球", 70, 50, 110, 95)]  # ground truth: no score
    drawn = outputs.draw_boxes(image, boxes, colours={"Zelle ä": (255, 0, 0)})
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (image == 255).all()  # the input is untouched
    assert tuple(drawn[70, 10]) == (255, 0, 0)  # left edge of the first box, mid-height
    # a class without a colour given gets its colour among the sorted class names drawn
    assert tuple(drawn[80, 110]) == figures.class_colours(["Zelle ä", "白血球"])["白血球"]
    assert (drawn[30:40, 10:40] != 255).any()  # a label above the first box
    gray = outputs.draw_boxes(np.zeros((50, 50), dtype=np.uint8), [])
    assert gray.shape == (50, 50, 3)


def test_save_overlay_and_side_by_side(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    overlay = outputs.save_overlay(image, DETECTIONS[:1], tmp_path / "überlagert.png")
    decoded = cv2.imdecode(np.frombuffer(overlay.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (60, 80, 3)
    assert not np.array_equal(decoded[:, :, ::-1], image)
    panels = outputs.side_by_side(image, DETECTIONS[:1], [voc.VocObject("Erythrozyt", 10, 20, 50, 50)],
                                  tmp_path / "side.png")
    assert panels.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_count_per_image_at_a_threshold_and_counts_csv(tmp_path):
    detections = [prediction_formats.Detection("a.png", "RBC", 0.9, 0, 0, 5, 5), prediction_formats.Detection("a.png", "RBC", 0.3, 0, 0, 5, 5),
                  prediction_formats.Detection("a.png", "RBC", 0.29, 0, 0, 5, 5), prediction_formats.Detection("b.png", "WBC", 0.5, 0, 0, 5, 5),
                  prediction_formats.Detection("b.png", "débris", 0.7, 0, 0, 5, 5), prediction_formats.Detection("b.png", "Zelle", 0.1, 0, 0, 5, 5)]
    counts = prediction_formats.count_per_image(detections, ["b.png", "a.png", "leer.png"], ["WBC", "RBC"], 0.3)
    # the threshold is inclusive; a class outside the list is appended; below-threshold classes add no column
    assert counts == {"b.png": {"WBC": 1, "RBC": 0, "débris": 1}, "a.png": {"WBC": 0, "RBC": 2, "débris": 0},
                      "leer.png": {"WBC": 0, "RBC": 0, "débris": 0}}
    path = prediction_formats.write_counts_csv(counts, tmp_path / "counts.csv", 0.3)
    assert path.read_text(encoding="utf-8").splitlines() == [
        "filename,WBC,RBC,débris,total,score_threshold", "b.png,1,0,1,2,0.3", "a.png,0,2,0,2,0.3",
        "leer.png,0,0,0,0,0.3"]
    empty = prediction_formats.write_counts_csv({}, tmp_path / "empty.csv", 0.5, classes=["RBC"])
    assert empty.read_text(encoding="utf-8").splitlines() == ["filename,RBC,total,score_threshold"]


def test_counts_errors_name_the_image_or_the_clashing_class(tmp_path):
    with pytest.raises(errors.DatasetError, match="fremd.png"):
        prediction_formats.count_per_image([prediction_formats.Detection("fremd.png", "RBC", 0.9, 0, 0, 5, 5)], ["a.png"], ["RBC"], 0.3)
    with pytest.raises(errors.DatasetError, match="total"):
        prediction_formats.write_counts_csv({"a.png": {"total": 1}}, tmp_path / "counts.csv", 0.3)
