"""Example datasets made ready for form 1.1: what cell 2.1 of every notebook runs for its ``Example_dataset``.

``prepare_example(name, target_dir)`` downloads the manifest entry (``downloads.fetch_example``),
writes a labels CSV where the published labels do not fit the notebook's loader, and returns the
values of form 1.1's data fields, each folder or file checked to exist. ``form_lines`` turns them into
the lines the cell prints (``Training_images = "/content/..."``).

Two published layouts need a labels CSV, written **into the download folder**
(``<target_dir>/<name>/``, which ``fetch_example`` created; nothing of the user's is touched). The
manifest entry's ``labels_conversion`` says how:

* ``"kind": "id_csv"`` (wbc_zheng2018): the entry's ``labels_csv`` has an ID column and a label
  column (``image ID,class label``) with numeric IDs and label numbers; written:
  ``filename,label`` with ``filename = filename_pattern.format(id=int(ID))`` (``"{id:03d}.bmp"``:
  ``1`` -> ``001.bmp``) and ``label = label_names[number]``.
* ``"kind": "grade_folders"`` (dr_srahim): the grade comes from the number that starts each
  sub-folder's name (``grade_of_folder``), the group from the file name (``group_pattern``); the
  files named in ``exclude`` are left out; written: ``filename,grade,patient_id,source_folder``.

An entry without ``images_subdir`` (a source whose folder names are not recorded) is laid out by
looking: every folder of images is paired with the folder of XML files with the same names.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import re
from typing import Any

from helpers import downloads, errors, images

# The data fields of form 1.1 per task, in form order; every one is printed (empty = clear it).
FORM_FIELDS = {
    "detection": ("Training_images", "Training_annotations", "Test_images", "Test_annotations"),
    "classification": ("Training_images", "Labels_csv", "Test_images", "Test_labels_csv"),
    "grading": ("Training_images", "Labels_csv", "filename_column", "grade_column", "group_column", "num_grades",
                "Test_images", "Test_labels_csv"),
}
# Column names of the CSVs written here (the grading form's defaults).
GRADING_COLUMNS = {"filename_column": "filename", "grade_column": "grade", "group_column": "patient_id"}


@dataclasses.dataclass
class ExampleDataset:
    """A downloaded example and what to paste into form 1.1.

    Attributes:
        entry: its manifest entry.
        root: the dataset root folder (``<target_dir>/<name>/<root_subdir>``).
        form_values: form field -> value (paths as text, ``""`` for fields to leave empty), for
            every field of ``FORM_FIELDS[entry.task]``.
        written: the labels CSV written into the download folder, or None.
    """

    entry: downloads.ManifestEntry
    root: pathlib.Path
    form_values: dict[str, Any]
    written: pathlib.Path | None = None


def form_lines(values: dict[str, Any]) -> list[str]:
    """``name = value`` lines as Python (and Colab forms) read them: text quoted, numbers bare."""
    return [f"{name} = {json.dumps(value, ensure_ascii=False)}" for name, value in values.items()]


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    """Write our own generated file atomically; an identical file is left as it is."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8", newline="")
    os.replace(partial, path)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _conversion_error(entry: downloads.ManifestEntry, problem: str) -> errors.ConfigError:
    return errors.ConfigError(f"example dataset '{entry.name}': {problem}. The manifest entry's labels_conversion "
                              f"does not fit the downloaded files: report this to the DL4Cells maintainers.")


def _id_csv_rows(entry: downloads.ManifestEntry, root: pathlib.Path, spec: dict[str, Any]) -> list[list[str]]:
    """``[filename, label]`` per row of the source CSV (ID column -> file name, label number -> name)."""
    source = root / entry.labels_csv
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise _conversion_error(entry, f"{source} cannot be read ({error})") from None
    output = []
    for number, row in enumerate(rows, start=2):
        identifier, label = (row.get(spec["id_column"]) or "").strip(), (row.get(spec["label_column"]) or "").strip()
        if not identifier.isdigit() or label not in spec["label_names"]:
            raise _conversion_error(entry, f"{source.name} row {number} has ID {identifier!r} and label {label!r}, "
                                           f"expected a number and one of {', '.join(spec['label_names'])}")
        output.append([spec["filename_pattern"].format(id=int(identifier)), spec["label_names"][label]])
    return output


def _grade_folder_rows(entry: downloads.ManifestEntry, images_dir: pathlib.Path,
                       spec: dict[str, Any]) -> list[list[Any]]:
    """``[filename, grade, patient, folder]`` for every image in a graded sub-folder, ``exclude`` left out."""
    excluded, output = set(spec.get("exclude", ())), []
    for folder in sorted(path for path in images_dir.iterdir() if path.is_dir()):
        match = re.match(r"\s*(\d+)", folder.name)
        if match is None or match.group(1) not in spec["grade_of_folder"]:
            raise _conversion_error(entry, f"folder '{folder.name}' does not start with one of the numbers "
                                           f"{', '.join(spec['grade_of_folder'])}")
        for path in images.list_images(folder):
            if path.name in excluded:
                continue
            group = re.match(spec["group_pattern"], path.name)
            output.append([f"{folder.name}/{path.name}", spec["grade_of_folder"][match.group(1)],
                           group.group(1) if group else path.stem, folder.name])
    return output


