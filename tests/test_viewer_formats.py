"""QuPath, Fiji, napari and Label Studio files, each read back with the tool's own library or its
documented layout and compared box by box with predictions.csv (non-ASCII class names included)."""

import json
import math
import pathlib
import urllib.parse
import xml.etree.ElementTree as ElementTree

import pytest
import roifile

from helpers import figures, prediction_formats, viewer_formats

Detection = prediction_formats.Detection
CLASSES = ["白血球", "RBC", 'Thrombozyt, µ "klein"']
DETECTIONS = [
    Detection("Blutausstrich 1.png", "白血球", 0.98765, 10.126, 20.5, 110.0, 80.994),
    Detection("Blutausstrich 1.png", "RBC", 0.5, 0.0, 0.0, 5.25, 7.5),
    Detection("Blutausstrich 1.png", "RBC", 0.5, 0.0, 0.0, 5.25, 7.5),  # a duplicate still gets its own ROI name
    Detection("細胞&#1+2%.jpg", 'Thrombozyt, µ "klein"', 0.12345, 300.333, 40.0, 641.25, 140.0),
    Detection("細胞&#1+2%.jpg", "Fremd/klasse", 0.4, 1.0, 2.0, 3.0, 4.0),  # a class the model does not list
]
SIZES = {"Blutausstrich 1.png": (200, 100), "細胞&#1+2%.jpg": (640, 480), "empty.tif": (32, 16)}


@pytest.fixture
def written(tmp_path):
    """predictions.csv read back (the reference) and the viewer files of the same boxes."""
    csv_path = prediction_formats.write_predictions_csv(DETECTIONS, tmp_path / "predictions.csv")
    files = viewer_formats.write_viewer_formats(DETECTIONS, SIZES, tmp_path, CLASSES, "run_1", "neue Bilder")
    return viewer_formats.by_image(prediction_formats.read_predictions_csv(csv_path)), files


def box(detection):
    return (detection.xmin, detection.ymin, detection.xmax, detection.ymax)


def test_only_images_with_boxes_get_per_image_files(written, tmp_path):
    reference, files = written
    for per_image in (files.qupath, files.imagej, files.napari):
        assert list(per_image) == list(reference) == ["Blutausstrich 1.png", "細胞&#1+2%.jpg"]
    assert files.qupath["細胞&#1+2%.jpg"] == tmp_path / "qupath" / "細胞&#1+2%.geojson"
    assert files.imagej["Blutausstrich 1.png"] == tmp_path / "imagej_rois" / "Blutausstrich 1.zip"
    assert files.napari["Blutausstrich 1.png"] == tmp_path / "napari" / "Blutausstrich 1_shapes.csv"
    assert "QuPath: qupath/ (2 .geojson)" in files.summary()


def signed_area(ring):
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:])) / 2


def test_qupath_geojson_is_a_feature_collection_of_detections(written):
    reference, files = written
    colours = figures.class_colours([*CLASSES, "Fremd/klasse"])
    for image, expected in reference.items():
        collection = json.loads(files.qupath[image].read_text(encoding="utf-8"))
        assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(expected)
        for feature, detection in zip(collection["features"], expected):
            assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
            [ring] = feature["geometry"]["coordinates"]
            assert len(ring) == 5 and ring[0] == ring[-1]  # closed linear ring (RFC 7946 3.1.6)
            assert all(isinstance(value, float) and math.isfinite(value) for point in ring for value in point)
            assert signed_area(ring) > 0  # exterior ring counter-clockwise (right-hand rule)
            xs, ys = [x for x, _ in ring], [y for _, y in ring]
            assert (min(xs), min(ys), max(xs), max(ys)) == box(detection)
            properties = feature["properties"]
            assert properties["objectType"] == "detection"
            assert properties["classification"] == {"name": detection.class_name,
                                                    "color": list(colours[detection.class_name])}
            assert properties["measurements"] == {"score": detection.score}


