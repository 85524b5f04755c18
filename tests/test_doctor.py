"""helpers.detection.dataset (the detection doctor): every problem listed with a fix, the box policy, statistics, plots, untouched inputs."""

import hashlib
import pathlib

import numpy as np
import pytest

from helpers import errors, images, voc
from helpers.detection import dataset as detection_dataset

WIDTH, HEIGHT = 64, 48


def _image(folder, name, width=WIDTH, height=HEIGHT, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return images.write_image(folder / name, pixels)


def _xml(folder, name, objects, width=WIDTH, height=HEIGHT, filename=None):
    annotation = voc.VocAnnotation(filename or name.rsplit(".", 1)[0] + ".png", width, height, 3,
                                   [voc.VocObject(*obj) for obj in objects])
    return voc.write_voc(annotation, folder / name)


def _folders(tmp_path):
    images_dir, annotations_dir = tmp_path / "images", tmp_path / "annotations"
    images_dir.mkdir()
    annotations_dir.mkdir()
    return images_dir, annotations_dir


@pytest.fixture
def messy(tmp_path):
    """One synthetic dataset with every kind of problem (see the comments)."""
    images_dir, annotations_dir = _folders(tmp_path)
    for stem in "abcdejkmn":
        _image(images_dir, f"{stem}.png")
    # a: clean; boxes touching the border (xmax == width) are inside.
    _xml(annotations_dir, "a.xml", [("RBC", 0, 0, 64, 48), ("WBC", 10, 10, 20, 20)])
    # b: zero-area and negative-area boxes.
    _xml(annotations_dir, "b.xml", [("RBC", 5, 5, 5, 9), ("RBC", 9, 9, 4, 12), ("RBC", 1, 1, 9, 9)])
    # c: one box reaching outside (clipped), one entirely outside (dropped).
    _xml(annotations_dir, "c.xml", [("RBC", -4, 10, 20, 52), ("RBC", 70, 10, 80, 20), ("WBC", 1, 1, 5, 5)])
    # d: a near-duplicate pair (IoU 0.82), a same-class pair at IoU 0.6 and a different-class overlap.
    _xml(annotations_dir, "d.xml", [("RBC", 0, 0, 20, 20), ("RBC", 1, 1, 21, 21), ("RBC", 30, 0, 50, 20),
                                    ("RBC", 34, 0, 54, 20), ("WBC", 0, 0, 20, 20)])
    _xml(annotations_dir, "e.xml", [])  # e: a background image
    _image(images_dir, "f.png")  # f: no annotation
    _xml(annotations_dir, "g.xml", [("RBC", 1, 1, 9, 9)])  # g: no image
    (images_dir / "h.png").write_bytes(b"not a png")  # h: unreadable image
    _xml(annotations_dir, "h.xml", [("RBC", 1, 1, 9, 9)])
    _image(images_dir, "i.png")  # i: malformed XML
    (annotations_dir / "i.xml").write_text("<annotation><object>", encoding="utf-8")
    _xml(annotations_dir, "j.xml", [("RBC", 1, 1, 9, 9)], width=128, height=96)  # j: <size> != pixels
    _xml(annotations_dir, "k.xml", [("rbc ", 1, 1, 9, 9), ("RBC", 20, 20, 30, 30)])  # k: class name variant
    _image(images_dir, "l.png")  # l: two images with one stem
    _image(images_dir, "l.jpg")
    _xml(annotations_dir, "l.xml", [("RBC", 1, 1, 9, 9)])
    _xml(annotations_dir, "m.xml", [("WBC", 1, 1, 9, 9)], filename="a.png")  # m: <filename> names another image
    _xml(annotations_dir, "n.xml", [("RBC", 1, 1, 9, 9)], filename="gone.png")  # n: <filename> names nothing: fine
    return images_dir, annotations_dir


def _of_kind(dataset, kind):
    return [problem for problem in dataset.problems if problem.kind == kind]


def test_every_problem_kind_is_listed_with_a_fix(messy):
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    assert dataset.problem_counts() == {
        "image_without_annotation": 1, "annotation_without_image": 1, "duplicate_stem": 1, "unreadable_image": 1,
        "unreadable_annotation": 1, "size_mismatch": 1, "filename_mismatch": 2, "zero_area_box": 2,
        "box_outside_image": 2, "near_duplicate_box": 1, "class_name_variant": 1, "empty_annotation": 1}
    assert [item.stem for item in dataset.items] == ["a", "b", "c", "d", "e", "k", "l", "m", "n"]
    assert set(detection_dataset.PROBLEM_KINDS) >= set(dataset.problem_counts())
    for problem in dataset.problems:
        assert problem.message and problem.fix.endswith(".") and len(problem.fix) > 20
        assert "/" not in problem.file  # relative to the folder the user gave
    assert [(p.file, p.object_index) for p in _of_kind(dataset, "zero_area_box")] == [("b.xml", 0), ("b.xml", 1)]
    assert "negative area" in _of_kind(dataset, "zero_area_box")[1].message
    assert _of_kind(dataset, "image_without_annotation")[0].file == "f.png"
    assert _of_kind(dataset, "annotation_without_image")[0].file == "g.xml"
    assert _of_kind(dataset, "duplicate_stem")[0].file == "l.png"  # l.jpg (first by name) is used
    assert next(item for item in dataset.items if item.stem == "l").image_path.name == "l.jpg"
    assert _of_kind(dataset, "unreadable_image")[0].file == "h.png"
    assert "i.xml" in _of_kind(dataset, "unreadable_annotation")[0].message
    assert "128 x 96" in _of_kind(dataset, "size_mismatch")[0].message
    # l.xml names l.png, which exists but is not the image used; m.xml names a.png.
    assert [p.file for p in _of_kind(dataset, "filename_mismatch")] == ["l.xml", "m.xml"]
    assert _of_kind(dataset, "empty_annotation")[0].file == "e.xml"
    variant = _of_kind(dataset, "class_name_variant")[0]
    assert variant.file == "k.xml" and "'rbc '" in variant.message and "'RBC'" in variant.fix


def test_box_policy_clip_drop_and_keep(messy):
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    by_stem = {item.stem: item for item in dataset.items}
    assert [obj.name for obj in dataset.usable_objects(by_stem["b"])] == ["RBC"]
    clipped = dataset.usable_objects(by_stem["c"])
    assert [(obj.xmin, obj.ymin, obj.xmax, obj.ymax) for obj in clipped] == [(0, 10, 20, 48), (1, 1, 5, 5)]
    assert [p.object_index for p in _of_kind(dataset, "box_outside_image")] == [0, 1]
    assert "clipped" in _of_kind(dataset, "box_outside_image")[0].message
    assert "entirely outside" in _of_kind(dataset, "box_outside_image")[1].message
    assert by_stem["c"].annotation.objects[0].xmin == -4  # the annotation itself is not altered
    assert len(dataset.usable_objects(by_stem["d"])) == 5  # near-duplicates are kept
    duplicate = _of_kind(dataset, "near_duplicate_box")[0]
    assert (duplicate.file, duplicate.object_index) == ("d.xml", 1) and "IoU 0.82" in duplicate.message
    assert dataset.usable_objects(by_stem["a"]) == by_stem["a"].annotation.objects
    assert dataset.classes == ["RBC", "WBC", "rbc "]


def test_clip_boxes_false_drops_and_lists(messy):
    dataset = detection_dataset.load_detection_dataset(*messy, clip_boxes=False, progress=False)
    item = next(item for item in dataset.items if item.stem == "c")
    assert [obj.name for obj in dataset.usable_objects(item)] == ["WBC"]
    outside = _of_kind(dataset, "box_outside_image")
    assert len(outside) == 2 and all("clip_boxes=False" in p.message for p in outside)


def test_usable_objects_of_an_item_from_elsewhere_applies_the_policy(messy):
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    annotation = voc.VocAnnotation("x.png", 10, 10, 3, [voc.VocObject("RBC", 2, 2, 2, 5), voc.VocObject("RBC", 5, 5, 15, 8)])
    item = detection_dataset.DatasetItem("a", pathlib.Path("x.png"), pathlib.Path("x.xml"), annotation)  # same stem, other item
    assert dataset.usable_objects(item) == [voc.VocObject("RBC", 5, 5, 10, 8)]


def test_statistics_of_a_clean_dataset(tmp_path):
    images_dir, annotations_dir = _folders(tmp_path)
    boxes = {"x1": [("A", 0, 0, 10, 20), ("A", 5, 30, 9, 40), ("B", 20, 20, 50, 30)],
             "x2": [("A", 0, 0, 6, 6)],
             "x3": []}
    for stem, objects in boxes.items():
        _image(images_dir, f"{stem}.png")
        _xml(annotations_dir, f"{stem}.xml", objects)
    dataset = detection_dataset.load_detection_dataset(images_dir, annotations_dir, progress=False)
    stats = dataset.statistics()
    assert stats["images"] == 3 and stats["objects"] == stats["objects_read"] == 4
    assert stats["objects_per_class"] == {"A": 3, "B": 1}
    assert stats["images_per_class"] == {"A": 2, "B": 1}
    assert stats["objects_per_image"] == {"min": 0.0, "median": 1.0, "max": 3.0}
    assert stats["box_size_per_class"]["A"] == {"width": {"min": 4.0, "median": 6.0, "max": 10.0},
                                                "height": {"min": 6.0, "median": 10.0, "max": 20.0}}
    assert stats["problems"] == {"empty_annotation": 1}


def test_same_folder_upper_case_extensions_and_sorted_order(tmp_path):
    for stem in ["b", "a", "C"]:
        _image(tmp_path, f"{stem}.PNG")
        _xml(tmp_path, f"{stem}.XML", [("cell", 1, 1, 9, 9)])
    dataset = detection_dataset.load_detection_dataset(tmp_path, tmp_path, progress=False)
    assert [item.stem for item in dataset.items] == ["C", "a", "b"] and dataset.problems == []


def test_results_are_deterministic(messy):
    first = detection_dataset.load_detection_dataset(*messy, progress=False)
    second = detection_dataset.load_detection_dataset(*messy, progress=False)
    assert first.problems == second.problems
    assert [item.stem for item in first.items] == [item.stem for item in second.items]


def test_missing_folders_raise(tmp_path):
    images_dir, annotations_dir = _folders(tmp_path)
    with pytest.raises(errors.DatasetError, match="nope"):
        detection_dataset.load_detection_dataset(tmp_path / "nope", annotations_dir)
    with pytest.raises(errors.DatasetError, match="nope.*annotation folder"):
        detection_dataset.load_detection_dataset(images_dir, tmp_path / "nope")


def test_progress_bar_goes_to_stderr_only_when_asked(messy, capsys):
    detection_dataset.load_detection_dataset(*messy, progress=False)
    assert capsys.readouterr().err == ""
    detection_dataset.load_detection_dataset(*messy, progress=True)
    captured = capsys.readouterr()
    assert "Checking images and annotations" in captured.err and captured.out == ""


def test_tables_and_summary(messy, tmp_path, capsys):
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    rows = dataset.problems_table()
    assert len(rows) == len(dataset.problems) and set(rows[0]) == {"kind", "file", "object_index", "message", "fix"}
    text = dataset.problems_text(limit=3)
    assert text.splitlines()[0].startswith("kind") and text.endswith(f"... and {len(rows) - 3} more")
    paths = dataset.show_summary(output_dir=tmp_path / "plots")
    printed = capsys.readouterr().out
    assert "9 usable image/annotation pairs" in printed
    assert "zero_area_box (2)" in printed and "Fix: Delete or redraw this box" in printed
    assert [path.name for path in paths] == ["class_counts.png", "objects_per_image.png", "box_sizes.png",
                                              "example_annotated_image.png"]
    assert all(path.parent == tmp_path / "plots" for path in paths)
    assert dataset.show_summary(show_plots=False) == []


def test_plots_are_png_files(messy, tmp_path):
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    paths = dataset.plot_statistics(tmp_path / "out")
    assert len(paths) == 3
    example = dataset.plot_example(tmp_path / "out" / "example.png", stem="d")
    for path in paths + [example]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = images.read_image(example)
    assert shown.shape[0] > 100 and len(np.unique(shown.reshape(-1, 3), axis=0)) > 50
    with pytest.raises(errors.DatasetError, match="zzz"):
        dataset.plot_example(tmp_path / "x.png", stem="zzz")


def test_empty_dataset_still_plots(tmp_path):
    images_dir, annotations_dir = _folders(tmp_path)
    dataset = detection_dataset.load_detection_dataset(images_dir, annotations_dir, progress=False)
    assert dataset.items == [] and dataset.classes == [] and dataset.statistics()["objects"] == 0
    assert dataset.plot_example(tmp_path / "x.png").is_file()
    assert all(path.is_file() for path in dataset.plot_statistics(tmp_path / "plots"))


def test_iou_matrix():
    overlaps = detection_dataset.iou_matrix([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(overlaps, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])


def _fingerprint(*folders):
    """path -> (sha256, size, mtime) of every file under ``folders``."""
    result = {}
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("*")):
            if path.is_file():
                status = path.stat()
                result[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), status.st_size, status.st_mtime_ns)
            else:
                result[str(path)] = "folder"
    return result