def write_labels_csv(entry: downloads.ManifestEntry, root: pathlib.Path, dataset_dir: pathlib.Path) -> pathlib.Path:
    """Write the labels CSV that ``entry.labels_conversion`` describes into ``dataset_dir``; returns its path.

    Raises:
        ConfigError: an unknown conversion kind, or files that do not fit it (named in the message).
    """
    spec = entry.labels_conversion
    if spec.get("kind") == "id_csv":
        header, rows = ["filename", "label"], _id_csv_rows(entry, root, spec)
    elif spec.get("kind") == "grade_folders":
        header = [GRADING_COLUMNS["filename_column"], GRADING_COLUMNS["grade_column"],
                  GRADING_COLUMNS["group_column"], "source_folder"]
        rows = _grade_folder_rows(entry, root / entry.images_subdir, spec)
    else:
        raise _conversion_error(entry, f"labels_conversion kind {spec.get('kind')!r} is not 'id_csv' or "
                                       f"'grade_folders'")
    path = dataset_dir / spec["output_csv"]
    _write_if_changed(path, _csv_text(header, rows))
    return path


def voc_folder_pairs(root: pathlib.Path) -> list[tuple[pathlib.Path, pathlib.Path, int]]:
    """(images folder, XML folder, number of images with an XML of the same name) under ``root``.

    Each images folder is paired with the XML folder sharing most names with it (possibly itself);
    pairs with the most matches first. Hidden files and ``__MACOSX`` are ignored.
    """
    image_stems: dict[pathlib.Path, set[str]] = {}
    xml_stems: dict[pathlib.Path, set[str]] = {}
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "__MACOSX" in path.parts:
            continue
        if images.is_image_file(path):
            image_stems.setdefault(path.parent, set()).add(path.stem)
        elif path.suffix.lower() == ".xml":
            xml_stems.setdefault(path.parent, set()).add(path.stem)
    pairs = []
    for folder, stems in image_stems.items():
        matches = sorted(((len(stems & names), str(xml_folder)) for xml_folder, names in xml_stems.items()),
                         reverse=True)
        if matches and matches[0][0]:
            pairs.append((folder, pathlib.Path(matches[0][1]), matches[0][0]))
    return sorted(pairs, key=lambda pair: (-pair[2], str(pair[0])))


def _path_says(root: pathlib.Path, folder: pathlib.Path, word: str) -> bool:
    """True when ``word`` is in ``folder``'s path below ``root`` (case-insensitive)."""
    return word in folder.relative_to(root).as_posix().lower()


def _found_detection_folders(root: pathlib.Path) -> dict[str, str]:
    """Training (and test) folders of a detection example whose folder names the manifest does not record."""
    pairs = voc_folder_pairs(root)
    if not pairs:
        raise errors.DatasetError(f"{root}: no folder of images with XML files of the same names was found. Look "
                                  f"at the folders listed above and type them into form 1.1 by hand.")
    training = next((pair for pair in pairs if _path_says(root, pair[0], "train")), pairs[0])
    test = next((pair for pair in pairs if pair is not training and _path_says(root, pair[0], "test")), None)
    values = {"Training_images": str(training[0]), "Training_annotations": str(training[1])}
    if test is not None:
        values.update(Test_images=str(test[0]), Test_annotations=str(test[1]))
    return values


def _existing(entry: downloads.ManifestEntry, field: str, path: pathlib.Path, folder: bool) -> str:
    """``str(path)``, after checking that it is there (a folder or a file)."""
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        raise errors.DatasetError(f"example dataset '{entry.name}': the {kind} for {field}, {path}, is not there "
                                  f"after the download. Run the cell again; if it persists, the source has changed: "
                                  f"report it to the DL4Cells maintainers.")
    return str(path)


def _form_values(entry: downloads.ManifestEntry, root: pathlib.Path, labels: pathlib.Path | None) -> dict[str, Any]:
    """Every data field of the task's form 1.1, from the manifest entry and the extracted folder."""
    values: dict[str, Any] = dict.fromkeys(FORM_FIELDS[entry.task], "")
    if entry.task == "detection" and not entry.images_subdir:
        values.update(_found_detection_folders(root))
    else:
        values["Training_images"] = str(root / entry.images_subdir)
        if entry.task == "detection":
            values["Training_annotations"] = str(root / entry.annotations_subdir)
    if entry.task != "detection":
        values["Labels_csv"] = str(labels) if labels else str(root / entry.labels_csv) if entry.labels_csv else ""
    if entry.task == "grading":
        values.update(GRADING_COLUMNS, num_grades=int(entry.labels_conversion.get("num_grades", 5)))
    for field, value in values.items():
        if field.endswith(("_images", "_annotations", "_csv")) and value:
            values[field] = _existing(entry, field, pathlib.Path(value), folder=not field.endswith("_csv"))
    return values


def prepare_example(name: str, target_dir: str | pathlib.Path,
                    manifest: dict[str, downloads.ManifestEntry] | None = None,
                    progress: bool = True) -> ExampleDataset:
    """Download (or find) an example dataset and compute the values to paste into form 1.1.

    Args:
        name: a manifest entry name.
        target_dir: folder for example data (the notebooks use ``<model_path>/example_data``).
        manifest: entries to use; default: the packaged manifest.
        progress: show a progress bar while downloading.

    Returns:
        The dataset, with ``form_values`` checked to exist.

    Raises:
        ConfigError: unknown name, or a labels conversion that does not fit the files.
        DownloadError: as ``downloads.fetch_example``.
        DatasetError: a folder or file the form needs is missing after the download.
    """
    manifest = manifest if manifest is not None else downloads.load_manifest()
    root = downloads.fetch_example(name, target_dir, manifest=manifest, progress=progress)
    entry = manifest[name]
    written = write_labels_csv(entry, root, pathlib.Path(target_dir) / name) if entry.labels_conversion else None
    return ExampleDataset(entry, root, _form_values(entry, root, written), written)
