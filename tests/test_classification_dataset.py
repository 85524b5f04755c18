"""The classification doctor: both layouts, every problem kind, and the user's folder left untouched."""

import os
import pathlib
import shutil

import numpy as np
import pytest

from helpers import errors, images
from helpers.classification import dataset, demo_data


def folder_snapshot(folder: pathlib.Path) -> dict:
    return {path.relative_to(folder).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*")}


def write_png(path: pathlib.Path, value: int) -> pathlib.Path:
    return images.write_image(path, np.full((8, 8, 3), value, dtype=np.uint8))


@pytest.fixture
def class_folders(tmp_path):
    return demo_data.make_classification_demo(tmp_path / "data", images_per_class=4, image_size=32)


def test_class_folders_are_read_with_relative_keys(class_folders):
    before = folder_snapshot(class_folders)
    result = dataset.load_classification_dataset(class_folders, minimum_images_per_class=2, progress=False)
    assert result.classes == sorted(demo_data.CLASSIFICATION_CLASSES)
    assert result.class_counts() == {name: 4 for name in result.classes}
    assert result.items[0].key == f"{result.classes[0]}/{result.classes[0]}_000.png"
    assert result.items[0].width == 32 and len(result.items[0].sha256) == 64
    assert result.problems == []
    assert folder_snapshot(class_folders) == before


def test_unreadable_loose_and_duplicate_files_are_listed_with_fixes(class_folders):
    (class_folders / "synthetic_oval" / "broken.png").write_bytes(b"not a png")
    write_png(class_folders / "loose.png", 10)
    shutil.copyfile(class_folders / "synthetic_round" / "synthetic_round_000.png",
                    class_folders / "synthetic_oval" / "copy_of_round.png")
    shutil.copyfile(class_folders / "synthetic_lobed" / "synthetic_lobed_001.png",
                    class_folders / "synthetic_lobed" / "again.png")
    result = dataset.load_classification_dataset(class_folders, minimum_images_per_class=2, progress=False)
    kinds = {problem.kind: problem for problem in result.problems}
    assert kinds[dataset.UNREADABLE_IMAGE].file == "synthetic_oval/broken.png"
    assert kinds[dataset.UNLABELLED_IMAGE].file == "loose.png"
    conflicting = kinds[dataset.CONFLICTING_DUPLICATE]
    assert "synthetic_round/synthetic_round_000.png" in conflicting.message and conflicting.fix
    keys = {item.key for item in result.items}
    # Both copies of the conflicting pair are left out; a same-label duplicate is kept (listed).
    assert "synthetic_oval/copy_of_round.png" not in keys and "synthetic_round/synthetic_round_000.png" not in keys
    assert {"synthetic_lobed/again.png", "synthetic_lobed/synthetic_lobed_001.png"} <= keys
    assert dataset.DUPLICATE_IMAGE in kinds
    assert "broken.png" not in " ".join(keys)


def test_few_images_and_extreme_imbalance_are_reported(tmp_path):
    for index in range(22):
        write_png(tmp_path / "many" / f"m{index}.png", index)
    write_png(tmp_path / "rare" / "r0.png", 200)
    write_png(tmp_path / "rare" / "r1.png", 201)
    result = dataset.load_classification_dataset(tmp_path, minimum_images_per_class=5, progress=False)
    few = [problem for problem in result.problems if problem.kind == dataset.FEW_IMAGES]
    assert [problem.file for problem in few] == ["rare"]
    imbalance = [problem for problem in result.problems if problem.kind == dataset.CLASS_IMBALANCE]
    assert len(imbalance) == 1 and "11×" in imbalance[0].message and "balanced accuracy" in imbalance[0].fix
    assert "class_imbalance (1)" in result.summary_text()


def test_csv_layout_with_groups_and_every_row_problem(tmp_path):
    folder = tmp_path / "images"
    for name, value in (("a.png", 1), ("b.png", 2), ("c.png", 3), ("sub/d.png", 4), ("unlisted.png", 5)):
        write_png(folder / name, value)
    labels = tmp_path / "labels.csv"
    labels.write_text("\ufeffFilename,Label,Group,notes\n"
                      "a.png,cat,p1,x\nb.png,dog,p1,\nsub/d.png,dog,p2,\nc.png,,p3,\nmissing.png,cat,p4,\n"
                      "a.png,dog,p1,\n", encoding="utf-8")
    result = dataset.load_classification_dataset(folder, labels, minimum_images_per_class=1, progress=False)
    assert [(item.key, item.label, item.group) for item in result.items] == \
        [("a.png", "cat", "p1"), ("b.png", "dog", "p1"), ("sub/d.png", "dog", "p2")]
    assert result.has_groups
    kinds = sorted(problem.kind for problem in result.problems)
    assert kinds == sorted([dataset.MISSING_LABEL, dataset.MISSING_FILE, dataset.DUPLICATE_ROW,
                            dataset.UNLABELLED_IMAGE])
    assert any("row 7" in problem.message for problem in result.problems)


def test_csv_without_label_column_and_folder_without_classes_raise_with_fixes(tmp_path):
    write_png(tmp_path / "images" / "a.png", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,x\n", encoding="utf-8")
    with pytest.raises(errors.DatasetError, match="no column filename, label"):
        dataset.load_classification_dataset(tmp_path / "images", bad, progress=False)
    with pytest.raises(errors.DatasetError, match="no class subfolders.*labels_csv"):
        dataset.load_classification_dataset(tmp_path / "images", progress=False)
    with pytest.raises(errors.DatasetError, match="labels CSV not found"):
        dataset.load_classification_dataset(tmp_path / "images", tmp_path / "nope.csv", progress=False)


def test_plots_are_written_where_asked(class_folders, tmp_path):
    result = dataset.load_classification_dataset(class_folders, progress=False)
    paths = result.show_summary(tmp_path / "plots")
    assert [path.name for path in paths] == ["class_counts.png", "class_examples.png"]
    assert all(path.stat().st_size > 1000 for path in paths)
    assert not any(name.endswith(".png") and "/" not in name for name in os.listdir(class_folders))
