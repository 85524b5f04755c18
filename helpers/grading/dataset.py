"""Grading datasets: an images folder plus a CSV of grades, and their check (the doctor).

The CSV has a ``filename`` column (path relative to the images folder), a grade column (default
``grade``; whole numbers 0..K-1) and optionally a group column (e.g. ``patient_id``: both eyes of
one patient must stay in one split). Neither the folder nor the CSV is ever written to.

The checks are the classification doctor's (``helpers.classification.dataset``: every image
decoded in full as training will, unreadable ones left out, missing files, images without a
row, identical bytes under two grades — every copy left out —, grades with few images, extreme
imbalance) plus the grade-specific ones below, each a
``helpers.problems.Problem``; nothing is dropped without being listed:

* a grade that is not a whole number 0..K-1 (row left out: K may be wrong, or a typo);
* a grade with no usable image at all (kept as an output of the model, listed).
"""

from __future__ import annotations

import collections
import csv
import pathlib
from typing import Any

from helpers import errors, images
from helpers import problems as problems_module
from helpers.classification import dataset as classification_dataset

GRADE_OUT_OF_RANGE = "grade_out_of_range"
GRADE_WITHOUT_IMAGES = "grade_without_images"
MISSING_GROUP = "missing_group"
PROBLEM_KINDS = {
    **classification_dataset.PROBLEM_KINDS,
    GRADE_OUT_OF_RANGE: "grade that is not a whole number 0..K-1 - row not used",
    GRADE_WITHOUT_IMAGES: "grade with no usable image - the model can still predict it",
    MISSING_GROUP: "row without a group - the image is its own group",
}
# The classification doctor's "class" findings, in grading words.
GRADE_WORDS = {classification_dataset.FEW_IMAGES: "grade with few images - kept, but its results will be unreliable",
               classification_dataset.CLASS_IMBALANCE: "some grades are far more frequent than others - kept"}
PROBLEM_KINDS.update(GRADE_WORDS)


