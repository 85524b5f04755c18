"""The synthetic demo dataset: deterministic, valid VOC, plainly marked as synthetic."""

import hashlib

import numpy as np
import pytest

from helpers import errors, images, voc
from helpers.detection import demo_data


def digest(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_demo_dataset_is_deterministic_valid_and_marked(tmp_path):
    first = demo_data.make_detection_demo(tmp_path / "a", number_of_images=4, seed=3)
    second = demo_data.make_detection_demo(tmp_path / "b", number_of_images=4, seed=3)
    assert digest(first) == digest(second)
    assert "SYNTHETIC" in (first / "README_SYNTHETIC_DATA.txt").read_text()
    for xml_path in sorted((first / "annotations").glob("*.xml")):
        annotation = voc.read_voc(xml_path)
        pixels = images.read_image(first / "images" / annotation.filename)
        assert pixels.shape == (annotation.height, annotation.width, 3)
        assert {obj.name for obj in annotation.objects} == set(demo_data.DETECTION_CLASSES)
        for obj in annotation.objects:
            assert 0 <= obj.xmin < obj.xmax <= annotation.width and 0 <= obj.ymin < obj.ymax <= annotation.height
            # The box encloses a drawn shape: its inside differs from the plain background.
            inside = pixels[int(obj.ymin):int(obj.ymax), int(obj.xmin):int(obj.xmax)].astype(float)
            assert inside.std() > 10


def test_rerun_is_a_no_op_and_foreign_folder_is_refused(tmp_path):
    folder = demo_data.make_detection_demo(tmp_path / "demo", number_of_images=2)
    before = digest(folder)
    demo_data.make_detection_demo(folder, number_of_images=2)
    assert digest(folder) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("mine")
    with pytest.raises(errors.DatasetError, match="not a demo dataset folder"):
        demo_data.make_detection_demo(tmp_path / "mine")
