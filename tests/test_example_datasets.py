"""Every notebook's example-dataset path, end to end against a local HTTP server on 127.0.0.1.

For each dataset offered by the Example_dataset field of a notebook's form 1.1, a small archive with the source's real layout
(synthetic files; names, folders and counts from the manifest and shared/data SOURCE.md notes) is
served locally, the manifest entry's URL is pointed at it, the function the cell calls
(``helpers.notebook.use_example``, cell 2.1) runs, and the values it prints (and returns, replacing those
of form 1.1) are parsed as Python would take them and handed to the task's data check.
"""

import ast
import dataclasses
import io
import json
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from helpers import downloads, errors, example_data, notebook
from helpers.classification import dataset as classification_dataset
from helpers.detection import dataset as detection_dataset
from helpers.grading import dataset as grading_dataset
from tests.conftest import REPOSITORY_ROOT, shared_dataset
from tests.test_downloads import server, zip_bytes  # noqa: F401 (server is a fixture)

RNG = np.random.default_rng(7)
NOTEBOOKS = ("detection_retinanet", "classification", "grading")


def image_bytes(kind: str, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> bytes:
    """A small image of random pixels (so no two files are identical) encoded as ``kind`` (PNG, JPEG, BMP)."""
    channels = 3 if mode == "RGB" else 1
    pixels = RNG.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8).squeeze()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, kind)
    return buffer.getvalue()


def voc_xml(filename: str, width: int = 12, height: int = 10, name: str = "cell") -> bytes:
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size><object><name>{name}</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            f"<xmax>8</xmax><ymax>7</ymax></bndbox></object></annotation>").encode()


# ----- archives with each source's layout ------------------------------------------------------
def bccd_files(entry) -> dict[str, bytes]:
    """Shenggan/BCCD_Dataset master: BCCD/JPEGImages/*.jpg, BCCD/Annotations/*.xml, BCCD/ImageSets/Main/*.txt."""
    root, files = entry.root_subdir, {}
    for index in range(entry.expected_files["JPEGImages"]):
        stem = f"BloodImage_{index:05d}"
        files[f"{root}/JPEGImages/{stem}.jpg"] = image_bytes("JPEG")
        files[f"{root}/Annotations/{stem}.xml"] = voc_xml(f"{stem}.jpg", name=("RBC", "WBC", "Platelets")[index % 3])
    for split in ("test", "train", "trainval", "val"):
        files[f"{root}/ImageSets/Main/{split}.txt"] = b"BloodImage_00000\n"
    files["BCCD_Dataset-master/LICENSE"] = b"MIT\n"
    return files


def zerocost_files(entry) -> dict[str, bytes]:
    """Zenodo 3941908 "download all": a zip holding the record's zip. The real folder names are not
    recorded anywhere we could read, so these are stand-ins; what is tested is that the cell finds
    the training and test pairs of image and XML folders whatever they are called."""
    inner = {}
    for split, count in (("Training", 6), ("Test", 2)):
        for index in range(count):
            inner[f"{split}/Images/cells_{split}_{index}.png"] = image_bytes("PNG", mode="L")
            inner[f"{split}/Annotations/cells_{split}_{index}.xml"] = voc_xml(f"cells_{split}_{index}.png")
    return {"YoloV2_dataset.zip": zip_bytes(inner)}


def bccd_crops_files(entry) -> dict[str, bytes]:
    """apple2373/BCCD: BCCD_cropped/<Class>/*.jpg, plus the per-image labels.csv that is not the crops' labels."""
    files = {f"{entry.root_subdir}/labels.csv": b"Image,Category\n1,NEUTROPHIL\n"}
    for folder, count in entry.expected_files.items():
        for index in range(count):
            files[f"{entry.root_subdir}/{folder}/BloodImage_{index:05d}_1.jpg"] = image_bytes("JPEG")
    return files


ZHENG_DATASET_1 = {"2": 53, "1": 176, "3": 48, "4": 22, "5": 1}  # SOURCE.md counts; row 1 is "1,2" as in the source