def _grade(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


class GradingDataset(classification_dataset.ClassificationDataset):
    """Usable graded images (``items``: ``ClassificationItem`` with ``label`` = the grade as text) and problems.

    Attributes (besides the classification dataset's):
        num_grades: K.
        group_column: the CSV column used as group, or "".
    """

    def __init__(self, *arguments: Any, num_grades: int, group_column: str = "", **options: Any):
        super().__init__(*arguments, **options)
        self.num_grades, self.group_column = num_grades, group_column

    def grades(self) -> list[int]:
        """Grade of every usable item, in ``items`` order."""
        return [int(item.label) for item in self.items]

    def class_counts(self) -> dict[str, int]:
        """Usable images per grade "0".."K-1" (grades without images included, as 0)."""
        counts = collections.Counter(item.label for item in self.items)
        return {str(grade): counts[str(grade)] for grade in range(self.num_grades)}

    def summary_text(self) -> str:
        """Counts per grade, groups, then each kind of problem with examples and the fix."""
        counts = self.class_counts()
        lines = [f"Dataset check of {self.images_dir} with {self.labels_csv}:",
                 f"  {len(self.items)} usable images; per grade: " + ", ".join(f"{grade}: {count}" for grade, count
                                                                              in counts.items()) + "."]
        if self.has_groups:
            lines.append(f"  {len({item.group for item in self.items})} groups ({self.group_column}); a group is never "
                         f"split between training and validation.")
        if not self.problems:
            return "\n".join(lines + ["No problems found."])
        lines.extend(problems_module.problem_lines(self.problems, self.problem_counts(), PROBLEM_KINDS,
                                                   "dataset_problems.json"))
        return "\n".join(lines)

    def problem_counts(self) -> dict[str, int]:
        counts = collections.Counter(problem.kind for problem in self.problems)
        return {kind: counts[kind] for kind in PROBLEM_KINDS if counts[kind]}

    def plot_examples(self, output_path: str | pathlib.Path, per_class: int = 4) -> pathlib.Path:
        from helpers.classification import plots

        rows = {f"grade {grade}": [item.path for item in self.items if item.label == grade][:per_class]
                for grade in self.class_counts() if any(item.label == grade for item in self.items)}
        return plots.image_grid(rows, pathlib.Path(output_path), title="Examples of each grade")


def _read_rows(labels_csv: pathlib.Path, filename_column: str, grade_column: str,
               group_column: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of the CSV, column names lower-cased and cells stripped; DatasetError for missing columns."""
    try:
        with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip().lower() for name in reader.fieldnames or []]
            rows = [(number, {column: (value or "").strip() for column, value in zip(columns, row.values())})
                    for number, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise errors.DatasetError(f"{labels_csv}: cannot be read as a UTF-8 CSV ({error}). Save it as 'CSV UTF-8' "
                                  f"with columns filename,{grade_column}.") from None
    wanted = [filename_column.lower(), grade_column.lower()] + ([group_column.lower()] if group_column else [])
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise errors.DatasetError(f"{labels_csv}: no column {', '.join(missing)} (columns found: "
                                  f"{', '.join(columns) or 'none'}). Rename the column, or set filename_column, "
                                  f"grade_column and group_column to the names used in the file.")
    return rows


def _entries(images_dir: pathlib.Path, labels_csv: pathlib.Path, num_grades: int, columns: tuple[str, str, str],
             problems: list[problems_module.Problem]) -> list[tuple[str, str, str | None]]:
    """(key, grade as text, group) for every usable row; problems for the others."""
    filename_column, grade_column, group_column = columns
    entries, seen = [], set()
    for number, row in _read_rows(labels_csv, filename_column, grade_column, group_column):
        key = pathlib.PurePosixPath(row[filename_column.lower()].replace("\\", "/")).as_posix()
        where, text = f"{labels_csv.name} row {number}", row[grade_column.lower()]
        grade = _grade(text)
        if key in seen:
            problems.append(problems_module.Problem(classification_dataset.DUPLICATE_ROW, key, None, f"{where}: {key} was "
                                           f"already listed; this row is ignored.", "Keep one row per image."))
            continue
        seen.add(key)
        if grade is None or not 0 <= grade < num_grades:
            problems.append(problems_module.Problem(GRADE_OUT_OF_RANGE, key, None, f"{where}: grade {text!r} of {key} is not "
                                           f"a whole number from 0 to {num_grades - 1}.",
                                           "Fix the grade in the CSV, or set num_grades to match your scale."))
        elif not (images_dir / key).is_file():
            problems.append(problems_module.Problem(classification_dataset.MISSING_FILE, key, None, f"{where}: "
                                           f"{images_dir / key} does not exist.",
                                           "Fix the file name in the CSV or add the image to the images folder."))
        else:
            group = row.get(group_column.lower(), "") if group_column else ""
            if group_column and not group:
                problems.append(problems_module.Problem(MISSING_GROUP, key, None, f"{where}: {key} has no {group_column}.",
                                               f"Fill in its {group_column} so that it is split with its group."))
            entries.append((key, str(grade), group or (key if group_column else None)))
    for path in images.list_images(images_dir):
        if path.relative_to(images_dir).as_posix() not in seen:
            problems.append(problems_module.Problem(classification_dataset.UNLABELLED_IMAGE, path.name, None,
                                           f"{path.name}: has no row in {labels_csv.name}.",
                                           f"Add a row filename,{grade_column} for it to the CSV."))
    return entries


def _in_grading_words(problems: list[problems_module.Problem]) -> list[problems_module.Problem]:
    """The classification doctor's class findings reworded for grades (same kinds, same facts)."""
    for problem in problems:
        problem.message = problem.message.replace("class '", "grade '")
        if problem.kind == classification_dataset.CLASS_IMBALANCE:
            problem.fix = ("Keep class_balance = balanced_sampling (or class_weights) and judge the model by quadratic "
                           "kappa and per-grade sensitivity; add images of the rare grades if you can.")
        elif problem.kind == classification_dataset.FEW_IMAGES:
            problem.fix = "Add images of this grade; its sensitivity will be measured on very few images."
    return problems


def load_grading_dataset(images_dir: str | pathlib.Path, labels_csv: str | pathlib.Path, num_grades: int = 5,
                         grade_column: str = "grade", group_column: str = "", minimum_images_per_grade: int = 10,
                         progress: bool = True, filename_column: str = "filename") -> GradingDataset:
    """Read and check a grading dataset (module docstring for the checks and what happens to each).

    Args:
        images_dir: the images folder (never written to).
        labels_csv: CSV with ``filename_column``, ``grade_column`` and optionally ``group_column``.
        num_grades: K; grades are 0..K-1.
        minimum_images_per_grade: grades with fewer usable images are listed.
        progress: show a progress bar while the images are decoded and hashed.

    Raises:
        DatasetError: the folder or CSV is missing, or the CSV lacks a needed column.
    """
    images_dir = pathlib.Path(images_dir).expanduser()
    if not images_dir.is_dir():
        raise errors.DatasetError(f"{images_dir}: folder not found. Fix the Training_images path in form 1.1.")
    csv_path = pathlib.Path(str(labels_csv)).expanduser()
    if not str(labels_csv).strip() or not csv_path.is_file():
        raise errors.DatasetError(f"{labels_csv!r}: labels CSV not found. Give Labels_csv, a CSV with columns "
                                  f"filename,{grade_column} in form 1.1.")
    problems: list[problems_module.Problem] = []
    entries = _entries(images_dir, csv_path, num_grades, (filename_column, grade_column, group_column), problems)
    # The classification doctor decodes and hashes every image and drops identical bytes under two grades.
    items = classification_dataset.drop_duplicates(
        classification_dataset.read_items(images_dir, entries, problems, progress), problems)
    problems.extend(_in_grading_words(classification_dataset.class_problems(items, minimum_images_per_grade)))
    present = {item.label for item in items}
    problems.extend(problems_module.Problem(GRADE_WITHOUT_IMAGES, str(grade), None, f"grade {grade} has no usable image.",
                                   "Add images of this grade, or lower num_grades if your scale has fewer grades.")
                    for grade in range(num_grades) if str(grade) not in present)
    return GradingDataset(images_dir, csv_path, items, problems, has_groups=bool(group_column),
                          num_grades=num_grades, group_column=group_column)
