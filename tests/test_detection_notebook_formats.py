"""The detection notebook end to end with JSON annotations: COCO for training, BBBC041 for the test images.

One papermill execution (quick preset) on generated synthetic data, its VOC boxes rewritten as a
COCO file (training, with one ``iscrowd`` region) and a BBBC041 file (test, with one
``difficult`` cell), both written beside the images, never into the repository. Checks that both
formats were detected and stated in the notebook's output, that training and QC ran (both
reports, the test images scored, the crowd regions not trained on and scored as crowd regions)
and that the QC command reads the BBBC041 file too.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from helpers import demo, voc
from helpers.detection import demo_data
from tests.conftest import REPOSITORY_ROOT

pytestmark = pytest.mark.slow

TRAINING_IMAGES, TEST_IMAGES = 14, 4


def _voc_annotations(folder: pathlib.Path) -> list[voc.VocAnnotation]:
    return [voc.read_voc(path) for path in sorted((folder / "annotations").glob("*.xml"))]


def write_coco(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """The demo's VOC boxes as COCO JSON (ids as a CVAT export numbers them) plus one crowd region."""
    annotations = _voc_annotations(folder)
    names = sorted({obj.name for annotation in annotations for obj in annotation.objects})
    category_ids = {name: index + 1 for index, name in enumerate(names)}
    images, boxes = [], []
    for image_id, annotation in enumerate(annotations, start=1):
        images.append({"id": image_id, "file_name": annotation.filename, "width": annotation.width,
                       "height": annotation.height})
        for obj in annotation.objects:
            boxes.append({"id": len(boxes) + 1, "image_id": image_id, "category_id": category_ids[obj.name],
                          "bbox": voc.coco_box(obj), "area": (obj.xmax - obj.xmin) * (obj.ymax - obj.ymin),
                          "iscrowd": 0, "segmentation": []})
    boxes.append({"id": len(boxes) + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "area": 900,
                  "iscrowd": 1, "segmentation": {"counts": [0, 900], "size": [30, 30]}})
    data = {"info": {"description": "synthetic demo data"}, "licenses": [], "images": images, "annotations": boxes,
            "categories": [{"id": category_ids[name], "name": name, "supercategory": ""} for name in names]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_bbbc041(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """The demo's VOC boxes in BBBC041's layout (r = row, c = column) plus one 'difficult' cell."""
    entries = []
    for annotation in _voc_annotations(folder):
        objects = [{"bounding_box": {"minimum": {"r": obj.ymin, "c": obj.xmin}, "maximum": {"r": obj.ymax, "c": obj.xmax}},
                    "category": obj.name} for obj in annotation.objects]
        entries.append({"image": {"checksum": "", "pathname": f"/images/{annotation.filename}",
                                  "shape": {"r": annotation.height, "c": annotation.width, "channels": 3}},
                        "objects": objects})
    entries[0]["objects"].append({"bounding_box": {"minimum": {"r": 0, "c": 0}, "maximum": {"r": 30, "c": 30}},
                                  "category": "difficult"})
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("detection_notebook_formats")
    train = demo_data.make_detection_demo(tmp_path / "train", number_of_images=TRAINING_IMAGES)
    test = demo_data.make_detection_demo(tmp_path / "test", number_of_images=TEST_IMAGES, seed=1)
    coco = write_coco(train, tmp_path / "train_coco.json")
    bbbc041 = write_bbbc041(test, tmp_path / "test_bbbc041.json")
    parameters = demo.detection_parameters(train, tmp_path / "models", model_name="formats_run",
                                           test_images=str(test / "images"), test_annotations=str(bbbc041),
                                           Training_annotations=str(coco))
    notebook = demo.execute_notebook(demo.DETECTION_NOTEBOOK, tmp_path / "executed.ipynb", parameters)
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(output.get("text", "")) for cell in cells for output in cell.get("outputs", []))
    return {"run": tmp_path / "models" / "formats_run", "output": text, "test": test, "bbbc041": bbbc041,
            "classes": sorted(demo_data.DETECTION_CLASSES)}


def test_both_formats_were_detected_and_stated(executed):
    assert f"Annotations: COCO JSON, {TRAINING_IMAGES} images, 3 categories (train_coco.json)." in executed["output"]
    assert f"Test_annotations: BBBC041 JSON, {TEST_IMAGES} images, 3 categories (test_bbbc041.json)." \
        in executed["output"]


def test_training_from_coco_left_the_crowd_region_out(executed):
    run = executed["run"]
    assert (run / "training_report.pdf").is_file() and (run / "exported_model" / "saved_model.pb").is_file()
    assert json.loads((run / "label_map.json").read_text(encoding="utf-8"))["classes"] == executed["classes"]
    problems = json.loads((run / "dataset_problems.json").read_text(encoding="utf-8"))
    assert [row["kind"] for row in problems] == ["crowd_region"]
    assert problems[0]["file"] == "train_coco.json [synthetic_000.png]"
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    assert len(split["train"]) + len(split["validation"]) == TRAINING_IMAGES


def test_qc_scored_the_bbbc041_test_images(executed):
    run = executed["run"]
    assert (run / "qc_report.pdf").is_file()
    metrics = json.loads((sorted((run / "qc").glob("*/metrics.json"))[-1]).read_text(encoding="utf-8"))
    assert metrics["number_of_images"] == TEST_IMAGES
    assert sorted(metrics["count_agreement"]["per_image"]) == [f"synthetic_{index:03d}.png" for index in range(TEST_IMAGES)]
    # The 'difficult' cell is a crowd region of every class: one difficult box per class, no class of its own.
    assert sorted(metrics["per_class"]) == executed["classes"]
    assert all(row["difficult_boxes"] == 1 for row in metrics["per_class"].values())


def test_qc_command_reads_the_bbbc041_file(executed):
    predictions = sorted((executed["run"] / "predictions").iterdir())[-1] / "predictions.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "helpers.qc", "detection", "--ground-truth", str(executed["bbbc041"]),
         "--predictions", str(predictions), "--json"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True)
    metrics = json.loads(completed.stdout)
    assert metrics["number_of_images"] == TEST_IMAGES and 0.0 <= metrics["map50"] <= 1.0