def zheng_files(entry) -> dict[str, bytes]:
    """zxaoyou/segmentation_WBC: 'Dataset 1/NNN.bmp' beside 'NNN.png' masks, 'Class Labels of Dataset 1.csv'
    (``image ID,class label``, IDs 1..300 unpadded, labels 1..5), Dataset 2 likewise, two preview collages."""
    root = entry.root_subdir
    labels = [label for label, count in ZHENG_DATASET_1.items() for _ in range(count)]
    files = {f"{root}/Dataset 1.png": image_bytes("PNG"), f"{root}/Dataset 2.png": image_bytes("PNG"),
             f"{root}/Class Labels of Dataset 1.csv": ("image ID,class label\n" + "".join(
                 f"{index},{label}\n" for index, label in enumerate(labels, start=1))).encode(),
             f"{root}/Class Labels of Dataset 2.csv": ("image ID,class\n" + "".join(
                 f"{index},{index % 5 + 1}\n" for index in range(1, 101))).encode()}
    for folder, count in (("Dataset 1", 300), ("Dataset 2", 100)):
        for index in range(1, count + 1):
            files[f"{root}/{folder}/{index:03d}.bmp"] = image_bytes("BMP")
            files[f"{root}/{folder}/{index:03d}.png"] = image_bytes("PNG", mode="L")
    return files


# SOURCE.md of shared/data/dr_srahim: folder -> images kept (Patient299/300, dropped, are added below).
DR_FOLDERS = {"1 - No DR": 276, "2 - Mild DR without maculopathy": 72, "3 - Mild DR with maculopathy": 27,
              "4 - Moderate DR without maculopathy": 85, "5 - Moderate DR with maculopathy": 81,
              "6 - Severe DR without maculopathy": 21, "7 - Severe DR with maculopathy": 11,
              "8 - PDR without maculopathy": 6, "9 - PDR with maculopathy": 10, "10 - ADED": 7}
DR_GRADES = {0: 276, 1: 99, 2: 166, 3: 32, 4: 23}


def dr_files(entry) -> dict[str, bytes]:
    """SRahimDR/DR-image-dataset: '<images_subdir>/<k - class name>/PatientNNN_L.jpg' (one '-R' quirk),
    Patient299 (folder 5) byte-identical to Patient300 (folder 6)."""
    base, files = f"{entry.root_subdir}/{entry.images_subdir}", {}
    eyes = [f"Patient{patient:03d}_{eye}.jpg" for patient in range(1, 299) for eye in "LR"]
    eyes[eyes.index("Patient254_R.jpg")] = "Patient254-R.jpg"
    for folder, count in DR_FOLDERS.items():
        for name in eyes[:count]:
            files[f"{base}/{folder}/{name}"] = image_bytes("JPEG", size=(16, 12))
        eyes = eyes[count:]
    for eye in "LR":
        same = image_bytes("JPEG", size=(16, 12))
        files[f"{base}/5 - Moderate DR with maculopathy/Patient299_{eye}.jpg"] = same
        files[f"{base}/6 - Severe DR without maculopathy/Patient300_{eye}.jpg"] = same
    files[f"{entry.root_subdir}/README.md"] = b"free to use for academic purpose, with attribution\n"
    return files


ARCHIVES = {"bccd": bccd_files, "zerocostdl4mic_mda_mb_231": zerocost_files, "wbc_bccd_crops": bccd_crops_files,
            "wbc_zheng2018": zheng_files, "dr_srahim": dr_files}


