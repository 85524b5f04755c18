"""Classification datasets: read the images and their labels, and check them (the doctor).

Two layouts are accepted, and neither folder is ever written to:

* **one subfolder per class**: ``images_dir/<class>/<image>``; the key of an image is its
  path relative to ``images_dir`` (``"Neutrophil/BloodImage_00001_1.jpg"``);
* **an images folder plus a CSV** with columns ``filename,label`` and optionally ``group``
  (e.g. a patient or slide ID, so that one group never straddles training and validation);
  the key is the ``filename`` as written in the CSV (relative to ``images_dir``).

The doctor never raises for a problem it can work around; each becomes a
``helpers.problems.Problem`` (kind, file, object_index None, message, fix) and the dataset keeps
what is usable. The policy:

* every image is decoded in full with the decoder training uses (``helpers.images.check_image``):
  truncated, empty and non-image files are left out (listed) instead of stopping training; bytes
  of another format than the extension says that still decode are used (listed as information);
* CSV rows naming a missing file, rows without a label and images without a row are left out
  (listed); an image without a row that has the name of a labelled image and another extension
  (``001.png`` beside the labelled ``001.bmp``, e.g. its mask) is a companion file: not used, and
  listed as such rather than as unlabelled;
* the same bytes under two different labels (found by SHA-256) leave every copy out: which label
  is right cannot be decided here; the same bytes twice under one label are kept but listed
  (the copies may land in training and validation and flatter the validation figures);
* classes with fewer than ``minimum_images_per_class`` images and a most/least frequent class
  ratio above ``IMBALANCE_RATIO`` are listed with what to do (nothing is dropped).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import pathlib
from typing import Any

from helpers import display, errors, images
from helpers import problems as problems_module
from helpers import progress as progress_module

UNREADABLE_IMAGE = problems_module.UNREADABLE_IMAGE
EXTENSION_MISMATCH = problems_module.EXTENSION_MISMATCH
MISSING_FILE = "missing_file"
MISSING_LABEL = "missing_label"
UNLABELLED_IMAGE = "unlabelled_image"
DUPLICATE_ROW = "duplicate_row"
CONFLICTING_DUPLICATE = "duplicate_with_other_label"
DUPLICATE_IMAGE = "duplicate_image"
FEW_IMAGES = "few_images"
CLASS_IMBALANCE = "class_imbalance"
COMPANION_FILE = "companion_file"

# kind -> what happens to the data, in plain words (shown in summaries).
PROBLEM_KINDS = {
    UNREADABLE_IMAGE: "image cannot be decoded (truncated, empty or not an image) - not used",
    EXTENSION_MISMATCH: problems_module.EXTENSION_MISMATCH_MEANING,
    MISSING_FILE: "CSV row names a file that is not in the images folder - not used",
    MISSING_LABEL: "CSV row without a label - not used",
    UNLABELLED_IMAGE: "image without a label (no CSV row, or outside a class subfolder) - not used",
    DUPLICATE_ROW: "the same file listed twice in the CSV - the first row is used",
    CONFLICTING_DUPLICATE: "identical image under two different labels - every copy left out",
    DUPLICATE_IMAGE: "identical image twice under the same label - both kept",
    FEW_IMAGES: "class with few images - kept, but its results will be unreliable",
    CLASS_IMBALANCE: "some classes are far more frequent than others - kept",
    COMPANION_FILE: "file named like a labelled image with another extension (e.g. its mask) - not used",
}
# Most/least frequent class ratio above which the imbalance is reported.
IMBALANCE_RATIO = 10.0


@dataclasses.dataclass
class ClassificationItem:
    """One usable labelled image.

    Attributes:
        key: path relative to the images folder, POSIX separators (also the split's key).
        path: the image file.
        label: its class name.
        group: its group (patient, slide...) or None.
        sha256: hex digest of the file's bytes.
        width, height: pixels.
    """

    key: str
    path: pathlib.Path
    label: str
    group: str | None = None
    sha256: str = ""
    width: int = 0
    height: int = 0


class ClassificationDataset:
    """Usable labelled images of a classification dataset and every problem found.

    Attributes:
        images_dir: the folder given (never written to).
        labels_csv: the CSV given, or None for the one-subfolder-per-class layout.
        items: usable images, sorted by key.
        problems: every finding (reading first, then duplicates, then class counts).
        classes: sorted class names of the usable images.
        has_groups: True when the CSV had a ``group`` column.
    """

    def __init__(self, images_dir: pathlib.Path, labels_csv: pathlib.Path | None, items: list[ClassificationItem],
                 problems: list[problems_module.Problem], has_groups: bool = False):
        self.images_dir = pathlib.Path(images_dir)
        self.labels_csv = labels_csv
        self.items = sorted(items, key=lambda item: item.key)
        self.problems = problems
        self.has_groups = has_groups
        self.classes = sorted({item.label for item in self.items})

    def __repr__(self) -> str:
        return (f"ClassificationDataset({len(self.items)} images, {len(self.classes)} classes, "
                f"{len(self.problems)} problems, images_dir={str(self.images_dir)!r})")

    def class_counts(self) -> dict[str, int]:
        """Usable images per class, classes sorted by name."""
        counts = collections.Counter(item.label for item in self.items)
        return {name: counts[name] for name in self.classes}

    def items_by_key(self) -> dict[str, ClassificationItem]:
        return {item.key: item for item in self.items}

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind, kinds in ``PROBLEM_KINDS`` order."""
        counts = collections.Counter(problem.kind for problem in self.problems)
        return {kind: counts[kind] for kind in PROBLEM_KINDS if counts[kind]}

    def problems_table(self) -> list[dict[str, Any]]:
        """Every problem as a dict row with keys kind, file, object_index, message, fix."""
        return [dataclasses.asdict(problem) for problem in self.problems]

    def statistics(self) -> dict[str, Any]:
        """``images``, ``classes``, ``images_per_class``, ``groups`` (count or None) and image size ranges."""
        widths = [item.width for item in self.items] or [0]
        heights = [item.height for item in self.items] or [0]
        return {"images": len(self.items), "classes": list(self.classes), "images_per_class": self.class_counts(),
                "groups": len({item.group for item in self.items}) if self.has_groups else None,
                "width": {"min": min(widths), "max": max(widths)}, "height": {"min": min(heights), "max": max(heights)},
                "problems": self.problem_counts()}

    def summary_text(self) -> str:
        """A short plain-language summary: counts, then each kind of problem with examples and the fix."""
        statistics = self.statistics()
        source = f"{self.images_dir} with {self.labels_csv}" if self.labels_csv else f"{self.images_dir} (one subfolder per class)"
        lines = [f"Dataset check of {source}:",
                 f"  {statistics['images']} usable images in {len(self.classes)} classes: "
                 + (", ".join(f"{name} {count}" for name, count in statistics["images_per_class"].items()) or "none") + ".",
                 f"  Image sizes: {statistics['width']['min']}–{statistics['width']['max']} × "
                 f"{statistics['height']['min']}–{statistics['height']['max']} pixels."]
        if statistics["groups"] is not None:
            lines.append(f"  {statistics['groups']} groups (a group is never split between training and validation).")
        if not self.problems:
            lines.append("No problems found.")
            return "\n".join(lines)
        lines.extend(problems_module.problem_lines(self.problems, self.problem_counts(), PROBLEM_KINDS,
                                                   "dataset_problems.json"))
        return "\n".join(lines)

    def plot_class_counts(self, output_path: str | pathlib.Path) -> pathlib.Path:
        """Save a bar chart of images per class; returns its path."""
        from helpers.classification import plots

        return plots.class_counts(self.class_counts(), pathlib.Path(output_path))

    def plot_examples(self, output_path: str | pathlib.Path, per_class: int = 4) -> pathlib.Path:
        """Save a grid with up to ``per_class`` images of every class (one row per class); returns its path."""
        from helpers.classification import plots

        rows = {name: [item.path for item in self.items if item.label == name][:per_class] for name in self.classes}
        return plots.image_grid(rows, pathlib.Path(output_path), title="Examples of each class")

    def show_summary(self, output_dir: str | pathlib.Path) -> list[pathlib.Path]:
        """Print ``summary_text()``; save the class-count and example plots into ``output_dir`` and show them."""
        print(self.summary_text())
        folder = pathlib.Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [self.plot_class_counts(folder / "class_counts.png")]
        if self.items:
            paths.append(self.plot_examples(folder / "class_examples.png"))
        display.show_images(paths)
        return paths


# ---------------------------------------------------------------- reading the layouts


def _key(path: pathlib.Path, images_dir: pathlib.Path) -> str:
    return path.relative_to(images_dir).as_posix()


def _read_class_folders(images_dir: pathlib.Path, problems: list[problems_module.Problem]) -> list[tuple[str, str, None]]:
    """(key, label, None) for every image in a class subfolder; loose images are listed as unlabelled."""
    subfolders = sorted(path for path in images_dir.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not subfolders:
        raise errors.DatasetError(f"{images_dir}: holds no class subfolders. Put the images of each class in a "
                                  f"subfolder named after the class, or give labels_csv (columns filename,label).")
    for loose in images.list_images(images_dir):
        problems.append(problems_module.Problem(UNLABELLED_IMAGE, loose.name, None, f"{loose.name}: lies outside every class "
                                       f"subfolder, so it has no label.", "Move it into the subfolder of its class."))
    return [(_key(path, images_dir), folder.name, None) for folder in subfolders for path in images.list_images(folder)]


def _csv_rows(labels_csv: pathlib.Path) -> tuple[list[dict[str, str]], bool]:
    """Rows of the labels CSV (column names lower-cased, cells stripped) and whether it has a group column."""
    try:
        with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip().lower() for name in reader.fieldnames or []]
            rows = [{column: (value or "").strip() for column, value in zip(columns, row.values())} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise errors.DatasetError(f"{labels_csv}: cannot be read as a UTF-8 CSV ({error}). "
                                  f"Save it as 'CSV UTF-8' with columns filename,label.") from None
    missing = [name for name in ("filename", "label") if name not in columns]
    if missing:
        raise errors.DatasetError(f"{labels_csv}: no column {', '.join(missing)} (columns found: "
                                  f"{', '.join(columns) or 'none'}). Name the columns filename,label (and group).")
    return rows, "group" in columns


def _read_csv_layout(images_dir: pathlib.Path, labels_csv: pathlib.Path,
                     problems: list[problems_module.Problem]) -> tuple[list[tuple[str, str, str | None]], bool]:
    """(key, label, group) for every usable CSV row, and whether the CSV has groups."""
    rows, has_groups = _csv_rows(labels_csv)
    entries, seen = [], set()
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        key = pathlib.PurePosixPath(row["filename"].replace("\\", "/")).as_posix()
        where = f"{labels_csv.name} row {number}"
        if key in seen:
            problems.append(problems_module.Problem(DUPLICATE_ROW, key, None, f"{where}: {key} was already listed; this row "
                                           f"is ignored.", "Keep one row per image in the CSV."))
            continue
        seen.add(key)
        if not row["label"]:
            problems.append(problems_module.Problem(MISSING_LABEL, key, None, f"{where}: {key} has no label.",
                                           "Fill in its label, or delete the row."))
        elif not (images_dir / key).is_file():
            problems.append(problems_module.Problem(MISSING_FILE, key, None, f"{where}: {images_dir / key} does not exist.",
                                           "Fix the file name in the CSV or add the image to the images folder."))
        else:
            entries.append((key, row["label"], row.get("group") or None if has_groups else None))
    problems.extend(_unlisted_images(images_dir, {key for key, _, _ in entries}, seen, labels_csv.name))
    return entries, has_groups


def _unlisted_images(images_dir: pathlib.Path, labelled: set[str], listed: set[str],
                     csv_name: str) -> list[problems_module.Problem]:
    """A problem for every image in ``images_dir`` without a CSV row: a companion file when a
    labelled image has its name with another extension (``001.png`` beside ``001.bmp``), else unlabelled."""
    labelled_by_stem = {pathlib.PurePosixPath(key).with_suffix("").as_posix(): key for key in labelled}
    problems = []
    for path in images.list_images(images_dir):
        key = _key(path, images_dir)
        if key in listed:
            continue
        partner = labelled_by_stem.get(pathlib.PurePosixPath(key).with_suffix("").as_posix())
        if partner is not None:
            problems.append(problems_module.Problem(
                COMPANION_FILE, key, None, f"{key}: has no row, and shares its name with the labelled {partner} "
                f"(a mask?); not used.", "Nothing to do for masks; an image of its own needs another name and a "
                "row in the CSV."))
        else:
            problems.append(problems_module.Problem(
                UNLABELLED_IMAGE, path.name, None, f"{path.name}: has no row in {csv_name}.",
                "Add a row filename,label for it to the CSV."))
    return problems


# ---------------------------------------------------------------- checks


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_items(images_dir: pathlib.Path, entries, problems: list[problems_module.Problem],
                progress: bool) -> list[ClassificationItem]:
    """Decode every image once, as training will (so unreadable ones are found now, not mid-training), and hash it."""
    items = []
    for key, label, group in progress_module.bar(entries, "Checking images", enabled=progress):
        path = images_dir / key
        check, image_problems = problems_module.check_image_file(path, key)
        problems.extend(image_problems)
        if check is not None:
            items.append(ClassificationItem(key, path, label, group, _sha256(path), check.width, check.height))
    return items


def drop_duplicates(items: list[ClassificationItem], problems: list[problems_module.Problem]) -> list[ClassificationItem]:
    """List identical files; drop every copy of a file that carries two different labels."""
    by_hash: dict[str, list[ClassificationItem]] = collections.defaultdict(list)
    for item in items:
        by_hash[item.sha256].append(item)
    dropped = set()
    for copies in by_hash.values():
        if len(copies) < 2:
            continue
        names = " and ".join(f"{item.key} ({item.label})" for item in copies)
        if len({item.label for item in copies}) > 1:
            dropped.update(item.key for item in copies)
            problems.append(problems_module.Problem(CONFLICTING_DUPLICATE, copies[0].key, None, f"identical images with "
                                           f"different labels: {names}; all left out.",
                                           "Decide which label is right and delete the other copy."))
        else:
            problems.append(problems_module.Problem(DUPLICATE_IMAGE, copies[0].key, None, f"identical images: {names}.",
                                           "Delete the extra copies so that no image is both trained and validated on."))
    return [item for item in items if item.key not in dropped]


def class_problems(items: list[ClassificationItem], minimum: int) -> list[problems_module.Problem]:
    """Classes with fewer than ``minimum`` images, and extreme imbalance."""
    counts = collections.Counter(item.label for item in items)
    problems = [problems_module.Problem(FEW_IMAGES, name, None, f"class {name!r} has {count} images (fewer than {minimum}).",
                               "Add images of this class, or merge it with a related class.")
                for name, count in sorted(counts.items()) if count < minimum]
    if len(counts) > 1:
        (most, most_count), (least, least_count) = max(counts.items(), key=lambda pair: pair[1]), \
            min(counts.items(), key=lambda pair: pair[1])
        if most_count / least_count > IMBALANCE_RATIO:
            problems.append(problems_module.Problem(CLASS_IMBALANCE, least, None, f"{most!r} has {most_count} images, "
                                           f"{least!r} only {least_count} ({most_count / least_count:.0f}× fewer).",
                                           "Keep class_balance = class_weights (or balanced_sampling) and judge the "
                                           "model by balanced accuracy; add images of the rare classes if you can."))
    return problems


def load_classification_dataset(images_dir: str | pathlib.Path, labels_csv: str | pathlib.Path | None = None,
                                minimum_images_per_class: int = 10, progress: bool = True) -> ClassificationDataset:
    """Read and check a classification dataset (see the module docstring for layouts and policy).

    Args:
        images_dir: the images folder (with one subfolder per class when ``labels_csv`` is empty).
        labels_csv: a CSV with columns filename,label[,group], or None/"" for class subfolders.
        minimum_images_per_class: classes with fewer images are listed.
        progress: show a progress bar while the images are decoded.

    Returns:
        The dataset; never raises for problems it can list.

    Raises:
        DatasetError: the folder or CSV is missing or unreadable, or there are no class subfolders.
    """
    images_dir = pathlib.Path(images_dir).expanduser()
    if not images_dir.is_dir():
        raise errors.DatasetError(f"{images_dir}: folder not found. Fix the Training_images path in form 1.1.")
    problems: list[problems_module.Problem] = []
    csv_path = pathlib.Path(labels_csv).expanduser() if labels_csv and str(labels_csv).strip() else None
    if csv_path is not None and not csv_path.is_file():
        raise errors.DatasetError(f"{csv_path}: labels CSV not found. Fix the Labels_csv path, or leave it empty "
                                  f"for one subfolder per class.")
    if csv_path is None:
        entries, has_groups = _read_class_folders(images_dir, problems), False
    else:
        entries, has_groups = _read_csv_layout(images_dir, csv_path, problems)
    items = drop_duplicates(read_items(images_dir, entries, problems, progress), problems)
    problems.extend(class_problems(items, minimum_images_per_class))
    return ClassificationDataset(images_dir, csv_path, items, problems, has_groups)


def read_labels_csv(path: str | pathlib.Path) -> dict[str, str]:
    """``{filename: label}`` of a labels CSV (e.g. a QC ground truth), first row of a file wins."""
    rows, _ = _csv_rows(pathlib.Path(path))
    labels: dict[str, str] = {}
    for row in rows:
        labels.setdefault(row["filename"], row["label"])
    return labels