def test_imagej_roi_set_read_back_with_roifile(written):
    reference, files = written
    colours = figures.class_colours([*CLASSES, "Fremd/klasse"])
    for image, expected in reference.items():
        rois = roifile.roiread(files.imagej[image])
        assert len(rois) == len(expected)
        assert len({roi.name for roi in rois}) == len(rois)
        for number, (roi, detection) in enumerate(zip(rois, expected), start=1):
            assert roi.name == f"{detection.class_name} {detection.score:.2f} #{number}"
            assert roi.roitype == roifile.ROI_TYPE.RECT and roi.subpixelrect
            corners = roi.coordinates()
            bounds = (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max())
            assert bounds == pytest.approx(box(detection), abs=1e-3)  # float32 in the file
            assert roi.hexcolor(roi.stroke_color) == "#{:02x}{:02x}{:02x}".format(*colours[detection.class_name])
    assert rois[1].name == "Fremd/klasse 0.40 #2"  # the ROI keeps its name; only the zip entry avoids the '/'


def read_napari_features(path):
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == viewer_formats.NAPARI_COLUMNS
    return {int(row["index"]): (row["class"], float(row["score"])) for row in rows}


def test_napari_shapes_csv_opens_with_napari_builtin_reader(written):
    napari_io = pytest.importorskip("napari_builtins.io", reason="napari is in the test extra (pip install -e .[test])")
    reference, files = written
    for image, expected in reference.items():
        path = str(files.napari[image])
        reader = napari_io.napari_get_reader(path)  # what napari calls for a file dropped on it
        [(shapes, metadata, layer_type)] = reader(path)
        assert layer_type == "shapes" and list(metadata["shape_type"]) == ["rectangle"] * len(expected)
        features = read_napari_features(files.napari[image])
        for index, (vertices, detection) in enumerate(zip(shapes, expected)):
            assert vertices.shape == (4, 2)
            rows, columns = vertices[:, 0] + 0.5, vertices[:, 1] + 0.5  # napari centres pixels on whole coordinates
            assert (columns.min(), rows.min(), columns.max(), rows.max()) == pytest.approx(box(detection), abs=1e-9)
            assert features[index] == (detection.class_name, detection.score)


def test_label_studio_tasks_follow_the_documented_layout(written):
    reference, files = written
    tasks = json.loads(files.label_studio_tasks.read_text(encoding="utf-8"))
    assert isinstance(tasks, list) and len(tasks) == len(SIZES)
    for task, (image, (width, height)) in zip(tasks, SIZES.items()):
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=")
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query) == {"d": [f"neue Bilder/{image}"]}
        expected = reference.get(image, [])
        if not expected:
            assert "predictions" not in task
            continue
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "run_1"
        assert prediction["score"] == pytest.approx(sum(row.score for row in expected) / len(expected), abs=1e-4)
        assert len(prediction["result"]) == len(expected)
        for result, detection in zip(prediction["result"], expected):
            assert (result["from_name"], result["to_name"], result["type"]) == ("label", "image", "rectanglelabels")
            assert (result["original_width"], result["original_height"], result["image_rotation"]) == (width, height, 0)
            value = result["value"]
            assert value["rotation"] == 0 and value["rectanglelabels"] == [detection.class_name]
            assert result["score"] == detection.score
            assert all(0 <= value[key] <= 100 for key in ("x", "y", "width", "height"))
            back = (value["x"] * width / 100, value["y"] * height / 100, (value["x"] + value["width"]) * width / 100,
                    (value["y"] + value["height"]) * height / 100)
            clipped = (detection.xmin, detection.ymin, min(detection.xmax, width), min(detection.ymax, height))
            assert back == pytest.approx(clipped, abs=1e-9)
    ids = [result["id"] for task in tasks for result in task.get("predictions", [{"result": []}])[0]["result"]]
    assert len(set(ids)) == len(ids) == len(DETECTIONS)


