"""The files a detector's boxes become, shared by prediction, QC and the annotation loop: CSV, VOC XML, COCO.

Shared layer (no task package is imported): ``helpers.qc`` scores these files and
``helpers.detection`` writes them; overlays are drawn by ``helpers.detection.outputs``.

* ``predictions.csv``: UTF-8, one row per box, columns ``PREDICTION_COLUMNS``
  (``filename,class,score,xmin,ymin,xmax,ymax``), coordinates in pixels of the original image
  (continuous edges, as in ``helpers.voc``). ``read_predictions_csv`` reads the same format
  from any tool: extra columns are ignored, a UTF-8 byte-order mark is tolerated.
* one PASCAL VOC XML per image, with a ``<score>`` per object: our own reader and LabelImg /
  CVAT open it, so predictions can be corrected and used as new training data.
* a COCO results JSON (``[{image_id, category_id, bbox: [x, y, w, h], score}]``, ``w = xmax - xmin``).
* ``counts.csv``: one row per image, ``filename,<class 1>,...,<class N>,total,score_threshold``:
  the number of detections per class with score >= the threshold, stated on every row
  (``score_threshold`` column, so any CSV reader keeps it with the numbers). Optionally each object
  is counted once (``count_per_image(merge_iou=...)``): boxes of *different* classes on one object
  (IoU >= ``COUNT_MERGE_IOU``) count once, as the class of the highest score (``merge_across_classes``);
  predictions.csv keeps every box.

This module never imports TensorFlow.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
from typing import Iterable, Mapping, Sequence

import numpy as np

from helpers import errors, tables, voc

PREDICTION_COLUMNS = ("filename", "class", "score", "xmin", "ymin", "xmax", "ymax")
SCORE_DECIMALS = 4
COORDINATE_DECIMALS = 2


@dataclasses.dataclass(frozen=True)
class Detection:
    """One predicted box.

    Attributes:
        filename: the image file name (no folder), e.g. "BloodImage_00001.jpg".
        class_name: the predicted class.
        score: confidence 0..1.
        xmin, ymin, xmax, ymax: float pixels of the original image (continuous edges, no +1).
    """

    filename: str
    class_name: str
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float


# ---------------------------------------------------------------- CSV


def _csv_row(detection: Detection) -> list[str]:
    coordinates = [f"{getattr(detection, name):.{COORDINATE_DECIMALS}f}" for name in ("xmin", "ymin", "xmax", "ymax")]
    return [detection.filename, detection.class_name, f"{detection.score:.{SCORE_DECIMALS}f}"] + coordinates


def write_predictions_csv(detections: Iterable[Detection], path: str | pathlib.Path) -> pathlib.Path:
    """Write detections as ``predictions.csv``.

    Args:
        detections: the boxes, written in the order given.
        path: the CSV to write (parent folders are created; an existing file is replaced).

    Returns:
        ``path`` as a Path. UTF-8 without BOM, header ``PREDICTION_COLUMNS``, scores with 4
        decimals, coordinates with 2.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerows(_csv_row(detection) for detection in detections)
    return path


def _csv_error(path: pathlib.Path, line: int, problem: str, fix: str) -> errors.DatasetError:
    return errors.DatasetError(f"{path}: line {line}: {problem}. {fix}")


def _csv_number(path: pathlib.Path, line: int, row: Mapping[str, str], column: str) -> float:
    """Finite float of ``row[column]``; DatasetError naming the file, line and column otherwise."""
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        shown = "is empty" if not text else f"is {text!r}, not a finite number"
        raise _csv_error(path, line, f"column {column!r} {shown}", "Write a number there (pixels or a 0..1 score).")
    return value


def _detection_from_row(path: pathlib.Path, line: int, row: Mapping[str, str]) -> Detection:
    """One CSV row as a Detection; DatasetError for blank names, non-numbers and inverted boxes."""
    filename, class_name = (row.get("filename") or "").strip(), row.get("class") or ""
    if not filename or not class_name.strip():
        column = "filename" if not filename else "class"
        raise _csv_error(path, line, f"column {column!r} is empty", f"Fill in the {column} or delete the row.")
    values = {column: _csv_number(path, line, row, column) for column in PREDICTION_COLUMNS[2:]}
    for low, high in (("xmin", "xmax"), ("ymin", "ymax")):
        if values[high] < values[low]:
            raise _csv_error(path, line, f"{high} {values[high]:g} < {low} {values[low]:g}",
                             f"Write boxes as {', '.join(PREDICTION_COLUMNS[3:])} with {low} <= {high}.")
    return Detection(filename=filename, class_name=class_name, **values)


