"""VOC dataset -> Model Garden TFRecords -> decoded back with Model Garden's own decoder."""

import json
import pathlib

import numpy as np
import pytest

from helpers import images, voc
from helpers.detection import dataset as detection_dataset
from helpers.detection import preprocess, records

CLASSES = ["RBC", "WBC", "Platelets"]
# (image width, height, boxes as (class, xmin, ymin, xmax, ymax) in pixels)
IMAGES = {
    "cells_a": (96, 64, [("RBC", 4.5, 6.0, 30.0, 40.25), ("WBC", 50.0, 10.0, 90.0, 60.0)]),
    "cells_b": (64, 80, [("Platelets", 10.0, 12.0, 20.0, 22.0), ("RBC", 0.0, 0.0, 64.0, 80.0),
                         ("RBC", 33.0, 41.0, 50.0, 70.0)]),
    "empty": (50, 40, []),
}


def _write_dataset(folder: pathlib.Path) -> detection_dataset.DetectionDataset:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for stem, (width, height, boxes) in IMAGES.items():
        images.write_image(folder / "images" / f"{stem}.png", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        objects = [voc.VocObject(name, *box) for name, *box in boxes]
        voc.write_voc(voc.VocAnnotation(f"{stem}.png", width, height, 3, objects), folder / "annotations" / f"{stem}.xml")
    return detection_dataset.load_detection_dataset(folder / "images", folder / "annotations", progress=False)


def test_records_round_trip_matches_the_voc_files(tmp_path):
    dataset = _write_dataset(tmp_path / "data")
    assert [item.stem for item in dataset.items] == sorted(IMAGES)
    record_set = records.write_records(dataset.items, dataset.usable_objects, CLASSES, tmp_path / "records", "train",
                                       progress=False)
    decoded = records.decode_records(record_set.pattern)
    assert [record["filename"] for record in decoded] == [f"{stem}.png" for stem in sorted(IMAGES)]
    for record, item in zip(decoded, dataset.items):
        width, height, boxes = IMAGES[item.stem]
        assert (record["width"], record["height"]) == (width, height)
        np.testing.assert_array_equal(record["image"], images.read_image(item.image_path))  # PNG is lossless
        expected = np.array([box[1:] for box in boxes], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_allclose(record["boxes"], expected, atol=1e-3)
        assert record["class_names"] == [box[0] for box in boxes]
        assert list(record["class_ids"]) == [CLASSES.index(box[0]) + 1 for box in boxes]
    assert decoded[sorted(IMAGES).index("empty")]["boxes"].shape == (0, 4)
    assert record_set.number_of_objects == sum(len(boxes) for _, _, boxes in IMAGES.values())


def test_records_are_reused_when_unchanged_and_rewritten_beside_when_changed(tmp_path):
    dataset = _write_dataset(tmp_path / "data")
    folder = tmp_path / "records"
    first = records.write_records(dataset.items, dataset.usable_objects, CLASSES, folder, "train", progress=False)
    again = records.write_records(dataset.items, dataset.usable_objects, CLASSES, folder, "train", progress=False)
    assert again.reused and again.name == first.name
    changed = records.write_records(dataset.items, dataset.usable_objects, CLASSES + ["Other"], folder, "train",
                                    progress=False)
    assert not changed.reused and changed.name != first.name
    assert all(path.is_file() for path in first.files + changed.files)  # nothing deleted
    manifest = json.loads(changed.manifest_path.read_text(encoding="utf-8"))
    assert manifest["classes"][-1] == "Other"
    assert not list(folder.glob("*.partial"))


def test_background_removal_blanks_the_background_and_keeps_objects():
    image = np.full((60, 80, 3), (235, 228, 230), dtype=np.uint8)  # pale, unsaturated glass
    image[20:40, 30:50] = (150, 40, 120)  # a stained cell
    result = preprocess.remove_background_otsu(image)
    assert (result[0, 0] == preprocess.BACKGROUND_VALUE).all()
    np.testing.assert_array_equal(result[25:35, 35:45], image[25:35, 35:45])
    assert image[0, 0, 0] == 235  # the input is not modified