def test_label_studio_sdk_accepts_every_prediction_against_the_config(written):
    sdk = pytest.importorskip("label_studio_sdk.label_interface",
                              reason="label-studio-sdk is in the test extra (pip install -e .[test])")
    _, files = written
    interface = sdk.LabelInterface(files.label_studio_config.read_text(encoding="utf-8"))
    assert interface.get_control("label").labels == [*CLASSES, "Fremd/klasse"]
    predictions = [prediction for task in json.loads(files.label_studio_tasks.read_text(encoding="utf-8"))
                   for prediction in task.get("predictions", [])]
    assert len(predictions) == 2 and all(interface.validate_prediction(prediction) for prediction in predictions)
    region = predictions[0]["result"][0]
    unknown_class = dict(region, value=dict(region["value"], rectanglelabels=["Neutrophil"]))
    assert not interface.validate_prediction({"result": [unknown_class]})  # the check can fail


def test_label_studio_config_names_the_controls_and_every_class(written):
    _, files = written
    view = ElementTree.fromstring(files.label_studio_config.read_text(encoding="utf-8"))
    image = view.find("Image")
    labels = view.find("RectangleLabels")
    assert view.tag == "View" and image.get("name") == "image" and image.get("value") == "$image"
    assert labels.get("name") == "label" and labels.get("toName") == "image"
    assert [label.get("value") for label in labels.findall("Label")] == [*CLASSES, "Fremd/klasse"]
    assert all(label.get("background").startswith("#") for label in labels.findall("Label"))


def test_file_stems_keep_the_extension_only_when_stems_collide():
    assert viewer_formats.file_stems(["a.png", "a.tif", "b.png", "a.png"]) == {"a.png": "a.png", "a.tif": "a.tif",
                                                                             "b.png": "b"}


def test_local_files_url_is_percent_encoded_as_label_studio_writes_it():
    url = viewer_formats.local_files_url("/Bilder/", "x y&z #1+2%.png")
    assert url == "/data/local-files/?d=Bilder/x%20y%26z%20%231%2B2%25.png"
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["d"] == ["Bilder/x y&z #1+2%.png"]
    assert viewer_formats.local_files_url("", "細胞.png") == "/data/local-files/?d=%E7%B4%B0%E8%83%9E.png"


# ---------------------------------------------------------------- wiring: section 6 and the annotation loop


class FakeDetector:
    """Stands in for ``export.load_exported_model``'s detector: two boxes per image, one under the threshold."""

    score_threshold = 0.3
    class_names = ["白血球", "RBC"]
    pixel_scale = None
    nms_iou_threshold = 0.5
    image_size = 64
    folder = "fake_exported_model"

    def detect(self, pixels, score_threshold, filename, object_size_ratio):
        return [Detection(filename, "白血球", 0.9, 1.5, 2.0, 30.0, 40.25), Detection(filename, "RBC", 0.1, 5, 5, 9, 9)]


@pytest.fixture
def predicted(tmp_path, monkeypatch):
    """``predict_folder`` run on two small images with ``FakeDetector`` (no TensorFlow)."""
    import sys
    import types

    import numpy as np

    import helpers.detection
    from helpers import images
    from helpers.detection import predict

    fake_export = types.SimpleNamespace(load_exported_model=lambda folder: FakeDetector())
    monkeypatch.setitem(sys.modules, "helpers.detection.export", fake_export)
    monkeypatch.setattr(helpers.detection, "export", fake_export, raising=False)
    source = tmp_path / "neue Bilder"
    for name, shape in (("a.png", (48, 64, 3)), ("b.png", (32, 40, 3))):
        images.write_image(source / name, np.full(shape, 100, np.uint8))
    return predict.predict_folder(tmp_path / "run_7", source, tmp_path / "results", progress=False)