# ----- running the cell -------------------------------------------------------------------------
def offered_examples(notebook_name: str) -> tuple[str, list[str]]:
    """(source of the notebook's 2.1 cell, the dataset names the Example_dataset field of form 1.1 offers)."""
    cells = json.loads((REPOSITORY_ROOT / "notebooks" / f"{notebook_name}.ipynb").read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    cell = next((source for source in sources if source.startswith("#@title 2.1 The example dataset")), None)
    assert cell is not None, f"{notebook_name}: no '2.1 The example dataset' cell"
    form = next(source for source in sources if source.startswith("#@title 1.1 "))
    choices = ast.literal_eval(re.search(r"^Example_dataset = .*#@param (\[.*\])$", form, re.M).group(1))
    return cell, [name for name in choices if name != "none"]


OFFERED = [(notebook_name, name) for notebook_name in NOTEBOOKS for name in offered_examples(notebook_name)[1]]


def test_every_notebook_offers_examples_through_the_tested_function():
    for notebook_name in NOTEBOOKS:
        cell, names = offered_examples(notebook_name)
        assert "notebook.use_example(\n    Example_dataset, model_path, " in cell, notebook_name
        task = {"detection_retinanet": "detection"}.get(notebook_name, notebook_name)
        manifest = downloads.load_manifest()
        assert names and all(manifest[name].task == task for name in names), notebook_name
    assert {name for _, name in OFFERED} == set(ARCHIVES), "an offered dataset has no test archive"


def serve_example(server, monkeypatch, name: str):  # noqa: F811 (server is the imported fixture)
    """Publish the synthetic archive of ``name`` and point the packaged manifest's entry at it."""
    manifest = downloads.load_manifest()
    entry = manifest[name]
    url = server.publish(f"{name}.zip", zip_bytes(ARCHIVES[name](entry)))
    patched = {key: dataclasses.replace(value, url=url) if key == name else value for key, value in manifest.items()}
    monkeypatch.setattr(downloads, "load_manifest", lambda path=None: patched)
    return patched[name]


def printed_form_values(output: str) -> dict:
    """The ``name = value`` lines cell 2.1 prints after "replaced by the example's", read as Python reads them."""
    block = output.split("replaced by the example's", 1)[1].splitlines()[1:]
    values = {}
    for line in block:
        name, literal = line.strip().split(" = ", 1)
        values[name] = ast.literal_eval(literal)
    return values


def check_with_the_task_loader(task: str, values: dict):
    """The dataset as the notebook's 3.1 data check reads it from the pasted values."""
    if task == "detection":
        return detection_dataset.load_detection_dataset(values["Training_images"], values["Training_annotations"],
                                                        progress=False)
    if task == "classification":
        return classification_dataset.load_classification_dataset(values["Training_images"], values["Labels_csv"],
                                                                  progress=False)
    return grading_dataset.load_grading_dataset(
        values["Training_images"], values["Labels_csv"], num_grades=values["num_grades"],
        grade_column=values["grade_column"], group_column=values["group_column"],
        filename_column=values["filename_column"], progress=False)


@pytest.mark.parametrize("notebook_name, name", OFFERED)
def test_the_example_cell_prints_form_values_the_data_check_accepts(notebook_name, name, server,  # noqa: F811
                                                                   monkeypatch, tmp_path, capsys):
    entry = serve_example(server, monkeypatch, name)
    typed = ["typed in 1.1"] * len(example_data.FORM_FIELDS[entry.task])
    used = notebook.use_example(name, str(tmp_path / "models"), *typed)
    values = printed_form_values(capsys.readouterr().out)
    assert list(values) == list(example_data.FORM_FIELDS[entry.task]) and used == tuple(values.values())
    dataset_dir = tmp_path / "models" / "example_data" / name
    root = dataset_dir / entry.root_subdir
    for field, value in values.items():
        if field.endswith(("_images", "_annotations", "_csv")) and value:
            path = pathlib.Path(value)
            assert path.exists() and dataset_dir in path.parents, (field, value)
    dataset = check_with_the_task_loader(entry.task, values)
    EXPECTATIONS[name](dataset, values, root)
    # The cell run again reuses the download and gives the same values.
    assert notebook.use_example(name, str(tmp_path / "models"), *typed) == used
    assert printed_form_values(capsys.readouterr().out) == values


# ----- what each dataset must give ---------------------------------------------------------------
def expect_bccd(dataset, values, root):
    assert values["Training_images"] == str(root / "JPEGImages") and len(dataset.items) == 364
    assert values["Test_images"] == "" and dataset.classes == ["Platelets", "RBC", "WBC"]


def expect_zerocost(dataset, values, root):
    assert values["Training_images"].endswith("Training/Images")
    assert values["Training_annotations"].endswith("Training/Annotations")
    assert values["Test_images"].endswith("Test/Images") and values["Test_annotations"].endswith("Test/Annotations")
    assert len(dataset.items) == 6


def expect_bccd_crops(dataset, values, root):
    assert values["Labels_csv"] == "" and values["Training_images"] == str(root / "BCCD_cropped")
    assert dataset.class_counts() == {"Basophil": 3, "Eosinophil": 88, "Lymphocyte": 33, "Monocyte": 20,
                                      "Neutrophil": 207}


def expect_zheng(dataset, values, root):
    assert values["Training_images"] == str(root / "Dataset 1")
    assert values["Labels_csv"].endswith("wbc_zheng2018/dl4cells_labels_dataset_1.csv")
    assert dataset.class_counts() == {"basophil": 1, "eosinophil": 22, "lymphocyte": 53, "monocyte": 48,
                                      "neutrophil": 176}
    assert all(item.path.suffix == ".bmp" for item in dataset.items)
    kinds = dataset.problem_counts()
    assert kinds.get(classification_dataset.COMPANION_FILE) == 300  # the masks, listed as masks
    assert classification_dataset.UNLABELLED_IMAGE not in kinds and classification_dataset.MISSING_FILE not in kinds
    # Row "1,2" became 001.bmp, lymphocyte; row "54,1" became 054.bmp, neutrophil.
    by_key = dataset.items_by_key()
    assert (by_key["001.bmp"].label, by_key["054.bmp"].label) == ("lymphocyte", "neutrophil")


def expect_dr(dataset, values, root):
    assert values["Training_images"] == str(root / "DR and maculopathy 10 classes") and values["num_grades"] == 5
    assert values["Labels_csv"].endswith("dr_srahim/dl4cells_grades.csv")
    assert dataset.class_counts() == {str(grade): count for grade, count in DR_GRADES.items()}
    assert len({item.group for item in dataset.items}) == 298
    assert not any(item.key.split("/")[-1].startswith(("Patient299", "Patient300")) for item in dataset.items)
    assert dataset.items_by_key()["1 - No DR/Patient001_L.jpg"].group == "Patient001"
    assert any(item.key.endswith("Patient254-R.jpg") and item.group == "Patient254" for item in dataset.items)
    assert not dataset.problem_counts().get(classification_dataset.MISSING_FILE)


EXPECTATIONS = {"bccd": expect_bccd, "zerocostdl4mic_mda_mb_231": expect_zerocost, "wbc_bccd_crops": expect_bccd_crops,
                "wbc_zheng2018": expect_zheng, "dr_srahim": expect_dr}


# ----- the pieces ------------------------------------------------------------------------------------
def test_voc_folder_pairs_find_images_and_xml_in_one_folder_or_two(tmp_path):
    (tmp_path / "a" / "img").mkdir(parents=True)
    (tmp_path / "a" / "xml").mkdir()
    (tmp_path / "b").mkdir()
    for index in range(3):
        (tmp_path / "a" / "img" / f"{index}.png").write_bytes(b"x")
        (tmp_path / "a" / "xml" / f"{index}.xml").write_bytes(b"x")
    (tmp_path / "b" / "0.tif").write_bytes(b"x")
    (tmp_path / "b" / "0.xml").write_bytes(b"x")
    (tmp_path / "b" / "other.xml").write_bytes(b"x")
    assert example_data.voc_folder_pairs(tmp_path) == [(tmp_path / "a" / "img", tmp_path / "a" / "xml", 3),
                                                       (tmp_path / "b", tmp_path / "b", 1)]


def test_a_conversion_that_does_not_fit_the_files_names_the_row(tmp_path):
    entry = downloads.load_manifest()["wbc_zheng2018"]
    (tmp_path / entry.labels_csv).write_text("image ID,class label\n1,2\nseven,1\n", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match=r"row 3 has ID 'seven'"):
        example_data.write_labels_csv(entry, tmp_path, tmp_path)


def test_masks_beside_labelled_images_are_companions_other_images_stay_unlabelled(tmp_path):
    for name in ("001.bmp", "001.png", "002.bmp", "003.png"):
        (tmp_path / name).write_bytes(image_bytes(name.rsplit(".", 1)[1].upper()))
    (tmp_path / "labels.csv").write_text("filename,label\n001.bmp,a\n002.bmp,b\n", encoding="utf-8")
    dataset = classification_dataset.load_classification_dataset(tmp_path, tmp_path / "labels.csv", progress=False)
    by_kind = {problem.kind: problem.file for problem in dataset.problems
               if problem.kind in (classification_dataset.COMPANION_FILE, classification_dataset.UNLABELLED_IMAGE)}
    assert by_kind == {classification_dataset.COMPANION_FILE: "001.png",
                       classification_dataset.UNLABELLED_IMAGE: "003.png"}
    assert [item.key for item in dataset.items] == ["001.bmp", "002.bmp"]


@pytest.mark.shared_data
def test_the_zheng_conversion_reads_the_real_label_file(tmp_path):
    """The curated copy keeps 'Class Labels of Dataset 1.csv' verbatim (its images became PNG there)."""
    shared = shared_dataset("wbc_zheng2018")
    entry = downloads.load_manifest()["wbc_zheng2018"]
    written = example_data.write_labels_csv(entry, shared, tmp_path)
    rows = written.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "filename,label" and len(rows) == 301 and rows[1] == "001.bmp,lymphocyte"
    labels = [row.split(",")[1] for row in rows[1:]]
    assert {name: labels.count(name) for name in set(labels)} == {"neutrophil": 176, "lymphocyte": 53, "monocyte": 48,
                                                                  "eosinophil": 22, "basophil": 1}
    curated = {path.stem for path in (shared / "Dataset_1" / "images").iterdir()}
    assert {row.split(",")[0].removesuffix(".bmp") for row in rows[1:]} == curated
    counted = sum(downloads.count_files(shared / "Dataset_1" / sub) for sub in ("images", "masks"))
    assert counted == entry.expected_files["Dataset 1"]