def read_predictions_csv(path: str | pathlib.Path) -> list[Detection]:
    """Read a predictions CSV written by us or by any tool using the same columns.

    Args:
        path: UTF-8 CSV (a byte-order mark is tolerated) with at least the columns
            ``PREDICTION_COLUMNS`` in any order; extra columns are ignored. Filenames are
            stripped of surrounding spaces; class names are kept exactly.

    Returns:
        The detections in file order.

    Raises:
        DatasetError: the file cannot be read, is not UTF-8, misses a column, or a row has an
            empty field, a non-numeric value or ``xmax < xmin`` / ``ymax < ymin`` (named by line).
    """
    path = pathlib.Path(path)
    _, rows = tables.read_csv_rows(path, PREDICTION_COLUMNS)
    return [_detection_from_row(path, line, row) for line, row in rows]


# ---------------------------------------------------------------- counts per image

COUNTS_EXTRA_COLUMNS = ("filename", "total", "score_threshold")
# Boxes of different classes overlapping at least this much (IoU) are one object when counting each
# object once. The model's own suppression (per class) already merges boxes of one class.
COUNT_MERGE_IOU = 0.5


def merge_across_classes(detections: Iterable[Detection], iou_threshold: float = COUNT_MERGE_IOU) -> list[Detection]:
    """Class-agnostic suppression per image: of boxes overlapping with IoU > ``iou_threshold``, whatever
    their classes, only the highest-scoring one is kept (greedy NMS, OpenCV's ``cv2.dnn.NMSBoxes``).

    Used for counting each object once when the model puts boxes of two classes on one cell; the
    boxes themselves (predictions.csv, VOC, overlays) are not changed.

    Returns:
        The kept detections, image by image in first-seen order, highest score first within an image.
    """
    import cv2

    by_image: dict[str, list[Detection]] = {}
    for detection in detections:
        by_image.setdefault(detection.filename, []).append(detection)
    kept = []
    for found in by_image.values():
        if len(found) < 2:
            kept.extend(found)
            continue
        boxes = [[float(row.xmin), float(row.ymin), float(row.xmax - row.xmin), float(row.ymax - row.ymin)]
                 for row in found]
        # NMSBoxes drops scores <= its score threshold (which must be >= 0) and uses scores only to order
        # the boxes: shifted by 1, every box given is considered, in the same order.
        indices = np.asarray(cv2.dnn.NMSBoxes(boxes, [1.0 + float(row.score) for row in found], 0.0,
                                              float(iou_threshold))).reshape(-1)
        kept.extend(sorted((found[index] for index in indices), key=lambda row: -row.score))
    return kept


def count_rule(score_threshold: float, merge_iou: float | None) -> str:
    """One sentence saying what a count counts (for prediction_settings.json and the notebook)."""
    rule = f"Counted: boxes with score >= {score_threshold:g}"
    if merge_iou is None:
        return rule + "; boxes of different classes on one object are each counted (Count_each_object_once off)."
    return (rule + f"; overlapping boxes (IoU > {merge_iou:g}) of any classes are counted once, as the class with "
            "the highest score (Count_each_object_once on). predictions.csv keeps every box.")


def count_per_image(detections: Iterable[Detection], filenames: Iterable[str], classes: Sequence[str],
                    score_threshold: float, merge_iou: float | None = None) -> dict[str, dict[str, int]]:
    """Number of detections with score >= ``score_threshold`` per image and class.

    Args:
        detections: the boxes of any number of images.
        filenames: every image to count, in row order; images without a detection get zeros.
        classes: class (column) order, e.g. the model's label map; classes of counted detections
            that are not in it are appended, sorted.
        score_threshold: lowest score counted (inclusive).
        merge_iou: None counts every box; a number counts each object once: boxes of different
            classes overlapping with IoU above it are merged first (``merge_across_classes``).

    Returns:
        image file name -> {class: count}, every class present in every row, in column order.

    Raises:
        DatasetError: a counted detection's image is not in ``filenames``.
    """
    kept = [detection for detection in detections if detection.score >= score_threshold]
    if merge_iou is not None:
        kept = merge_across_classes(kept, merge_iou)
    columns = list(dict.fromkeys(classes))
    columns += sorted({detection.class_name for detection in kept} - set(columns))
    counts = {filename: dict.fromkeys(columns, 0) for filename in filenames}
    for detection in kept:
        if detection.filename not in counts:
            raise errors.DatasetError(f"counts: detection for image {detection.filename!r}, which is not among the "
                                      "images counted. Count every image the detections come from.")
        counts[detection.filename][detection.class_name] += 1
    return counts