def test_section_6_writes_the_viewer_formats_of_the_boxes_it_keeps(predicted, capsys, monkeypatch):
    from helpers import display

    reference = viewer_formats.by_image(prediction_formats.read_predictions_csv(predicted.csv_path))
    assert [row.score for rows in reference.values() for row in rows] == [0.9, 0.9]
    files = predicted.viewer_files
    for image, expected in reference.items():
        [feature] = json.loads(files.qupath[image].read_text(encoding="utf-8"))["features"]
        assert feature["properties"]["classification"]["name"] == "白血球"
        assert feature["geometry"]["coordinates"][0][2] == [expected[0].xmax, expected[0].ymax]
        assert [roi.name for roi in roifile.roiread(files.imagej[image])] == ["白血球 0.90 #1"]
        assert read_napari_features(files.napari[image]) == {0: ("白血球", 0.9)}
    tasks = json.loads(files.label_studio_tasks.read_text(encoding="utf-8"))
    assert [task["data"]["image"] for task in tasks] == ["/data/local-files/?d=neue%20Bilder/a.png",
                                                         "/data/local-files/?d=neue%20Bilder/b.png"]
    assert {task["predictions"][0]["model_version"] for task in tasks} == {"run_7"}
    assert tasks[1]["predictions"][0]["result"][0]["original_width"] == 40
    monkeypatch.setattr(display, "show_image", lambda path: None)
    predicted.show()
    assert "For other tools: QuPath: qupath/ (2 .geojson)" in capsys.readouterr().out


def test_the_annotation_loop_writes_label_studio_tasks_for_the_top_images(predicted, capsys, monkeypatch):
    from helpers import display
    from helpers.detection import annotation_loop

    queue = annotation_loop.queue_for_annotation(predicted, number_to_annotate=1)
    [task] = json.loads(queue.label_studio_tasks.read_text(encoding="utf-8"))
    top = queue.ranking[0].image
    assert task["data"]["image"] == f"/data/local-files/?d=neue%20Bilder/{top}"
    [region] = task["predictions"][0]["result"]  # the box at the threshold, like the VOC pre-annotation
    assert region["value"]["rectanglelabels"] == ["白血球"] and region["score"] == 0.9
    assert queue.label_studio_config == predicted.output_dir / "label_studio_config.xml"
    monkeypatch.setattr(display, "show_image", lambda path: None)
    queue.show()
    printed = capsys.readouterr().out
    assert all(word in printed for word in ("LabelImg", "CVAT", "Label Studio", "continue_from",
                                            str(queue.label_studio_tasks)))


def test_qc_command_writes_the_viewer_formats_of_the_predictions_it_reads(tmp_path, capsys):
    from helpers import voc
    from helpers.qc import __main__ as qc_main

    ground_truth, images_dir = tmp_path / "annotations", tmp_path / "Bilder"
    images_dir.mkdir()
    for name, (width, height) in (("a.png", (200, 100)), ("b.png", (64, 48))):
        objects = [voc.VocObject(name="白血球", xmin=10, ymin=20, xmax=110, ymax=81)]
        voc.write_voc(voc.VocAnnotation(filename=name, width=width, height=height, depth=3, objects=objects),
                      ground_truth / f"{pathlib.PurePath(name).stem}.xml")
    csv_path = prediction_formats.write_predictions_csv(
        [Detection("a.png", "白血球", 0.9, 10.0, 20.0, 110.0, 80.0), Detection("a.png", "白血球", 0.1, 1, 1, 5, 5)],
        tmp_path / "other_tool.csv")
    arguments = ["detection", "--ground-truth", str(ground_truth), "--predictions", str(csv_path),
                 "--images", str(images_dir), "--viewer-formats", str(tmp_path / "viewers"), "--json"]
    assert qc_main.main(arguments) == 0
    json.loads(capsys.readouterr().out)  # stdout still holds the one JSON object
    [roi] = roifile.roiread(tmp_path / "viewers" / "imagej_rois" / "a.zip")  # the 0.1 box is under --score-threshold
    assert roi.name == "白血球 0.90 #1"
    tasks = json.loads((tmp_path / "viewers" / "label_studio_tasks.json").read_text(encoding="utf-8"))
    assert [task["data"]["image"] for task in tasks] == ["/data/local-files/?d=Bilder/a.png",
                                                         "/data/local-files/?d=Bilder/b.png"]
    assert tasks[0]["predictions"][0]["model_version"] == "other_tool"
    assert not (tmp_path / "viewers" / "qupath" / "b.geojson").exists()
    assert qc_main.main(arguments) == 2  # the folder is not empty now: nothing is overwritten
    assert "--viewer-formats" in capsys.readouterr().err
