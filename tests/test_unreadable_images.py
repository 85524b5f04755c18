"""Every task's data check decodes every image as training will: unreadable ones are listed and left out.

The bad files are the ones a new user meets: a JPEG cut in half (valid header, no pixels), a
zero-byte file, PNG bytes named ``.jpg`` (readable: the decoder goes by the bytes), JPEG bytes
named ``.tif`` (not readable: TIFFs go to tifffile) and a text file named ``.png``.
"""

import csv
import pathlib
import shutil
import zlib

import numpy as np
import pytest

from helpers import errors, images, voc
from helpers import problems as problems_module
from helpers.detection import dataset as detection_dataset
from helpers.detection import demo_data
from helpers.classification import dataset as classification_dataset
from helpers.classification import demo_data as classification_demo
from helpers.grading import dataset as grading_dataset
from helpers.grading import demo_data as grading_demo
from helpers.grading import preprocessing

UNREADABLE = {"truncated.jpg": "JPEG data is truncated", "empty.png": "empty (0 bytes)",
              "jpeg_named.tif": "holds JPEG data but is named .tif", "text.png": "not a PNG, JPEG or BMP image"}
WRONG_EXTENSION = "png_named.jpg"  # readable: listed as information, used


def write_bad_images(folder: pathlib.Path, pixels: np.ndarray) -> list[str]:
    """Write the bad files of the module docstring into ``folder`` from uint8 [H, W, 3] ``pixels``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = images.write_image(folder / "truncated.jpg", pixels).read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (folder / "jpeg_named.tif").write_bytes(jpeg)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("these are my notes, not an image\n", encoding="utf-8")
    png = images.write_image(folder / "scratch.png", pixels[::-1])  # flipped: not a byte copy of a dataset image
    png.rename(folder / WRONG_EXTENSION)
    return sorted(UNREADABLE) + [WRONG_EXTENSION]


def fingerprint(folder: pathlib.Path) -> dict:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_listed(problems: list[problems_module.Problem], prefix: str = "") -> None:
    """One unreadable_image problem per unreadable file (reason in the message, the shared fix), one note."""
    unreadable = {problem.file: problem for problem in problems if problem.kind == problems_module.UNREADABLE_IMAGE}
    assert sorted(unreadable) == sorted(prefix + name for name in UNREADABLE)
    for name, reason in UNREADABLE.items():
        problem = unreadable[prefix + name]
        assert reason in problem.message and "left out" in problem.message and "\n" not in problem.message
        assert problem.fix == problems_module.UNREADABLE_IMAGE_FIX
    assert "renamed to .jpg" in unreadable[prefix + "jpeg_named.tif"].message
    notes = [problem for problem in problems if problem.kind == problems_module.EXTENSION_MISMATCH]
    assert [note.file for note in notes] == [prefix + WRONG_EXTENSION]
    assert "holds PNG data but is named .jpg" in notes[0].message and "png_named.png" in notes[0].fix


def test_the_check_accepts_exactly_what_read_image_decodes(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    names = write_bad_images(tmp_path, pixels)
    compressed = tmp_path / "deflate.tif"  # truncated deflate TIFF: tifffile raises zlib.error, not its own error
    import tifffile

    tifffile.imwrite(compressed, pixels, compression="zlib")
    compressed.write_bytes(compressed.read_bytes()[:-40])
    for name in names + ["deflate.tif"]:
        path = tmp_path / name
        try:
            decoded = images.read_image(path)
        except errors.DatasetError:
            decoded = None
        if decoded is None:
            with pytest.raises(images.ImageReadError):
                images.check_image(path)
        else:
            check = images.check_image(path)
            assert (check.width, check.height) == (decoded.shape[1], decoded.shape[0]) == (56, 40)
    assert images.check_image(tmp_path / WRONG_EXTENSION).content_format == "PNG"
    with pytest.raises(images.ImageReadError, match="truncated") as raised:
        images.read_image(compressed)
    assert isinstance(raised.value.__cause__, zlib.error)


def test_detection_check_lists_unreadable_images_and_records_are_written_for_the_rest(tmp_path):
    from helpers.detection import records  # TensorFlow: only here

    folder = demo_data.make_detection_demo(tmp_path / "demo", number_of_images=3, image_size=(160, 128))
    images_dir, annotations_dir = folder / "images", folder / "annotations"
    template = voc.read_voc(annotations_dir / "synthetic_000.xml")
    names = write_bad_images(images_dir, images.read_image(images_dir / "synthetic_000.png"))
    for name in names:
        annotation = voc.VocAnnotation(name, template.width, template.height, 3, template.objects)
        voc.write_voc(annotation, annotations_dir / f"{pathlib.Path(name).stem}.xml")
    before = fingerprint(folder)
    dataset = detection_dataset.load_detection_dataset(images_dir, annotations_dir, progress=False)
    assert_listed(dataset.problems)
    assert "truncated.xml are left out" in next(p.message for p in dataset.problems if p.file == "truncated.jpg")
    assert [item.stem for item in dataset.items] == ["png_named", "synthetic_000", "synthetic_001", "synthetic_002"]
    assert dataset.statistics()["images"] == 4
    assert "unreadable_image (4)" in dataset.summary_text()
    record_set = records.write_records(dataset.items, dataset.usable_objects, dataset.classes, tmp_path / "records",
                                       "train", progress=False)
    assert record_set.number_of_images == 4
    assert fingerprint(folder) == before  # nothing in the user's folders changed


def test_classification_check_lists_unreadable_images_and_leaves_them_out(tmp_path):
    folder = classification_demo.make_classification_demo(tmp_path / "demo", images_per_class=3, image_size=32)
    first_class = sorted(classification_demo.CLASSIFICATION_CLASSES)[0]
    class_dir = folder / first_class
    write_bad_images(class_dir, images.read_image(sorted(class_dir.iterdir())[0]))
    before = fingerprint(folder)
    dataset = classification_dataset.load_classification_dataset(folder, minimum_images_per_class=2, progress=False)
    assert_listed(dataset.problems, prefix=f"{first_class}/")
    assert dataset.class_counts() == {name: 3 + (name == first_class) for name in dataset.classes}
    assert "unreadable_image (4)" in dataset.summary_text()
    for item in dataset.items:  # what training's loader does with each image
        assert images.read_image(item.path).shape == (item.height, item.width, 3)
    assert fingerprint(folder) == before


def test_grading_check_lists_unreadable_images_and_leaves_them_out(tmp_path):
    images_dir, labels = grading_demo.make_grading_demo(tmp_path / "demo", patients_per_grade=1, num_grades=3,
                                                        image_size=32)
    names = write_bad_images(images_dir, images.read_image(sorted(images_dir.iterdir())[0]))
    own_labels = tmp_path / "grades.csv"
    shutil.copyfile(labels, own_labels)
    with own_labels.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([name, 1, f"P{index + 10}"] for index, name in enumerate(names))
    before = fingerprint(images_dir)
    dataset = grading_dataset.load_grading_dataset(images_dir, own_labels, num_grades=3, group_column="patient_id",
                                                   minimum_images_per_grade=1, progress=False)
    assert_listed(dataset.problems)
    assert len(dataset.items) == 6 + 1 and dataset.class_counts()["1"] == 2 + 1
    assert "unreadable_image (4)" in dataset.summary_text()
    for item in dataset.items:  # grading's training loader
        assert preprocessing.load_preprocessed(item.path, 24, crop=True, normalise=True).shape == (24, 24, 3)
    assert fingerprint(images_dir) == before