def test_input_folders_are_never_changed(messy, tmp_path):
    before = _fingerprint(*messy)
    dataset = detection_dataset.load_detection_dataset(*messy, progress=False)
    dataset.plot_statistics(tmp_path / "run" / "plots")
    dataset.plot_example(tmp_path / "run" / "example.png")
    dataset.show_summary()
    dataset.statistics()
    assert _fingerprint(*messy) == before


@pytest.mark.shared_data
def test_bccd_quirks_exactly_as_documented(bccd_dir, tmp_path):
    """The doctor finds exactly what ../shared/data/bccd/SOURCE.md lists, and nothing else."""
    images_dir, annotations_dir = bccd_dir / "JPEGImages", bccd_dir / "Annotations"
    before = _fingerprint(images_dir, annotations_dir)
    dataset = detection_dataset.load_detection_dataset(images_dir, annotations_dir, progress=False)
    assert dataset.problem_counts() == {"zero_area_box": 2, "near_duplicate_box": 8}
    assert sorted(p.file for p in _of_kind(dataset, "zero_area_box")) == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    duplicates = _of_kind(dataset, "near_duplicate_box")
    assert sorted(p.file[len("BloodImage_"):-len(".xml")] for p in duplicates) == [
        "00013", "00020", "00100", "00104", "00251", "00284", "00331", "00403"]
    assert all("'RBC'" in p.message for p in duplicates)
    assert dataset.classes == ["Platelets", "RBC", "WBC"]
    stats = dataset.statistics()
    assert stats["images"] == 364 and stats["objects_read"] == 4888 and stats["objects"] == 4886
    assert stats["objects_per_class"] == {"Platelets": 361, "RBC": 4153, "WBC": 372}
    assert stats["images_per_class"] == {"Platelets": 201, "RBC": 349, "WBC": 358}
    assert stats["objects_per_image"]["min"] == 1 and stats["objects_per_image"]["max"] == 30
    assert stats["box_size_per_class"]["WBC"]["width"]["median"] == 201
    assert stats["box_size_per_class"]["WBC"]["height"]["median"] == 181
    # Boxes reaching exactly x = 640 / y = 480 are inside the image, kept unclipped.
    touching = [obj for item in dataset.items for obj in dataset.usable_objects(item) if obj.xmax == 640 or obj.ymax == 480]
    assert touching
    dataset.plot_statistics(tmp_path / "plots")
    dataset.plot_example(tmp_path / "example.png")
    assert _fingerprint(images_dir, annotations_dir) == before