def write_counts_csv(counts: Mapping[str, Mapping[str, int]], path: str | pathlib.Path, score_threshold: float,
                     classes: Sequence[str] = ()) -> pathlib.Path:
    """Write per-image counts as ``counts.csv``: ``filename,<classes...>,total,score_threshold``.

    Args:
        counts: image file name -> {class: count}, as from ``count_per_image`` (rows in this order).
        path: the CSV to write (UTF-8, no BOM; parent folders created).
        score_threshold: the threshold the counts were taken at, written on every row.
        classes: the class columns when ``counts`` is empty (else its first row's keys are used).

    Returns:
        ``path`` as a Path.

    Raises:
        DatasetError: a class is named like one of the fixed columns (``COUNTS_EXTRA_COLUMNS``).
    """
    columns = list(next(iter(counts.values()))) if counts else list(classes)
    clashes = sorted(set(columns) & set(COUNTS_EXTRA_COLUMNS))
    if clashes:
        raise errors.DatasetError(f"{path}: class name(s) {', '.join(clashes)} clash with the columns of counts.csv. "
                                  "Rename the class in the annotations (e.g. 'total_cells').")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", *columns, "total", "score_threshold"])
        for filename, row in counts.items():
            values = [int(row.get(name, 0)) for name in columns]
            writer.writerow([filename, *values, sum(values), f"{score_threshold:g}"])
    return path


# ---------------------------------------------------------------- VOC and COCO


def write_voc_predictions(detections: Iterable[Detection], image_filename: str, width: int, height: int,
                          path: str | pathlib.Path, with_scores: bool = True) -> pathlib.Path:
    """Write the detections of one image as PASCAL VOC XML with a ``<score>`` per object.

    Args:
        detections: the boxes of this image (their ``filename`` is not used).
        image_filename: written as ``<filename>``.
        width, height: the image size in pixels, written as ``<size>``.
        path: the XML file to write.
        with_scores: write ``<score>``; False gives a plain annotation file (pre-annotations to
            correct and train on, read back with ``score`` None like any ground truth).

    Returns:
        ``path`` as a Path; ``helpers.voc.read_voc`` reads the same boxes back (coordinates
        rounded to 2 decimals, scores to 4, as in the CSV). LabelImg ignores ``<score>``.
    """
    objects = [voc.VocObject(name=detection.class_name,
                             **{name: round(float(getattr(detection, name)), COORDINATE_DECIMALS)
                                for name in voc.COORDINATE_TAGS},
                             score=round(float(detection.score), SCORE_DECIMALS) if with_scores else None)
               for detection in detections]
    annotation = voc.VocAnnotation(filename=image_filename, width=int(width), height=int(height),
                                   depth=voc.DEFAULT_DEPTH, objects=objects)
    return voc.write_voc(annotation, path)


def write_coco_results(detections: Iterable[Detection], path: str | pathlib.Path, image_ids: Mapping[str, int],
                       category_ids: Mapping[str, int]) -> pathlib.Path:
    """Write a COCO results JSON: ``[{image_id, category_id, bbox: [x, y, w, h], score}]``.

    Args:
        detections: the boxes.
        path: the JSON file to write (UTF-8).
        image_ids: image file name -> COCO image id.
        category_ids: class name -> COCO category id.

    Returns:
        ``path`` as a Path. ``bbox`` is ``[xmin, ymin, xmax - xmin, ymax - ymin]`` in float pixels.

    Raises:
        DatasetError: a detection's image or class has no id in the mappings given.
    """
    results = []
    for detection in detections:
        if detection.filename not in image_ids:
            raise errors.DatasetError(f"{path}: image {detection.filename!r} has no COCO image id. "
                                      "Add it to image_ids (one id per image file name).")
        if detection.class_name not in category_ids:
            raise errors.DatasetError(f"{path}: class {detection.class_name!r} has no COCO category id. "
                                      "Add it to category_ids (one id per class name).")
        results.append({"image_id": int(image_ids[detection.filename]),
                        "category_id": int(category_ids[detection.class_name]),
                        "bbox": [float(detection.xmin), float(detection.ymin), float(detection.xmax - detection.xmin),
                                 float(detection.ymax - detection.ymin)],
                        "score": float(detection.score)})
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    return path
