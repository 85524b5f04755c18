"""COCO JSON and BBBC041 JSON annotations: format detection, reading, and the same data check as VOC.

Hand-written files of each format (tiny generated PNGs), then their malformed variants: each
gives the problem kind the VOC equivalent gives in tests/test_doctor.py.
"""

import dataclasses
import json
import math
import pathlib

import numpy as np
import pytest

from helpers import annotation_formats, errors, images, voc
from helpers.detection import dataset as detection_dataset
from helpers import prediction_formats
from helpers.qc import __main__ as qc_main
from helpers.qc import detection as detection_qc

WIDTH, HEIGHT = 64, 48


def _image(folder, name, width=WIDTH, height=HEIGHT, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return images.write_image(folder / name, pixels)


def _write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def coco_file(images_list, boxes, categories=((1, "RBC"), (2, "WBC"))):
    """A COCO dict: images_list [(id, file_name)], boxes [(image_id, category_id, [x, y, w, h], iscrowd)]."""
    return {
        "info": {"description": "hand-written"},
        "images": [{"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT} for image_id, name in images_list],
        "annotations": [{"id": index + 1, "image_id": image_id, "category_id": category_id, "bbox": list(box),
                         "area": box[2] * box[3], "iscrowd": crowd, "segmentation": []}
                        for index, (image_id, category_id, box, crowd) in enumerate(boxes)],
        "categories": [{"id": category_id, "name": name, "supercategory": "cell"} for category_id, name in categories],
    }


def bbbc041_entry(name, objects, width=WIDTH, height=HEIGHT):
    """One BBBC041 entry: objects [(category, (min r, min c), (max r, max c))]."""
    return {"image": {"checksum": "0" * 32, "pathname": f"/images/{name}", "shape": {"r": height, "c": width,
                                                                                        "channels": 3}},
            "objects": [{"bounding_box": {"minimum": {"r": low[0], "c": low[1]}, "maximum": {"r": high[0], "c": high[1]}},
                         "category": category} for category, low, high in objects]}


@pytest.fixture
def clean_coco(tmp_path):
    """a.png 2 boxes + a crowd region, b.png in a subfolder (file_name 'train/b.png'), c.png background."""
    images_dir = tmp_path / "images"
    (images_dir / "train").mkdir(parents=True)
    _image(images_dir, "a.png")
    _image(images_dir / "train", "b.png", seed=1)
    _image(images_dir, "c.png", seed=2)
    data = coco_file([(1, "a.png"), (7, "train/b.png"), (3, "c.png")],
                     [(1, 1, [2.5, 3, 10, 20], 0), (1, 2, [30, 10, 12, 8], 0), (7, 1, [0, 0, 64, 48], 0),
                      (1, 1, [40, 30, 20, 10], 1)])
    return images_dir, _write_json(tmp_path / "train.json", data)


def _of_kind(dataset, kind):
    return [problem for problem in dataset.problems if problem.kind == kind]


# ---------------------------------------------------------------- format detection


def test_format_is_detected_from_the_structure(tmp_path, clean_coco):
    assert annotation_formats.detect_format(tmp_path) == annotation_formats.VOC
    assert annotation_formats.detect_format(clean_coco[1]) == annotation_formats.COCO
    path = _write_json(tmp_path / "malaria.json", [bbbc041_entry("a.png", [])])
    assert annotation_formats.detect_format(path) == annotation_formats.BBBC041
    assert annotation_formats.describe(clean_coco[1]) == "COCO JSON, 3 images, 2 categories (train.json)"
    (tmp_path / "x.xml").write_text("<annotation/>", encoding="utf-8")
    assert annotation_formats.describe(tmp_path).startswith("PASCAL VOC XML, 1 .xml files")


@pytest.mark.parametrize("content, what", [
    ({"info": {}, "licenses": []}, "an object with the keys 'info', 'licenses'"),
    ([1, 2, 3], "a list whose entries are not all"),
    ([], "an empty list"),
    ("images", "a single str"),
])
def test_wrong_top_level_structure_is_a_config_error_naming_the_formats(tmp_path, content, what):
    path = _write_json(tmp_path / "odd.json", content)
    with pytest.raises(errors.ConfigError) as raised:
        annotation_formats.detect_format(path)
    message = str(raised.value)
    assert str(path) in message and what in message and "COCO" in message and "BBBC041" in message
    assert "PASCAL VOC" in message and "\n" not in message


def test_unreadable_files_raise_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [ {"id": 1,', encoding="utf-8")
    with pytest.raises(errors.DatasetError, match=r"broken.json: is not valid JSON \(.* line 1, column"):
        annotation_formats.detect_format(broken)
    (tmp_path / "empty.json").write_text("  \n", encoding="utf-8")
    with pytest.raises(errors.DatasetError, match="empty.json: the annotation file is empty"):
        annotation_formats.detect_format(tmp_path / "empty.json")
    (tmp_path / "labels.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="labels.csv: is a file but not a .json file"):
        annotation_formats.detect_format(tmp_path / "labels.csv")
    with pytest.raises(errors.DatasetError, match="nope.json: annotation folder or file not found"):
        annotation_formats.detect_format(tmp_path / "nope.json")


def test_coco_without_a_top_level_list_raises(tmp_path):
    path = _write_json(tmp_path / "partial.json", {"images": [], "annotations": []})
    with pytest.raises(errors.DatasetError, match='partial.json: COCO file without a "categories" list'):
        annotation_formats.read_json_annotations(path)
    path = _write_json(tmp_path / "nameless.json", {"images": [], "annotations": [], "categories": [{"id": 1}]})
    with pytest.raises(errors.DatasetError, match='"categories" entry 1 .* needs an "id" and a "name"'):
        annotation_formats.read_json_annotations(path)


# ---------------------------------------------------------------- reading


def test_coco_is_read_into_the_voc_model(clean_coco):
    images_dir, path = clean_coco
    source = annotation_formats.read_json_annotations(path, images_dir)
    assert [entry.image_path for entry in source.images] == [images_dir / "a.png", images_dir / "train" / "b.png",
                                                             images_dir / "c.png"]
    first = source.images[0].annotation
    assert (first.filename, first.width, first.height, first.path) == ("a.png", WIDTH, HEIGHT, None)
    # bbox [x, y, width, height] -> xmax = x + width (no +1); categories joined by id; iscrowd -> crowd region.
    assert first.objects == [voc.VocObject("RBC", 2.5, 3, 12.5, 23), voc.VocObject("WBC", 30, 10, 42, 18),
                             voc.VocObject("RBC", 40, 30, 60, 40, difficult=True, crowd=True)]
    assert source.images[2].annotation.objects == [] and source.orphans == []
    assert all(entry.error is None for entry in source.images)


def test_bbbc041_is_read_with_rows_as_y_and_columns_as_x(tmp_path):
    root = tmp_path / "malaria"
    (root / "images").mkdir(parents=True)
    _image(root / "images", "p.png")
    data = [bbbc041_entry("p.png", [("ring", (2, 5), (12, 25)), ("difficult", (20, 30), (30, 44))])]
    path = _write_json(root / "training.json", data)
    for images_dir in (root / "images", root):  # by base name, and as written under the dataset's root
        entry = annotation_formats.read_json_annotations(path, images_dir).images[0]
        assert entry.image_path == root / "images" / "p.png"
    source = annotation_formats.read_json_annotations(path, root / "images")
    assert source.categories == ["ring"] and source.description() == "BBBC041 JSON, 1 images, 1 categories (training.json)"
    assert source.images[0].annotation.objects == [
        voc.VocObject("ring", 5, 2, 25, 12), voc.VocObject("difficult", 30, 20, 44, 30, difficult=True, crowd=True)]


def test_sizes_missing_from_the_file_come_from_the_image(tmp_path):
    _image(tmp_path, "a.png", width=40, height=30)
    data = coco_file([(1, "a.png")], [])
    del data["images"][0]["width"]
    path = _write_json(tmp_path / "c.json", data)
    annotation = annotation_formats.read_json_annotations(path, tmp_path).images[0].annotation
    assert (annotation.width, annotation.height) == (40, 30)
    entry = bbbc041_entry("a.png", [])
    del entry["image"]["shape"]
    annotation = annotation_formats.read_json_annotations(_write_json(tmp_path / "b.json", [entry]),
                                                          tmp_path).images[0].annotation
    assert (annotation.width, annotation.height) == (40, 30)


# ---------------------------------------------------------------- the data check


def test_clean_coco_checks_like_the_same_voc_dataset(clean_coco, tmp_path):
    images_dir, path = clean_coco
    dataset = detection_dataset.load_detection_dataset(images_dir, path, progress=False)
    assert dataset.annotation_format == annotation_formats.COCO
    assert dataset.problem_counts() == {"empty_annotation": 1, "crowd_region": 1}
    crowd = _of_kind(dataset, "crowd_region")[0]
    assert crowd.file == "train.json [a.png]" and crowd.object_index == 2 and "not trained on" in crowd.message
    assert [item.stem for item in dataset.items] == ["a", "b", "c"]
    assert all(item.annotation_path == path for item in dataset.items)
    # The same boxes written as VOC (crowd region left out): same usable boxes, classes and statistics.
    voc_images, voc_annotations = tmp_path / "voc_images", tmp_path / "voc_annotations"
    voc_images.mkdir()
    for item in dataset.items:
        images.write_image(voc_images / item.image_path.name, images.read_image(item.image_path))
        voc.write_voc(dataclasses.replace(item.annotation, objects=dataset.usable_objects(item)),
                      voc_annotations / f"{item.stem}.xml")
    reference = detection_dataset.load_detection_dataset(voc_images, voc_annotations, progress=False)
    assert dataset.classes == reference.classes == ["RBC", "WBC"]
    assert [dataset.usable_objects(item) for item in dataset.items] == \
        [reference.usable_objects(item) for item in reference.items]
    ours, theirs = dataset.statistics(), reference.statistics()
    assert ours["objects"] == theirs["objects"] == 3 and ours["objects_read"] == 4
    assert ours["objects_per_class"] == theirs["objects_per_class"]
    assert ours["box_size_per_class"] == theirs["box_size_per_class"]


def test_summary_states_the_format(clean_coco, capsys):
    dataset = detection_dataset.load_detection_dataset(*clean_coco, progress=False)
    dataset.show_summary(show_plots=False)
    printed = capsys.readouterr().out
    assert "Annotations: COCO JSON, 3 images, 2 categories (train.json)." in printed
    assert "crowd_region (1)" in printed


def test_crowd_regions_are_not_trained_on_but_scored(clean_coco):
    dataset = detection_dataset.load_detection_dataset(*clean_coco, progress=False)
    first = dataset.items[0]
    assert not any(obj.crowd for obj in dataset.usable_objects(first))
    scored = dataset.scoring_objects(first)
    assert scored[-1] == voc.VocObject("RBC", 40, 30, 60, 40, difficult=True, crowd=True)  # a crowd region of its class
    assert scored[:-1] == dataset.usable_objects(first)


@pytest.fixture
def messy_coco(tmp_path):
    """One COCO file with every problem VOC folders can have (see the comments)."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    for name in ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png", "i.png", "k.jpg", "k.png"]:
        _image(images_dir, name)
    (images_dir / "h.png").write_bytes(b"not a png")  # h: unreadable image
    data = coco_file(
        [(1, "a.png"), (2, "b.png"), (3, "c.png"), (4, "d.png"), (5, "e.png"), (6, "gone.png"), (8, "h.png"),
         (9, "i.png"), (11, "k.jpg"), (12, "k.png")],  # f.png is not listed; k.jpg and k.png share a stem
        [(1, 1, [0, 0, 64, 48], 0), (1, 2, [10, 10, 10, 10], 0),  # a: clean, touching the border
         (2, 1, [5, 5, 0, 4], 0), (2, 1, [9, 9, -5, 3], 0), (2, 1, [1, 1, 8, 8], 0),  # b: zero, negative area
         (3, 1, [-4, 10, 24, 42], 0), (3, 1, [70, 10, 10, 10], 0),  # c: one clipped, one entirely outside
         (4, 9, [1, 1, 8, 8], 0),  # d: unknown category id
         (6, 1, [1, 1, 8, 8], 0),  # gone.png: the image file is missing
         (8, 1, [1, 1, 8, 8], 0),
         (10, 1, [1, 1, 8, 8], 0),  # image id 10 is not in "images"
         (11, 1, [1, 1, 8, 8], 0), (12, 1, [1, 1, 8, 8], 0)])
    data["annotations"].append({"id": 99, "image_id": 5, "category_id": 1})  # e: an annotation without bbox
    data["images"][7]["width"] = 128  # i: the size in the file differs from the pixels
    return images_dir, _write_json(tmp_path / "train.json", data)


def test_malformed_coco_gives_the_voc_problem_kinds(messy_coco):
    images_dir, path = messy_coco
    dataset = detection_dataset.load_detection_dataset(images_dir, path, progress=False)
    assert dataset.problem_counts() == {
        "image_without_annotation": 1, "annotation_without_image": 2, "duplicate_stem": 1, "unreadable_image": 1,
        "unreadable_annotation": 2, "size_mismatch": 1, "zero_area_box": 2, "box_outside_image": 2}
    assert [item.stem for item in dataset.items] == ["a", "b", "c", "k"]
    for problem in dataset.problems:
        assert problem.message and problem.fix.endswith(".") and len(problem.fix) > 20
        assert "/" not in problem.file
    assert _of_kind(dataset, "image_without_annotation")[0].file == "f.png"
    unknown_id, missing_file = sorted(_of_kind(dataset, "annotation_without_image"), key=lambda p: p.file)
    assert unknown_id.file == "train.json" and "image id 10" in unknown_id.message
    assert missing_file.file == "train.json [gone.png]" and "'gone.png' was not found" in missing_file.message
    unreadable = {problem.file: problem.message for problem in _of_kind(dataset, "unreadable_annotation")}
    assert "category_id 9, which is not in \"categories\"" in unreadable["train.json [d.png]"]
    assert 'annotation 99 has no "bbox"' in unreadable["train.json [e.png]"]
    assert _of_kind(dataset, "unreadable_image")[0].file == "h.png"
    assert "128 x 48" in _of_kind(dataset, "size_mismatch")[0].message
    assert _of_kind(dataset, "duplicate_stem")[0].file == "train.json [k.png]"  # k.jpg, listed first, is used
    assert [(p.file, p.object_index) for p in _of_kind(dataset, "zero_area_box")] == [
        ("train.json [b.png]", 0), ("train.json [b.png]", 1)]
    assert "negative area" in _of_kind(dataset, "zero_area_box")[1].message
    outside = _of_kind(dataset, "box_outside_image")
    assert [p.object_index for p in outside] == [0, 1] and "clipped" in outside[0].message
    by_stem = {item.stem: item for item in dataset.items}
    assert [(o.xmin, o.ymin, o.xmax, o.ymax) for o in dataset.usable_objects(by_stem["c"])] == [(0, 10, 20, 48)]
    assert by_stem["k"].image_path.name == "k.jpg"


def test_sub_pixel_overshoot_is_clipped_silently_and_three_pixels_is_listed(tmp_path):
    """Label Studio's percent coordinates give x + width = 64.0001 on a 64-px image: no problem row for that."""
    for name in ("a.png", "b.png"):
        _image(tmp_path, name)
    boxes = [(1, 1, [40, 20, 24.0001, 10], 0), (1, 1, [-0.0001, -0.0001, 10, 10], 0),  # 0.0001 px over each edge
             (1, 2, [10, 28.5, 20, 20.4999], 0),  # ymax 48.9999: just under one pixel over
             (2, 1, [50, 10, 17, 10], 0)]  # xmax 67: three pixels over
    path = _write_json(tmp_path / "label_studio.json", coco_file([(1, "a.png"), (2, "b.png")], boxes))
    dataset = detection_dataset.load_detection_dataset(tmp_path, path, progress=False)
    assert dataset.problem_counts() == {"box_outside_image": 1}
    (problem,) = dataset.problems
    assert problem.file == "label_studio.json [b.png]" and "clipped to (50, 10, 64, 20)" in problem.message
    by_stem = {item.stem: item for item in dataset.items}
    assert [(o.xmin, o.ymin, o.xmax, o.ymax) for o in dataset.usable_objects(by_stem["a"])] == [
        (40, 20, 64, 30), (0, 0, pytest.approx(9.9999), pytest.approx(9.9999)), (10, 28.5, 30, 48)]
    dropping = detection_dataset.load_detection_dataset(tmp_path, path, clip_boxes=False, progress=False)
    assert len(dropping.usable_objects(by_stem["a"])) == 3 and dropping.problem_counts() == {"box_outside_image": 1}


def test_malformed_coco_entries(tmp_path):
    _image(tmp_path, "a.png")
    _image(tmp_path, "b.png")
    data = coco_file([(1, "a.png"), (1, "b.png")], [(1, 1, [1, 1, 5, 5], 0)])
    data["images"].append({"id": 3})
    data["annotations"].append({"id": 5, "image_id": 3, "category_id": 1, "bbox": [1, 2, "3", 4]})
    dataset = detection_dataset.load_detection_dataset(tmp_path, _write_json(tmp_path / "c.json", data), progress=False)
    messages = [problem.message for problem in _of_kind(dataset, "unreadable_annotation")]
    assert len(messages) == 3 and dataset.items == []
    assert "image id 1 is shared by 'a.png', 'b.png'" in messages[0] and "'b.png'" in messages[1]
    assert 'image entry 3 (id 3) has no "file_name"' in messages[2]
    data = coco_file([(1, "a.png"), (2, "b.png")], [(1, 1, [1, 2, 3, 4], 0), (2, 1, [1, 2, 3, 4], 2)])
    data["annotations"][0]["bbox"] = [1, 2, 3]
    dataset = detection_dataset.load_detection_dataset(tmp_path, _write_json(tmp_path / "d.json", data), progress=False)
    messages = [problem.message for problem in _of_kind(dataset, "unreadable_annotation")]
    assert "annotation 1 has bbox [1, 2, 3]; expected [x, y, width, height]" in messages[0]
    assert "annotation 2 has iscrowd 2; expected 0 or 1" in messages[1]


@pytest.fixture
def messy_bbbc041(tmp_path):
    root = tmp_path / "malaria"
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    for stem in "abcdefg":
        _image(images_dir, f"{stem}.png")
    good = [("ring", (2, 5), (12, 25)), ("difficult", (20, 30), (30, 44)), ("red blood cell", (1, 1), (9, 9))]
    entries = [
        bbbc041_entry("a.png", good),
        bbbc041_entry("b.png", [("ring", (5, 5), (5, 9)), ("ring", (1, 1), (9, 9))]),       # zero-area box
        bbbc041_entry("c.png", [("ring", (10, -4), (52, 20))]),                            # reaches outside
        bbbc041_entry("d.png", [("ring", (1, 1), (9, 9))], width=128),                     # shape != pixels
        bbbc041_entry("gone.png", [("ring", (1, 1), (9, 9))]),                             # missing file
        bbbc041_entry("e.png", []),                                                        # background
        bbbc041_entry("f.png", [("ring", (1, 1), (9, 9))]),
    ]
    del entries[6]["objects"][0]["bounding_box"]["maximum"]                                # f: missing key
    entries.append({"image": {"pathname": "/images/g.png"}})                               # g: no "objects"
    return images_dir, _write_json(root / "training.json", entries)


def test_malformed_bbbc041_gives_the_voc_problem_kinds(messy_bbbc041):
    dataset = detection_dataset.load_detection_dataset(*messy_bbbc041, progress=False)
    assert dataset.annotation_format == annotation_formats.BBBC041
    assert dataset.problem_counts() == {"annotation_without_image": 1, "unreadable_annotation": 2, "size_mismatch": 1,
                                        "zero_area_box": 1, "box_outside_image": 1, "empty_annotation": 1,
                                        "crowd_region": 1}
    assert [item.stem for item in dataset.items] == ["a", "b", "c", "e"]
    unreadable = {problem.file: problem.message for problem in _of_kind(dataset, "unreadable_annotation")}
    assert "object 1 ('ring') has no bounding_box.maximum" in unreadable["training.json [f.png]"]
    assert 'no "objects" list' in unreadable["training.json [g.png]"]
    assert "'/images/gone.png' was not found" in _of_kind(dataset, "annotation_without_image")[0].message
    assert "gives the size 128 x 48 but d.png is 64 x 48" in _of_kind(dataset, "size_mismatch")[0].message
    assert _of_kind(dataset, "zero_area_box")[0].file == "training.json [b.png]"
    # 'difficult' is a crowd region: not a class, not trained on, and scored as a region of every class.
    assert dataset.classes == ["red blood cell", "ring"]
    first = dataset.items[0]
    assert [obj.name for obj in dataset.usable_objects(first)] == ["ring", "red blood cell"]
    crowd = [obj for obj in dataset.scoring_objects(first) if obj.crowd]
    assert [obj.name for obj in crowd] == ["red blood cell", "ring"] and all(obj.difficult for obj in crowd)
    assert [obj.name for obj in dataset.scoring_objects(first, ["x", "y", "z"]) if obj.crowd] == ["x", "y", "z"]
    assert "Annotations: BBBC041 JSON, 8 images, 2 categories (training.json)." in dataset.summary_text()


def test_voc_datasets_score_exactly_their_usable_boxes(tmp_path):
    _image(tmp_path, "a.png")
    voc.write_voc(voc.VocAnnotation("a.png", WIDTH, HEIGHT, 3, [voc.VocObject("RBC", 1, 1, 9, 9, difficult=True),
                                                               voc.VocObject("RBC", -3, 1, 9, 9)]), tmp_path / "a.xml")
    dataset = detection_dataset.load_detection_dataset(tmp_path, tmp_path, progress=False)
    assert dataset.annotation_format == annotation_formats.VOC
    assert dataset.scoring_objects(dataset.items[0]) == dataset.usable_objects(dataset.items[0])
    assert len(dataset.usable_objects(dataset.items[0])) == 2  # VOC difficult boxes are trained on, as before


def test_input_files_are_never_changed(messy_coco, tmp_path):
    images_dir, path = messy_coco
    before = {file: file.read_bytes() for file in [path, *images_dir.rglob("*")] if file.is_file()}
    dataset = detection_dataset.load_detection_dataset(images_dir, path, progress=False)
    dataset.show_summary(output_dir=tmp_path / "plots")
    assert {file: file.read_bytes() for file in [path, *images_dir.rglob("*")] if file.is_file()} == before


# ---------------------------------------------------------------- form fields and QC


def test_the_annotations_field_accepts_a_folder_or_a_json_file(clean_coco, tmp_path):
    images_dir, path = clean_coco
    assert detection_dataset.require_annotations("Training_annotations", str(path)) == path
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text("<annotation/>", encoding="utf-8")
    assert detection_dataset.require_annotations("Training_annotations", str(tmp_path / "voc")) == tmp_path / "voc"
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="notes.txt: is a file but not a .json file.*COCO"):
        detection_dataset.require_annotations("Training_annotations", str(tmp_path / "notes.txt"))
    with pytest.raises(errors.DatasetError, match="Test_annotations: empty"):
        detection_dataset.require_annotations("Test_annotations", " ")
    with pytest.raises(errors.DatasetError, match="Test_annotations: .*gone.json does not exist"):
        detection_dataset.require_annotations("Test_annotations", str(tmp_path / "gone.json"))


def test_a_folder_without_xml_is_one_line_naming_the_field_not_a_problem_per_image(clean_coco):
    images_dir = clean_coco[0]  # the images folder typed as the annotations folder: a likely slip
    with pytest.raises(errors.DatasetError) as raised:
        detection_dataset.require_annotations("Training_annotations", str(images_dir))
    message = str(raised.value)
    assert message.startswith(f"0 .xml files in Training_annotations ({images_dir}; it holds 2 .png files, "
                              "1 folder): is the path right?") and "\n" not in message


def test_qc_ground_truth_from_coco_and_bbbc041(clean_coco, messy_bbbc041, caplog):
    ground_truth = annotation_formats.load_ground_truth(clean_coco[1])
    assert sorted(ground_truth) == ["a.png", "b.png", "c.png"]
    assert ground_truth["a.png"].objects[-1].difficult and ground_truth["c.png"].objects == []
    with pytest.raises(errors.DatasetError, match=r"training.json \[f.png\]: object 1 .* \(2 such problems in all\)\. Fix it in"):
        annotation_formats.load_ground_truth(messy_bbbc041[1], messy_bbbc041[0])
    good = json.loads(messy_bbbc041[1].read_text(encoding="utf-8"))[:2]
    path = _write_json(messy_bbbc041[1].with_name("test.json"), good)
    ground_truth = annotation_formats.load_ground_truth(path)
    assert [obj.name for obj in ground_truth["b.png"].objects] == ["ring"]  # the zero-area box is left out
    assert "zero or negative area" in caplog.text
    crowd = [obj.name for obj in ground_truth["a.png"].objects if obj.difficult]
    assert crowd == ["ring", "red blood cell"]  # once per category of the file


def test_one_ground_truth_loader_reads_a_voc_folder_and_a_coco_file_alike(tmp_path, caplog):
    boxes = [("RBC", 2, 3, 12, 23), ("WBC", 5, 5, 5, 9), ("RBC", 30, 10, 42, 18)]  # the second has zero width
    objects = [voc.VocObject(name, xmin, ymin, xmax, ymax) for name, xmin, ymin, xmax, ymax in boxes]
    voc.write_voc(voc.VocAnnotation("a.png", WIDTH, HEIGHT, 3, objects), tmp_path / "voc" / "a.xml")
    coco = coco_file([(1, "a.png")], [(1, 1 + (name == "WBC"), [xmin, ymin, xmax - xmin, ymax - ymin], 0)
                                      for name, xmin, ymin, xmax, ymax in boxes])
    from_voc = annotation_formats.load_ground_truth(tmp_path / "voc")
    from_coco = annotation_formats.load_ground_truth(_write_json(tmp_path / "test.json", coco))
    assert list(from_voc) == list(from_coco) == ["a.png"]
    assert from_voc["a.png"].objects == from_coco["a.png"].objects == [objects[0], objects[2]]
    assert from_voc["a.png"].path == tmp_path / "voc" / "a.xml" and from_coco["a.png"].path is None
    warnings = [record.getMessage() for record in caplog.records if "zero or negative area" in record.getMessage()]
    assert warnings == [f"1 ground-truth box(es) with zero or negative area left out (no detection can match them): "
                        f"{name} object 2" for name in ("a.xml", "test.json [a.png]")]
    with pytest.raises(errors.DatasetError, match="gone: ground truth not found. Give the folder of PASCAL VOC"):
        annotation_formats.load_ground_truth(tmp_path / "gone")


def test_a_detection_on_a_bbbc041_difficult_cell_is_neither_tp_nor_fp(tmp_path):
    entries = [bbbc041_entry("a.png", [("ring", (2, 2), (12, 12)), ("difficult", (20, 30), (30, 44))])]
    path = _write_json(tmp_path / "test.json", entries)
    ground_truth = annotation_formats.load_ground_truth(path)
    found = [prediction_formats.Detection("a.png", "ring", 0.9, 2, 2, 12, 12),
             prediction_formats.Detection("a.png", "ring", 0.8, 30, 20, 44, 30)]  # on the difficult cell
    evaluation = detection_qc.evaluate_detection(ground_truth, found)
    ring = evaluation.per_class["ring"]
    assert (ring["tp"], ring["fp"], ring["fn"]) == (1, 0, 0) and math.isclose(evaluation.map50, 1.0)
    assert evaluation.count_agreement.per_image["a.png"]["annotated"] == {"ring": 1}


def test_qc_command_reads_a_json_ground_truth(tmp_path, capsys):
    path = _write_json(tmp_path / "test.json", coco_file([(1, "a.png")], [(1, 1, [2, 2, 10, 10], 0)]))
    predictions = tmp_path / "predictions.csv"
    prediction_formats.write_predictions_csv([prediction_formats.Detection("a.png", "RBC", 0.9, 2, 2, 12, 12)], predictions)
    assert qc_main.main(["detection", "--ground-truth", str(path), "--predictions", str(predictions), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["map50"] == pytest.approx(1.0)
    broken = _write_json(tmp_path / "broken.json", {"licenses": []})
    assert qc_main.main(["detection", "--ground-truth", str(broken), "--predictions", str(predictions)]) == 2
    assert "ConfigError: " in capsys.readouterr().err
