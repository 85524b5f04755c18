"""Detection quality control: COCO mAP by pycocotools, counts and a confusion matrix at stated thresholds.

Our code only adapts formats: ground truth (``helpers.voc.VocAnnotation`` per image) and
predictions (``helpers.prediction_formats.Detection``) become COCO dictionaries, and
pycocotools' ``COCOeval`` computes every AP. Boxes use the COCO convention
``[xmin, ymin, xmax - xmin, ymax - ymin]`` (``helpers.voc.coco_box``, no +1).

What is scored, and how (every number comes with its thresholds):

* **mAP50-95, mAP50, mAP75** are what ``COCOeval.stats[0:3]`` hold (computed from ``eval['precision']``
  as ``summarize`` does, at the last ``maxDets`` entry, since ``summarize`` looks ``stats[0]`` up at
  ``maxDets == 100`` literally): area range "all", at most
  ``max_detections`` detections per image and class (``params.maxDets = [1, 10, max_detections]``),
  every prediction ranked whatever its score (``score_threshold`` does not apply to AP). By default
  ``max_detections`` is COCO's 100, raised to twice the most boxes of one class in one annotated
  image (``default_max_detections``): a large field of view holds hundreds of cells, and COCO's cap
  would count every cell beyond the 100th as missed (measured: BCCD pasted 3 x 3, about 100 RBC per
  field, RBC AP50 0.596 with the cap of 100 against 0.77 without, docs/benchmarks.md §10).
  Per-class AP50 and AP50-95 are the means of ``eval['precision']`` over recall thresholds
  (and IoU thresholds) of the entries > -1, which is how ``COCOeval.summarize`` averages,
  so the mean of the per-class values is the mAP. A class without ground-truth boxes has
  no AP (NaN, ``None`` in JSON) and is left out of the mean, as pycocotools does.
* **VOC ``difficult`` boxes are excluded from scoring.** They are given to COCOeval as
  ``iscrowd=1``. ``COCOeval._prepare`` overwrites every ground truth's ``ignore`` flag with
  ``iscrowd``, so these boxes are ignored: they do not count as ground truth (no miss when
  nothing finds them). During matching, regular boxes are tried first; a detection that
  matches no regular box but overlaps a difficult box is marked ignored: neither a true
  nor a false positive. For a crowd box the overlap is intersection / detection area (not
  IoU), and one crowd box can absorb several detections.
* **TP, FP, FN, precision, recall, F1 per class** use detections with score >= ``score_threshold``
  and IoU >= ``iou_threshold``, matched greedily per image: detections in order of decreasing
  score, each takes the not yet matched, non-difficult ground-truth box of its class with the
  highest IoU (TP); if none reaches the threshold but a difficult box of its class does
  (overlap measured as COCOeval does, above), it is ignored; otherwise it is an FP. Boxes left
  unmatched are FN. Precision/recall/F1 are 0 when undefined (scikit-learn's zero_division=0).
  IoUs come from ``pycocotools.mask.iou``, the function COCOeval uses.
* **Confusion matrix** (rows = annotated class, columns = predicted class, last row/column
  "background"): the same greedy matching but class-agnostic. A matched pair adds to
  (annotated, predicted); an unmatched annotated box to (class, background); an unmatched
  detection to (background, class). Detections ignored because of a difficult box are not counted.
* **Precision-recall curves** per class are COCOeval's interpolated precision at IoU 0.5
  (``eval['precision'][0, :, k, 0, -1]``) against its 101 recall thresholds.
* **F1 against score threshold** (``F1Curves``): precision, recall and F1 per class and for all
  classes pooled at score thresholds 0, 0.01, ..., 1 and the one in use, by the same greedy
  matching as TP/FP/FN (so the curve at the threshold in use is the table's F1). One matching of
  every detection serves every threshold: greedy matching in decreasing score order decides each
  detection from the ones above it only. Unlike COCOeval's curves, there is no ``max_detections``
  cap. The threshold with the best F1 is named, chosen on these images (optimistic).
* **Count agreement** (``CountAgreement``) compares, per image and class, the predicted count
  (detections with score >= ``score_threshold``, ``helpers.prediction_formats.count_per_image``,
  the function that writes ``counts.csv``) with the annotated count (non-difficult boxes, as
  difficult boxes are excluded from every other figure; a detection of a difficult cell is
  therefore counted as an extra). Statistics (``count_statistics``): mean absolute error, mean
  relative error over images with annotated count > 0, Pearson r (``scipy.stats.pearsonr``) and
  the Bland-Altman bias with 95 % limits of agreement. No box matching is involved: a count can
  be right with every box misplaced. The score threshold with the lowest summed MAE over
  classes among ``COUNT_THRESHOLD_GRID`` (and the threshold in use) is reported as chosen on
  these images, which makes its MAE optimistic. Counts take each object once by default, as
  ``counts.csv`` does: boxes of *different* classes overlapping with IoU > ``prediction_formats.COUNT_MERGE_IOU``
  count once (the model's own suppression works class by class, so it can put two boxes of different
  classes on one cell); ``CountAgreement.each_object_once`` reports the total MAE per image with and
  without that merge.

Category ids follow ``classes`` when given (ground-truth classes missing from it are
appended, sorted), else the sorted ground-truth classes; classes that occur only in the
predictions (``unknown_classes``) come last: they have no AP but their detections are FPs.
"""

from __future__ import annotations

import collections

import contextlib
import dataclasses
import io
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from helpers import errors, figures, prediction_formats, tables, voc

BACKGROUND = "background"
MAP_DESCRIPTION = "COCO IoU 0.50:0.05:0.95, area all"
PR_CURVE_IOU = 0.5
EXAMPLES_IN_ERRORS = 5
COUNT_THRESHOLD_GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05, 0.10, ..., 0.95
LIMITS_OF_AGREEMENT_Z = 1.96  # Bland & Altman: bias +- 1.96 SD holds ~95 % of differences (normal)
BEST_THRESHOLD_NOTE = "chosen on these QC images (optimistic)"
F1_CURVE_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(101))  # 0.00, 0.01, ..., 1.00
ALL_CLASSES = "all classes"


@dataclasses.dataclass
class CountStatistics:
    """Agreement of predicted with annotated counts over n images (one class, or all classes summed).

    With p_i and a_i the predicted and annotated count of image i and d_i = p_i - a_i:

    * ``mean_absolute_error`` = mean_i |d_i| (objects per image);
    * ``mean_relative_error`` = mean over the m images with a_i > 0 of |d_i| / a_i (a fraction;
      images with a_i = 0 are left out, a relative error being undefined there, but their
      errors are in the MAE and the bias; NaN when m = 0); ``relative_error_images`` = m;
    * ``pearson_r`` = ``scipy.stats.pearsonr(a, p)``; NaN (undefined) when n < 2 or when a or p
      is the same on every image;
    * Bland-Altman: ``bias`` = mean_i d_i; ``sd_difference`` = SD of d with ddof=1 (NaN when n < 2);
      ``lower/upper_limit_of_agreement`` = bias -+ 1.96 * sd_difference.

    Attributes:
        images: n.
        annotated_total, predicted_total: sum of a_i and of p_i.
    """

    images: int
    annotated_total: int
    predicted_total: int
    mean_absolute_error: float
    mean_relative_error: float
    relative_error_images: int
    pearson_r: float
    bias: float
    sd_difference: float
    lower_limit_of_agreement: float
    upper_limit_of_agreement: float


@dataclasses.dataclass
class CountAgreement:
    """Predicted against annotated counts per image at the score threshold in use (module docstring).

    Attributes:
        score_threshold: detections with score >= this are counted.
        classes: class names in order (``DetectionEvaluation.classes``).
        per_class: class -> ``CountStatistics`` over all images.
        all_classes: ``CountStatistics`` of the per-image totals (all classes summed; errors of
            different classes can cancel here).
        summed_mean_absolute_error: sum over classes of the per-class MAE = mean over images of
            sum_c |p_ic - a_ic|; the figure the best threshold minimises.
        best_score_threshold: the threshold of ``threshold_scan`` with the lowest summed MAE
            (ties: the one closest to ``score_threshold``, then the lower), chosen on these images.
        best_summed_mean_absolute_error: its summed MAE (optimistic: chosen on the same images).
        best_threshold_note: ``BEST_THRESHOLD_NOTE``.
        threshold_scan: {"score_thresholds": [T floats], "summed_mean_absolute_error": [T floats]}.
        lowest_prediction_score: lowest score among the predictions (None without any): all
            thresholds at or below it count the same, so a file cut at a higher score cannot tell
            lower thresholds apart.
        per_image: image file name -> {"annotated": {class: n}, "predicted": {class: n}}.
        merge_iou: None when every box was counted; else boxes of different classes overlapping with
            IoU > merge_iou were counted once (``prediction_formats.count_per_image(merge_iou=...)``, as counts.csv).
        each_object_once: the effect of that class-agnostic merge, with and without it at the threshold
            in use: {"iou_threshold", "total_mae_without_merge", "total_mae_with_merge" (MAE of the
            per-image totals, objects per image), "summed_class_mae_without_merge",
            "summed_class_mae_with_merge", "boxes_merged" (counted boxes the merge removed, all images)}.
    """

    score_threshold: float
    classes: list[str]
    per_class: dict[str, CountStatistics]
    all_classes: CountStatistics
    summed_mean_absolute_error: float
    best_score_threshold: float
    best_summed_mean_absolute_error: float
    best_threshold_note: str
    threshold_scan: dict[str, list[float]]
    lowest_prediction_score: float | None
    per_image: dict[str, dict[str, dict[str, int]]]
    merge_iou: float | None = None
    each_object_once: dict[str, float] | None = None

    def counts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(annotated, predicted): int [n images] counts of class ``name`` in ``per_image`` order."""
        annotated = np.array([row["annotated"][name] for row in self.per_image.values()], dtype=np.int64)
        predicted = np.array([row["predicted"][name] for row in self.per_image.values()], dtype=np.int64)
        return annotated, predicted


@dataclasses.dataclass
class F1Curves:
    """Precision, recall and F1 against the score threshold, per class and for all classes pooled.

    Every point is what the per-class table would show at that score threshold: the same greedy
    matching at ``iou_threshold`` (module docstring). It is computed from one matching of every
    detection: greedy matching takes detections in order of decreasing score, and each one's outcome
    depends only on the detections scored above it, so the detections above a threshold t get the
    same outcome whether or not those below t are present. Counting outcomes with score >= t is
    therefore matching at t (ties in score are never split: they are all above t or all below).

    Attributes:
        iou_threshold: lowest IoU of a match.
        score_threshold: the threshold in use (also in ``score_thresholds``).
        score_thresholds: [T] ascending: ``F1_CURVE_THRESHOLDS`` and the threshold in use.
        per_class: class -> {"precision", "recall", "f1": [T] floats, "tp", "fp", "fn": [T] ints}
            (precision/recall/F1 0 when undefined), ``DetectionEvaluation.classes`` order, plus
            ``ALL_CLASSES`` last: TP, FP and FN summed over classes (a micro average, like the
            report's headline "found / false").
        best: class or ``ALL_CLASSES`` -> {"score_threshold", "f1", "precision", "recall"}: the
            highest F1 of the curve (ties: the threshold closest to the one in use, then the lower),
            chosen on these images (``best_threshold_note``).
        best_threshold_note: ``BEST_THRESHOLD_NOTE``.
        lowest_prediction_score: lowest score among the predictions (None without any): thresholds
            at or below it all give the same point.
    """

    iou_threshold: float
    score_threshold: float
    score_thresholds: list[float]
    per_class: dict[str, dict[str, list]]
    best: dict[str, dict[str, float]]
    best_threshold_note: str
    lowest_prediction_score: float | None


@dataclasses.dataclass
class DetectionEvaluation:
    """Scores of predictions against ground truth; see the module docstring for the definitions.

    Attributes:
        map50, map50_95, map75: COCO mAP (0..1; NaN when no class has ground truth).
        per_class: class -> {ap50, ap50_95 (NaN without ground truth), precision, recall, f1,
            tp, fp, fn, ground_truth_boxes (non-difficult), difficult_boxes}, in ``classes`` order.
        thresholds: iou_threshold, score_threshold, max_detections and "map" (how mAP was taken).
        unknown_classes: sorted classes that occur only in the predictions.
        classes: category names in id order (unknown classes last).
        confusion_matrix: int [N + 1][N + 1] nested lists, labels ``classes + ["background"]``,
            rows = annotated, columns = predicted.
        pr_curves: class -> {"recall": [101 floats], "precision": [101 floats]} at IoU 0.5,
            only for classes with ground truth.
        number_of_images: ground-truth images evaluated (empty annotations included).
        count_agreement: predicted vs annotated counts per image (``CountAgreement``).
        f1_curves: precision, recall and F1 against the score threshold (``F1Curves``).
    """

    map50: float
    map50_95: float
    map75: float
    per_class: dict[str, dict[str, Any]]
    thresholds: dict[str, Any]
    unknown_classes: list[str]
    classes: list[str]
    confusion_matrix: list[list[int]]
    pr_curves: dict[str, dict[str, list[float]]]
    number_of_images: int
    count_agreement: CountAgreement | None = None
    f1_curves: F1Curves | None = None

    @property
    def confusion_matrix_labels(self) -> list[str]:
        """Row/column labels of ``confusion_matrix``: the classes then "background"."""
        return list(self.classes) + [BACKGROUND]

    def to_json_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types; NaN and infinities become None."""
        result = dataclasses.asdict(self)
        result["confusion_matrix_labels"] = self.confusion_matrix_labels
        return tables.json_safe(result)


# ---------------------------------------------------------------- loading and matching


def _stem_lookup(ground_truth: Mapping[str, voc.VocAnnotation]) -> dict[str, str | None]:
    """XML stem (or image stem when no XML path is known) -> ground-truth key; None when two share a stem."""
    lookup: dict[str, str | None] = {}
    for key, annotation in ground_truth.items():
        stem = annotation.path.stem if annotation.path is not None else pathlib.PurePath(key).stem
        lookup[stem] = None if stem in lookup and lookup[stem] != key else key
    return lookup


def match_predictions(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
                      source: str = "predictions") -> list[prediction_formats.Detection]:
    """Give each prediction the ground-truth key of its image.

    A prediction's ``filename`` matches the ground-truth image of that name (folders in it are
    ignored), or else the one whose XML file stem equals its stem (``a.png`` finds ``a.xml``).

    Args:
        ground_truth: image file name -> annotation (``helpers.annotation_formats.load_ground_truth``).
        predictions: detections from any tool.
        source: how to name the predictions in errors (e.g. the CSV path).

    Returns:
        The predictions in the same order, ``filename`` replaced by the ground-truth key.

    Raises:
        DatasetError: predictions for images without ground truth (named), or whose stem is
            shared by two ground-truth files.
    """
    stems = _stem_lookup(ground_truth)
    matched, missing = [], []
    for prediction in predictions:
        name = prediction.filename
        if name not in ground_truth:
            name = pathlib.PureWindowsPath(name).name
        if name not in ground_truth:
            name = stems.get(pathlib.PurePath(name).stem)
        if name is None:
            missing.append(prediction.filename)
            continue
        matched.append(prediction if name == prediction.filename else dataclasses.replace(prediction, filename=name))
    if missing:
        unique = list(dict.fromkeys(missing))
        shown = ", ".join(unique[:EXAMPLES_IN_ERRORS]) + (f" and {len(unique) - EXAMPLES_IN_ERRORS} more"
                                                          if len(unique) > EXAMPLES_IN_ERRORS else "")
        raise errors.DatasetError(f"{source}: {len(unique)} predicted image(s) have no (unambiguous) ground-truth "
                                  f"annotation: {shown}. Add their VOC files to the ground-truth folder, or remove "
                                  "their rows from the predictions.")
    return matched


# ---------------------------------------------------------------- pycocotools


def _category_names(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
                    classes: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(category names in id order, unknown classes); unknown ones are at the end of the first list too."""
    truth_classes = sorted({obj.name for annotation in ground_truth.values() for obj in annotation.objects})
    names = list(dict.fromkeys(classes)) if classes is not None else []
    names += [name for name in truth_classes if name not in names]
    unknown = sorted({prediction.class_name for prediction in predictions} - set(names))
    return names + unknown, unknown


def _coco_ground_truth(ground_truth: Mapping[str, voc.VocAnnotation], image_ids: Mapping[str, int],
                       category_ids: Mapping[str, int]):
    """A ``pycocotools.coco.COCO`` of the ground truth; difficult boxes as iscrowd=1."""
    from pycocotools import coco

    annotations = []
    for filename, annotation in ground_truth.items():
        for obj in annotation.objects:
            box = voc.coco_box(obj)
            annotations.append({"id": len(annotations) + 1, "image_id": image_ids[filename],
                                "category_id": category_ids[obj.name], "bbox": box, "area": box[2] * box[3],
                                "iscrowd": int(bool(obj.difficult))})
    dataset = coco.COCO()
    dataset.dataset = {
        "images": [{"id": image_ids[name], "file_name": name, "width": int(annotation.width),
                    "height": int(annotation.height)} for name, annotation in ground_truth.items()],
        "categories": [{"id": identifier, "name": name} for name, identifier in category_ids.items()],
        "annotations": annotations}
    dataset.createIndex()
    return dataset


def _coco_detections(coco_ground_truth, predictions: Sequence[prediction_formats.Detection], image_ids: Mapping[str, int],
                     category_ids: Mapping[str, int]):
    """A COCO results object of the predictions (``COCO.loadRes``; built directly when there are none)."""
    from pycocotools import coco

    results = [{"image_id": image_ids[prediction.filename], "category_id": category_ids[prediction.class_name],
                "bbox": [float(prediction.xmin), float(prediction.ymin), float(prediction.xmax - prediction.xmin),
                         float(prediction.ymax - prediction.ymin)], "score": float(prediction.score)}
               for prediction in predictions]
    if results:
        return coco_ground_truth.loadRes(results)
    empty = coco.COCO()  # loadRes cannot take an empty list (it reads results[0])
    empty.dataset = {"images": list(coco_ground_truth.dataset["images"]),
                     "categories": list(coco_ground_truth.dataset["categories"]), "annotations": []}
    empty.createIndex()
    return empty


def _run_cocoeval(ground_truth, predictions, image_ids, category_ids, max_detections: int):
    """Evaluated, accumulated and summarised ``COCOeval`` (bbox); its prints are swallowed."""
    from pycocotools import cocoeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_ground_truth = _coco_ground_truth(ground_truth, image_ids, category_ids)
        coco_detections = _coco_detections(coco_ground_truth, predictions, image_ids, category_ids)
        evaluator = cocoeval.COCOeval(coco_ground_truth, coco_detections, "bbox")
        evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _mean_valid(values: np.ndarray) -> float:
    """Mean of the entries > -1 (COCOeval's "absent" marker); NaN when there are none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def _coco_figures(evaluator, names: Sequence[str]) -> tuple[dict[str, float], dict[str, dict], dict[str, dict]]:
    """(mAPs, per-class {ap50, ap50_95}, PR curves at IoU 0.5) from an evaluated COCOeval."""
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall thresholds, classes, areas, maxDets]
    iou_index = int(np.where(evaluator.params.iouThrs == PR_CURVE_IOU)[0][0])
    # What COCOeval.stats[0:3] hold, taken at the last maxDets entry: summarize() looks stats[0] up at
    # maxDets == 100 literally, so with a larger cap it would be -1 ("absent").
    iou_75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))
    stats = [_mean_valid(precision[:, :, :, 0, -1]), _mean_valid(precision[iou_index, :, :, 0, -1]),
             _mean_valid(precision[iou_75, :, :, 0, -1])]
    aps, curves = {}, {}
    for index, name in enumerate(names):
        class_precision = precision[:, :, index, 0, -1]
        aps[name] = {"ap50": _mean_valid(class_precision[iou_index]), "ap50_95": _mean_valid(class_precision)}
        if np.all(class_precision[iou_index] > -1):
            curves[name] = {"recall": [float(value) for value in evaluator.params.recThrs],
                            "precision": [float(value) for value in class_precision[iou_index]]}
    return {"map50_95": stats[0], "map50": stats[1], "map75": stats[2]}, aps, curves


# ---------------------------------------------------------------- greedy matching at a threshold


def _overlaps(detections: Sequence[prediction_formats.Detection], objects: Sequence[voc.VocObject], crowd: bool) -> np.ndarray:
    """float [D, G] overlaps by ``pycocotools.mask.iou``: IoU, or intersection / detection area when ``crowd``."""
    from pycocotools import mask

    if not detections or not objects:
        return np.zeros((len(detections), len(objects)))
    detection_boxes = np.array([[d.xmin, d.ymin, d.xmax - d.xmin, d.ymax - d.ymin] for d in detections], np.float64)
    object_boxes = np.array([voc.coco_box(obj) for obj in objects], np.float64)
    return np.asarray(mask.iou(detection_boxes, object_boxes, [int(crowd)] * len(objects)), np.float64)


def _greedy_match(detections: Sequence[prediction_formats.Detection], objects: Sequence[voc.VocObject], iou_threshold: float,
                  same_class: bool) -> tuple[list[tuple[prediction_formats.Detection, voc.VocObject | None]], list[voc.VocObject]]:
    """Match one image's detections to its boxes, highest score first, each regular box once.

    Args:
        detections: the image's detections already above the score threshold.
        objects: the image's ground-truth boxes (difficult ones included).
        iou_threshold: lowest IoU of a match.
        same_class: match only boxes of the detection's class (False: class-agnostic).

    Returns:
        (outcomes, unmatched): outcomes holds (detection, matched box or None) for every
        detection not ignored (None = false positive); unmatched are the regular boxes left.
    """
    order = sorted(detections, key=lambda detection: -detection.score)
    regular = [obj for obj in objects if not obj.difficult]
    difficult = [obj for obj in objects if obj.difficult]
    regular_overlaps = _overlaps(order, regular, crowd=False)
    difficult_overlaps = _overlaps(order, difficult, crowd=True)
    taken = np.zeros(len(regular), dtype=bool)
    outcomes = []
    for index, detection in enumerate(order):
        allowed = ~taken & np.array([not same_class or obj.name == detection.class_name for obj in regular], bool)
        candidates = np.where(allowed, regular_overlaps[index], -1.0)
        best = int(np.argmax(candidates)) if len(regular) else -1
        if best >= 0 and candidates[best] >= iou_threshold:
            taken[best] = True
            outcomes.append((detection, regular[best]))
            continue
        near_difficult = [overlap >= iou_threshold and (not same_class or obj.name == detection.class_name)
                          for overlap, obj in zip(difficult_overlaps[index], difficult)]
        if not any(near_difficult):
            outcomes.append((detection, None))
    return outcomes, [obj for obj, used in zip(regular, taken) if not used]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _class_outcomes(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
                    names: Sequence[str], iou_threshold: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every detection matched once (``_greedy_match``, same class), whatever its score.

    Returns:
        class -> (scores float [D], true_positive bool [D]) of the class's detections that are not
        ignored (a detection ignored for a difficult box is in neither). Those with score >= t
        are exactly the outcomes of matching at score threshold t (``F1Curves``).
    """
    by_image: dict[str, list[prediction_formats.Detection]] = {name: [] for name in ground_truth}
    for prediction in predictions:
        by_image[prediction.filename].append(prediction)
    outcomes: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
    for filename, annotation in ground_truth.items():
        matched, _ = _greedy_match(by_image[filename], annotation.objects, iou_threshold, same_class=True)
        for detection, obj in matched:
            outcomes[detection.class_name].append((float(detection.score), obj is not None))
    return {name: (np.array([score for score, _ in pairs], np.float64), np.array([hit for _, hit in pairs], bool))
            for name, pairs in outcomes.items()}


def _box_counts(ground_truth: Mapping[str, voc.VocAnnotation], names: Sequence[str]) -> dict[str, dict[str, int]]:
    """class -> {"ground_truth_boxes": non-difficult boxes, "difficult_boxes": difficult ones}."""
    counts = {name: {"ground_truth_boxes": 0, "difficult_boxes": 0} for name in names}
    for annotation in ground_truth.values():
        for obj in annotation.objects:
            counts[obj.name]["difficult_boxes" if obj.difficult else "ground_truth_boxes"] += 1
    return counts


def _rates(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) of count arrays of one shape; 0 where undefined (scikit-learn's zero_division=0)."""
    tp, fp, fn = (np.asarray(values, np.float64) for values in (tp, fp, fn))
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return precision, recall, f1


def _counts_above(outcomes: tuple[np.ndarray, np.ndarray], ground_truth_boxes: int,
                  thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, FN) int [T] of one class's outcomes at each score threshold (score >= threshold)."""
    scores, hits = outcomes
    above = scores[None, :] >= np.asarray(thresholds, np.float64)[:, None]  # [T, D]
    true_positives = (above & hits[None, :]).sum(axis=1)
    return true_positives, (above & ~hits[None, :]).sum(axis=1), ground_truth_boxes - true_positives


def _per_class_counts(outcomes: Mapping[str, tuple[np.ndarray, np.ndarray]], boxes: Mapping[str, dict[str, int]],
                      score_threshold: float) -> dict[str, dict]:
    """Per-class TP/FP/FN/precision/recall/F1 at ``score_threshold``, with the box counts."""
    figures_by_class = {}
    for name, counts in boxes.items():
        tp, fp, fn = (int(values[0]) for values in _counts_above(outcomes[name], counts["ground_truth_boxes"],
                                                                 [score_threshold]))
        precision, recall, f1 = (float(values) for values in _rates(tp, fp, fn))
        figures_by_class[name] = {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
                                  **counts}
    return figures_by_class


def _confusion(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
               names: Sequence[str], score_threshold: float, iou_threshold: float) -> list[list[int]]:
    """The (N+1)x(N+1) class-agnostic confusion matrix at the thresholds (module docstring)."""
    by_image: dict[str, list[prediction_formats.Detection]] = {name: [] for name in ground_truth}
    for prediction in predictions:
        if prediction.score >= score_threshold:
            by_image[prediction.filename].append(prediction)
    index = {name: position for position, name in enumerate(names)}
    background = len(names)
    matrix = np.zeros((len(names) + 1, len(names) + 1), dtype=np.int64)
    for filename, annotation in ground_truth.items():
        outcomes, unmatched = _greedy_match(by_image[filename], annotation.objects, iou_threshold, same_class=False)
        for detection, obj in outcomes:
            matrix[background if obj is None else index[obj.name], index[detection.class_name]] += 1
        for obj in unmatched:
            matrix[index[obj.name], background] += 1
    return matrix.tolist()


def _best_of(thresholds: Sequence[float], values: Sequence[float], in_use: float) -> tuple[float, float]:
    """(threshold, value) with the lowest value; ties (to 12 digits): closest to ``in_use``, then the lower."""
    _, _, threshold, value = min((round(value, 12), abs(threshold - in_use), threshold, value)
                                 for threshold, value in zip(thresholds, values))
    return threshold, value


def f1_curves(outcomes: Mapping[str, tuple[np.ndarray, np.ndarray]], boxes: Mapping[str, dict[str, int]],
              score_threshold: float, iou_threshold: float, lowest_score: float | None) -> F1Curves:
    """Precision, recall and F1 at every threshold of ``F1_CURVE_THRESHOLDS`` and the one in use (``F1Curves``).

    Args:
        outcomes: ``_class_outcomes`` of the evaluation (every detection matched once).
        boxes: ``_box_counts``: class -> non-difficult ("ground_truth_boxes") and difficult boxes.
        score_threshold: the threshold in use; iou_threshold: the matching's.
        lowest_score: lowest prediction score (None without predictions).
    """
    thresholds = sorted(set(F1_CURVE_THRESHOLDS) | {float(score_threshold)})
    counts = {name: _counts_above(outcomes[name], boxes[name]["ground_truth_boxes"], thresholds) for name in boxes}
    zeros = np.zeros(len(thresholds), np.int64)
    counts[ALL_CLASSES] = tuple(sum((counts[name][part] for name in boxes), zeros) for part in range(3))
    per_class, best = {}, {}
    for name, (tp, fp, fn) in counts.items():
        precision, recall, f1 = _rates(tp, fp, fn)
        per_class[name] = {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                           "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist()}
        threshold, negative_f1 = _best_of(thresholds, (-f1).tolist(), float(score_threshold))
        position = thresholds.index(threshold)
        best[name] = {"score_threshold": threshold, "f1": -negative_f1, "precision": float(precision[position]),
                      "recall": float(recall[position])}
    return F1Curves(iou_threshold=float(iou_threshold), score_threshold=float(score_threshold),
                    score_thresholds=thresholds, per_class=per_class, best=best,
                    best_threshold_note=BEST_THRESHOLD_NOTE, lowest_prediction_score=lowest_score)


# ---------------------------------------------------------------- counts per image


def _pearson_r(annotated: np.ndarray, predicted: np.ndarray) -> float:
    """``scipy.stats.pearsonr`` statistic; NaN when undefined (fewer than 2 images, or a constant count)."""
    from scipy import stats

    if annotated.size < 2 or np.ptp(annotated) == 0 or np.ptp(predicted) == 0:
        return math.nan
    return float(stats.pearsonr(annotated, predicted).statistic)


def count_statistics(predicted: Sequence[float], annotated: Sequence[float]) -> CountStatistics:
    """MAE, mean relative error, Pearson r and Bland-Altman bias / 95 % limits of two count series.

    Args:
        predicted: p, float or int [n], predicted count per image.
        annotated: a, float or int [n], annotated count of the same images, same order.

    Returns:
        ``CountStatistics`` (formulas in its docstring); NaN where a figure is undefined.

    Raises:
        ValueError: the two series differ in length.
    """
    predicted, annotated = np.asarray(predicted, np.float64), np.asarray(annotated, np.float64)
    if predicted.shape != annotated.shape or predicted.ndim != 1:
        raise ValueError(f"count_statistics: predicted {predicted.shape} and annotated {annotated.shape} must be [n]")
    difference = predicted - annotated
    counted = annotated > 0
    bias = float(np.mean(difference)) if difference.size else math.nan
    spread = float(np.std(difference, ddof=1)) if difference.size >= 2 else math.nan
    return CountStatistics(
        images=int(difference.size), annotated_total=int(annotated.sum()), predicted_total=int(predicted.sum()),
        mean_absolute_error=float(np.mean(np.abs(difference))) if difference.size else math.nan,
        mean_relative_error=float(np.mean(np.abs(difference[counted]) / annotated[counted])) if counted.any()
        else math.nan,
        relative_error_images=int(counted.sum()), pearson_r=_pearson_r(annotated, predicted), bias=bias,
        sd_difference=spread, lower_limit_of_agreement=bias - LIMITS_OF_AGREEMENT_Z * spread,
        upper_limit_of_agreement=bias + LIMITS_OF_AGREEMENT_Z * spread)


def annotated_counts(ground_truth: Mapping[str, voc.VocAnnotation], names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Image file name -> {class: non-difficult boxes}, every class of ``names`` in every row."""
    counts = {filename: dict.fromkeys(names, 0) for filename in ground_truth}
    for filename, annotation in ground_truth.items():
        for obj in annotation.objects:
            if not obj.difficult:
                counts[filename][obj.name] += 1
    return counts


def _summed_mae(annotated: Mapping[str, Mapping[str, int]], predicted: Mapping[str, Mapping[str, int]],
                names: Sequence[str]) -> float:
    """Sum over classes of the per-class MAE = mean over images of sum_c |p_ic - a_ic|; NaN without images."""
    if not annotated:
        return math.nan
    return float(np.mean([sum(abs(predicted[filename].get(name, 0) - annotated[filename][name]) for name in names)
                          for filename in annotated]))


def _best_threshold(scan: dict[str, list[float]], in_use: float) -> tuple[float, float]:
    """(threshold, summed MAE) with the lowest summed MAE; ties: closest to ``in_use``, then the lower."""
    return _best_of(scan["score_thresholds"], scan["summed_mean_absolute_error"], in_use)


def _merge_effect(annotated: Mapping[str, Mapping[str, int]], predictions: Sequence[prediction_formats.Detection],
                  names: Sequence[str], score_threshold: float, iou_threshold: float) -> dict[str, float]:
    """``CountAgreement.each_object_once``: count errors with and without the class-agnostic merge."""
    figures_by_rule = {}
    for rule, merge_iou in (("without_merge", None), ("with_merge", iou_threshold)):
        predicted = prediction_formats.count_per_image(predictions, annotated, names, score_threshold, merge_iou=merge_iou)
        figures_by_rule[rule] = (
            float(np.mean([abs(sum(predicted[name].values()) - sum(annotated[name].values())) for name in annotated]))
            if annotated else math.nan, _summed_mae(annotated, predicted, names),
            sum(sum(row.values()) for row in predicted.values()))
    return {"iou_threshold": float(iou_threshold),
            "total_mae_without_merge": figures_by_rule["without_merge"][0],
            "total_mae_with_merge": figures_by_rule["with_merge"][0],
            "summed_class_mae_without_merge": figures_by_rule["without_merge"][1],
            "summed_class_mae_with_merge": figures_by_rule["with_merge"][1],
            "boxes_merged": figures_by_rule["without_merge"][2] - figures_by_rule["with_merge"][2]}


def evaluate_counts(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
                    names: Sequence[str], score_threshold: float,
                    merge_iou: float | None = prediction_formats.COUNT_MERGE_IOU) -> CountAgreement:
    """Compare predicted with annotated counts per image and class (definitions in ``CountStatistics``).

    Args:
        ground_truth: image file name -> annotation; every image is a row, empty ones included.
        predictions: detections whose ``filename`` is a ground-truth key (``match_predictions``).
        names: classes in order; must include every annotated and predicted class.
        score_threshold: the threshold in use (detections with score >= it are counted).
        merge_iou: count each object once, as counts.csv does by default: boxes of different classes
            overlapping with IoU above it count once (None = every box). The effect of that merge is
            reported either way (``CountAgreement.each_object_once``, at ``COUNT_MERGE_IOU`` when None).

    Returns:
        The ``CountAgreement``, with the best threshold of ``COUNT_THRESHOLD_GRID`` plus the
        threshold in use (chosen on these images, so optimistic).
    """
    annotated = annotated_counts(ground_truth, names)
    predicted = prediction_formats.count_per_image(predictions, ground_truth, names, score_threshold, merge_iou=merge_iou)
    per_class = {name: count_statistics([predicted[filename][name] for filename in annotated],
                                        [annotated[filename][name] for filename in annotated]) for name in names}
    all_classes = count_statistics([sum(predicted[filename].values()) for filename in annotated],
                                   [sum(annotated[filename].values()) for filename in annotated])
    thresholds = sorted(set(COUNT_THRESHOLD_GRID) | {float(score_threshold)})
    scan = {"score_thresholds": thresholds,
            "summed_mean_absolute_error": [
                _summed_mae(annotated, prediction_formats.count_per_image(predictions, ground_truth, names, threshold,
                                                               merge_iou=merge_iou), names)
                for threshold in thresholds]}
    best_threshold, best_error = _best_threshold(scan, float(score_threshold))
    return CountAgreement(
        score_threshold=float(score_threshold), classes=list(names), per_class=per_class, all_classes=all_classes,
        summed_mean_absolute_error=_summed_mae(annotated, predicted, names), best_score_threshold=best_threshold,
        best_summed_mean_absolute_error=best_error, best_threshold_note=BEST_THRESHOLD_NOTE, threshold_scan=scan,
        lowest_prediction_score=min((float(p.score) for p in predictions), default=None),
        per_image={filename: {"annotated": annotated[filename], "predicted": predicted[filename]}
                   for filename in annotated},
        merge_iou=None if merge_iou is None else float(merge_iou),
        each_object_once=_merge_effect(annotated, predictions, names, score_threshold,
                                       prediction_formats.COUNT_MERGE_IOU if merge_iou is None else merge_iou))


def count_table_rows(agreement: CountAgreement, images_column: bool = True) -> list[list[Any]]:
    """Header + one row per class (+ "all classes" when there are several): n, totals, MAE, MRE, r, bias, limits.

    ``images_column=False`` leaves out n (the same in every row) for narrow pages.
    """
    rows = [["class", *["images"] * images_column, "annotated", "predicted", "MAE", "MRE (images)", "Pearson r",
             "bias", "95 % limits of agreement"]]
    entries = list(agreement.per_class.items())
    if len(entries) > 1:
        entries.append(("all classes (totals)", agreement.all_classes))
    for name, values in entries:
        rows.append([name, *[values.images] * images_column, values.annotated_total, values.predicted_total,
                     tables.format_value(values.mean_absolute_error),
                     f"{tables.format_value(values.mean_relative_error)} ({values.relative_error_images})",
                     tables.format_value(values.pearson_r), tables.format_value(values.bias),
                     f"{tables.format_value(values.lower_limit_of_agreement)} to "
                     f"{tables.format_value(values.upper_limit_of_agreement)}"])
    return rows


def count_summary_lines(agreement: CountAgreement) -> list[str]:
    """Plain sentences: what was counted, the threshold in use, the best one (stated as optimistic), r notes."""
    lines = [f"Counts per image: detections with score >= {agreement.score_threshold:g} against annotated "
             "non-difficult boxes. MAE = mean |predicted - annotated| (objects per image); MRE = mean "
             "|predicted - annotated| / annotated over the images with annotated > 0 (their number in brackets); "
             "Bland-Altman bias = mean(predicted - annotated), 95 % limits of agreement = bias +- 1.96 SD (ddof 1).",
             f"Score threshold in use: {agreement.score_threshold:g} (MAE summed over classes "
             f"{tables.format_value(agreement.summed_mean_absolute_error)}). Best count agreement at score threshold "
             f"{agreement.best_score_threshold:g} (MAE summed over classes "
             f"{tables.format_value(agreement.best_summed_mean_absolute_error)}), {agreement.best_threshold_note}; "
             f"scanned {agreement.threshold_scan['score_thresholds'][0]:g} to "
             f"{agreement.threshold_scan['score_thresholds'][-1]:g}."]
    if any(math.isnan(values.pearson_r) for values in agreement.per_class.values()):
        lines.append("Pearson r is undefined (n/a) where the annotated or predicted count is the same on every "
                     "image, or with fewer than 2 images.")
    lowest = agreement.lowest_prediction_score
    if lowest is not None and sum(threshold <= lowest for threshold in agreement.threshold_scan["score_thresholds"]) > 1:
        lines.append(f"The lowest score in the predictions is {lowest:g}: thresholds at or below it count the same "
                     "(predictions cut at a higher score cannot tell them apart).")
    if agreement.each_object_once is not None:
        lines.append(each_object_once_sentence(agreement))
    return lines


def each_object_once_sentence(agreement: CountAgreement) -> str:
    """The count rule in use and what counting each object once changes (total MAE per image, boxes merged)."""
    effect = agreement.each_object_once
    rule = (f"Each object counted once: overlapping boxes (IoU > {agreement.merge_iou:g}) of any classes counted as "
            "one, of the class with the highest score (as in counts.csv)."
            if agreement.merge_iou is not None else "Every box counted, also two boxes of different classes on one "
                                                    "object.")
    return (f"{rule} Merging such boxes removes {effect['boxes_merged']} of the counted boxes: total MAE per image "
            f"{tables.format_value(effect['total_mae_without_merge'])} without, "
            f"{tables.format_value(effect['total_mae_with_merge'])} with the merge (IoU > {effect['iou_threshold']:g}).")


# ---------------------------------------------------------------- the evaluation


# COCO's own cap of detections per image (pycocotools' maxDets[2]).
COCO_MAX_DETECTIONS = 100


def _check_thresholds(score_threshold: float, iou_threshold: float, max_detections: int) -> None:
    if not 0.0 < iou_threshold <= 1.0:
        raise errors.ConfigError(f"iou_threshold: {iou_threshold} is outside (0, 1]. Use e.g. 0.5.")
    if not math.isfinite(score_threshold) or score_threshold < 0:
        raise errors.ConfigError(f"score_threshold: {score_threshold} must be a number >= 0. Use e.g. 0.3.")
    if int(max_detections) != max_detections or max_detections < 1:
        raise errors.ConfigError(f"max_detections: {max_detections} must be a whole number >= 1. Use e.g. 100.")


def default_max_detections(ground_truth: Mapping[str, voc.VocAnnotation]) -> int:
    """COCO's 100, or twice the most boxes of one class in one image when that is more."""
    densest = max((collections.Counter(obj.name for obj in annotation.objects).most_common(1)[0][1]
                   for annotation in ground_truth.values() if annotation.objects), default=0)
    return max(COCO_MAX_DETECTIONS, 2 * densest)


def evaluate_detection(ground_truth: Mapping[str, voc.VocAnnotation], predictions: Sequence[prediction_formats.Detection],
                       classes: Sequence[str] | None = None, score_threshold: float = 0.3, iou_threshold: float = 0.5,
                       max_detections: int | None = None,
                       count_merge_iou: float | None = prediction_formats.COUNT_MERGE_IOU) -> DetectionEvaluation:
    """Score predictions against ground truth and compare counts (definitions in the module docstring).

    Args:
        ground_truth: image file name -> annotation; every image counts, empty ones included.
        predictions: detections; ``filename`` must name a ground-truth image (``match_predictions``
            is applied, so an XML stem also matches). Boxes in pixels (xmin, ymin, xmax, ymax).
        classes: category order (e.g. the model's label map); None = sorted ground-truth classes.
        score_threshold: lowest score for TP/FP/FN, precision, recall, F1, the confusion matrix and
            the count agreement (AP always ranks every prediction).
        iou_threshold: lowest IoU of a match for the same figures (AP uses COCO's thresholds).
        max_detections: detections per image and class that COCOeval keeps (highest scores); None =
            ``default_max_detections(ground_truth)``.
        count_merge_iou: counts take each object once (boxes of different classes overlapping with IoU
            above it count once, as counts.csv); None counts every box (``evaluate_counts``).

    Returns:
        The evaluation, every figure with the thresholds it was taken at.

    Raises:
        DatasetError: no ground-truth images, or predictions for images without ground truth.
        ConfigError: a threshold out of range.
    """
    if not ground_truth:
        raise errors.DatasetError("ground truth: no annotated images to evaluate on. Give a folder of VOC files.")
    if max_detections is None:
        max_detections = default_max_detections(ground_truth)
    _check_thresholds(score_threshold, iou_threshold, max_detections)
    predictions = match_predictions(ground_truth, predictions)
    names, unknown = _category_names(ground_truth, predictions, classes)
    image_ids = {name: position + 1 for position, name in enumerate(sorted(ground_truth))}
    category_ids = {name: position + 1 for position, name in enumerate(names)}
    if names:
        evaluator = _run_cocoeval(ground_truth, predictions, image_ids, category_ids, max_detections)
        maps, aps, curves = _coco_figures(evaluator, names)
    else:  # nothing annotated and nothing predicted: COCOeval has no category to score
        maps, aps, curves = {"map50_95": math.nan, "map50": math.nan, "map75": math.nan}, {}, {}
    outcomes, boxes = _class_outcomes(ground_truth, predictions, names, iou_threshold), _box_counts(ground_truth, names)
    counts = _per_class_counts(outcomes, boxes, score_threshold)
    matrix = _confusion(ground_truth, predictions, names, score_threshold, iou_threshold)
    per_class = {name: {**aps[name], **counts[name]} for name in names}
    curves_by_threshold = f1_curves(outcomes, boxes, score_threshold, iou_threshold,
                                    min((float(p.score) for p in predictions), default=None))
    count_agreement = evaluate_counts(ground_truth, predictions, names, score_threshold, merge_iou=count_merge_iou)
    thresholds = {"iou_threshold": float(iou_threshold), "score_threshold": float(score_threshold),
                  "max_detections": int(max_detections), "map": MAP_DESCRIPTION}
    return DetectionEvaluation(map50=maps["map50"], map50_95=maps["map50_95"], map75=maps["map75"],
                               per_class=per_class, thresholds=thresholds, unknown_classes=unknown, classes=names,
                               confusion_matrix=matrix, pr_curves=curves, number_of_images=len(ground_truth),
                               count_agreement=count_agreement, f1_curves=curves_by_threshold)


def summary_table(evaluation: DetectionEvaluation) -> str:
    """Plain-text summary: headline mAPs with their thresholds, then one row per class."""
    thresholds, value = evaluation.thresholds, tables.format_value
    lines = [f"{evaluation.number_of_images} images. mAP50-95 {value(evaluation.map50_95)}, mAP50 "
             f"{value(evaluation.map50)}, mAP75 {value(evaluation.map75)} ({thresholds['map']}, up to "
             f"{thresholds['max_detections']} detections per image and class, all scores ranked).",
             f"Precision, recall, F1, TP/FP/FN: IoU >= {thresholds['iou_threshold']} and score >= "
             f"{thresholds['score_threshold']}.", ""]
    keys = ("ap50", "ap50_95", "precision", "recall", "f1", "tp", "fp", "fn", "ground_truth_boxes")
    rows = [["class", "AP50", "AP50-95", "precision", "recall", "F1", "TP", "FP", "FN", "boxes"]]
    rows += [[name] + [values[key] for key in keys] for name, values in evaluation.per_class.items()]
    lines.append(tables.text_table(rows))
    if evaluation.unknown_classes:
        lines.append("Classes only in the predictions (no AP, not in the mean): "
                     + ", ".join(evaluation.unknown_classes))
    if evaluation.count_agreement is not None:
        lines += ["", *count_summary_lines(evaluation.count_agreement), "",
                  tables.text_table(count_table_rows(evaluation.count_agreement))]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots




def plot_per_class_ap(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save horizontal bars of AP50 and AP50-95 per class (classes without ground truth marked); the PNG path."""
    names = list(evaluation.per_class)
    figure = figures.new_figure(7, 1.6 + 0.5 * max(1, len(names)))
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    for offset, key, label in ((-0.2, "ap50", "AP50"), (0.2, "ap50_95", "AP50-95")):
        values = [evaluation.per_class[name][key] for name in names]
        axes.barh(positions + offset, np.nan_to_num(values), height=0.4, label=label)
        for row, value in enumerate(values):
            if not math.isnan(value):
                axes.text(value, row + offset, f" {value:.2f}", va="center", fontsize=8)
            elif key == "ap50":  # one note per class, between its two (empty) bars
                axes.text(0, row, " no ground-truth boxes: no AP", va="center", fontsize=8)
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.15)
    axes.set_xlabel("average precision")
    # Legend below the axes: inside, it covered the bars of the last class.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    axes.set_title(f"Average precision per class (COCO)\nmAP50 = {tables.format_value(evaluation.map50)}, "
                   f"mAP50-95 = {tables.format_value(evaluation.map50_95)}",
                   fontsize=10)
    return figures.save_figure(figure, path)


def plot_pr_curves(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save COCOeval's interpolated precision-recall curve at IoU 0.5 per class, the threshold in use marked; the PNG path.

    A dot per class marks the table's precision and recall at the score threshold in use.
    """
    figure = figures.new_figure(6, 5)
    axes = figure.add_subplot()
    colours = figures.class_colours(evaluation.classes)
    for name, curve in evaluation.pr_curves.items():
        colour = np.array(colours[name]) / 255
        axes.plot(curve["recall"], curve["precision"], color=colour,
                  label=f"{name} (AP50 {evaluation.per_class[name]['ap50']:.2f})")
        values = evaluation.per_class[name]
        axes.plot(values["recall"], values["precision"], "o", color=colour, markeredgecolor="black", zorder=3)
    if evaluation.pr_curves:
        axes.plot([], [], "o", color="white", markeredgecolor="black",
                  label=f"at score ≥ {evaluation.thresholds['score_threshold']:g} (in use)")
        axes.legend(loc="lower left", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no class has ground-truth boxes", ha="center", va="center")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("recall (share of annotated objects found)")
    axes.set_ylabel("precision (share of detections that are right)")
    axes.set_title(f"Precision-recall per class at IoU {PR_CURVE_IOU} (COCO protocol)", fontsize=10)
    return figures.save_figure(figure, path)


def _mark_threshold_in_use(axes, curves: F1Curves, label: bool) -> None:
    """The vertical line at the threshold in use (labelled with the pooled F1 there when ``label``) and the shading
    of thresholds at or below the lowest prediction score (the predictions were cut there)."""
    lowest = curves.lowest_prediction_score
    if lowest is not None and lowest > 0:
        axes.axvspan(0, min(1.0, lowest), color="0.9", zorder=0,
                     label=f"at or below the lowest score kept ({lowest:.2g}): all alike" if label else None)
    axes.axvline(curves.score_threshold, color="tab:red", linestyle="--", linewidth=1.2)
    if label:
        f1 = curves.per_class[ALL_CLASSES]["f1"][curves.score_thresholds.index(curves.score_threshold)]
        axes.annotate(f"in use: {curves.score_threshold:g}\n(F1 {f1:.2f})", (curves.score_threshold, 1.04),
                      xytext=(4, -2), textcoords="offset points", ha="left", va="top", fontsize=8, color="tab:red",
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def plot_f1_curve(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save F1 against score threshold per class and for all classes, threshold in use and best F1 marked; the PNG path.

    Top panel: F1 per class and all classes pooled, a star at each best F1. Bottom panel: pooled
    precision and recall, what the threshold trades. Classes without ground-truth boxes are left
    out (their F1 is 0 at every threshold; their detections are in "all classes").
    """
    curves = evaluation.f1_curves
    figure = figures.new_figure(7, 6.2)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    thresholds, colours = curves.score_thresholds, figures.class_colours(evaluation.classes)
    shown = [name for name in evaluation.classes if evaluation.per_class[name]["ground_truth_boxes"] > 0]
    for name in shown + [ALL_CLASSES] * (len(shown) != 1):
        best = curves.best[name]
        colour, width = ("black", 2.2) if name == ALL_CLASSES else (np.array(colours[name]) / 255, 1.5)
        top.plot(thresholds, curves.per_class[name]["f1"], color=colour, linewidth=width,
                 label=f"{name}: best F1 {best['f1']:.2f} at {best['score_threshold']:g}")
        top.plot(best["score_threshold"], best["f1"], "*", color=colour, markersize=11, markeredgecolor="black",
                 zorder=4)
    pooled = curves.per_class[ALL_CLASSES]
    bottom.plot(thresholds, pooled["precision"], color="tab:purple", label="precision")
    bottom.plot(thresholds, pooled["recall"], color="tab:olive", linestyle="--", label="recall")
    for axes, label in ((top, True), (bottom, False)):
        _mark_threshold_in_use(axes, curves, label)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.05)
    top.set_ylabel("F1")
    bottom.set_ylabel("all classes")
    bottom.set_xlabel("score threshold (detections with a lower score are dropped)")
    bottom.legend(loc="lower left", fontsize=8)
    top.set_title(f"F1 against score threshold, IoU ≥ {curves.iou_threshold:g}   "
                  "(★ = best F1, chosen on these images: optimistic)", fontsize=10)
    figure.legend(*top.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncol=2, frameon=False)
    return figures.save_figure(figure, path)


def _confusion_labels(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(row labels, column labels): the classes, then background in plain words."""
    return (list(names) + ["nothing annotated\n(false detection)"], list(names) + ["not detected\n(missed)"])


def plot_confusion_matrix(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save the detection confusion matrix: counts in every cell, colour = share of its row; the PNG path.

    Rows are annotated classes plus "nothing annotated" (false detections), columns predicted
    classes plus "not detected" (misses). The bottom-right cell has no meaning (nothing annotated,
    nothing detected) and is left blank.
    """
    matrix = np.asarray(evaluation.confusion_matrix, dtype=np.int64)
    rows, columns = _confusion_labels(evaluation.classes)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    shares[-1, -1] = np.nan
    size = 2.4 + 0.65 * len(rows)
    figure = figures.new_figure(size + 1.6, size)
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(shares), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the row")
    for (row, column), value in np.ndenumerate(matrix):
        if row == column == len(rows) - 1:
            continue
        axes.text(column, row, str(value), ha="center", va="center", fontsize=10,
                  color="white" if shares[row, column] > 0.6 else "black")
    edge = len(rows) - 1.5  # a line between the classes and "nothing annotated" / "not detected"
    axes.axhline(edge, color="0.3", linewidth=1)
    axes.axvline(edge, color="0.3", linewidth=1)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=9)
    axes.set_yticks(range(len(rows)), rows, fontsize=9)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("annotated class")
    axes.set_title(f"Detection confusion matrix (boxes)\nIoU ≥ {evaluation.thresholds['iou_threshold']:g}, score ≥ "
                   f"{evaluation.thresholds['score_threshold']:g}, any class may match", fontsize=10)
    return figures.save_figure(figure, path)


def _count_axes(names: Sequence[str]) -> tuple[Any, list]:
    """A figure with one square panel per class (at least one), up to 3 per row."""
    columns = min(3, max(1, len(names)))
    rows = math.ceil(max(1, len(names)) / columns)
    figure = figures.new_figure(3.7 * columns + 0.3, 3.7 * rows + 1.3)  # + room for the legend below
    panels = [figure.add_subplot(rows, columns, index + 1) for index in range(max(1, len(names)))]
    return figure, panels


def _multiplicity(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (x, y) points and how many images fall on each (counts are whole numbers and overlap)."""
    if not x.size:
        return x, y, x
    points, number = np.unique(np.stack([x, y], axis=1), axis=0, return_counts=True)
    return points[:, 0], points[:, 1], number


def _points(axes, x: np.ndarray, y: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Scatter with marker area proportional to the images on each point."""
    x, y, number = _multiplicity(x, y)
    axes.scatter(x, y, s=24 * number, color=np.array(colour) / 255, alpha=0.7, edgecolors="black", linewidths=0.4,
                 zorder=3)


def plot_count_scatter(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save predicted against annotated count per image, one panel per class, with the identity line; the PNG path.

    Marker area grows with the number of images on the same point; each panel's title gives
    n, MAE and Pearson r (n/a when undefined).
    """
    import matplotlib.ticker

    agreement = evaluation.count_agreement
    names = list(agreement.classes)
    figure, panels = _count_axes(names)
    colours = figures.class_colours(names)
    for axes, name in zip(panels, names):
        annotated, predicted = agreement.counts(name)
        top = max(1.0, float(max(annotated.max(initial=0), predicted.max(initial=0)))) * 1.1 + 0.3
        axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="identity: predicted = annotated")
        _points(axes, annotated, predicted, colours[name])
        values = agreement.per_class[name]
        axes.set_xlim(-0.05 * top, top)
        axes.set_ylim(-0.05 * top, top)
        axes.set_box_aspect(1)
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.set_xlabel("annotated count per image")
        axes.set_ylabel("predicted count per image")
        axes.set_title(f"{name} (n = {values.images})\nMAE {tables.format_value(values.mean_absolute_error)}, "
                       f"r {tables.format_value(values.pearson_r)}", fontsize=9)
    if not names:
        panels[0].text(0.5, 0.5, "no classes to count", ha="center", va="center")
    handles, labels = panels[0].get_legend_handles_labels()
    if handles:  # below the panels: inside one, it could cover an over-counted image near the top left
        figure.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False)
    figure.suptitle(f"Predicted vs annotated count per image (score ≥ {agreement.score_threshold:g}; annotated = "
                    "non-difficult boxes)\nmarker area ∝ number of images on the point", fontsize=10)
    return figures.save_figure(figure, path)


def _agreement_lines(axes, values: CountStatistics) -> list[float]:
    """Draw zero, bias and the 95 % limits (when defined); the levels drawn.

    The lines are not labelled on the plot (their values are in the panel title, their meaning in
    a figure legend): labels at the lines covered each other and the data when levels were close.
    """
    axes.axhline(0, color="grey", linewidth=0.8)
    lines = [(values.bias, "-", "bias"), (values.upper_limit_of_agreement, "--", "95 % limits of agreement"),
             (values.lower_limit_of_agreement, "--", None)]
    drawn = []
    for level, style, label in lines:
        if math.isfinite(level):
            axes.axhline(level, color="tab:red", linestyle=style, linewidth=1, label=label)
            drawn.append(level)
    return drawn


def plot_bland_altman(evaluation: DetectionEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save a Bland-Altman plot per class: predicted - annotated against their mean, bias and 95 % limits; the PNG path.

    Lines: bias = mean(predicted - annotated) (solid), bias ± 1.96 SD (dashed; absent with fewer
    than 2 images), zero (grey).
    """
    agreement = evaluation.count_agreement
    names = list(agreement.classes)
    figure, panels = _count_axes(names)
    colours = figures.class_colours(names)
    for axes, name in zip(panels, names):
        annotated, predicted = agreement.counts(name)
        difference = predicted - annotated
        _points(axes, (annotated + predicted) / 2, difference, colours[name])
        levels = _agreement_lines(axes, agreement.per_class[name])
        spread = max([1.0, *np.abs(difference), *np.abs(levels)]) * 1.3
        axes.set_ylim(-spread, spread)
        axes.set_box_aspect(1)
        axes.set_xlabel("mean of predicted and annotated count")
        axes.set_ylabel("predicted − annotated count")
        values = agreement.per_class[name]
        limits = ("n < 2: no limits" if not math.isfinite(values.sd_difference) else
                  f"95 % limits {values.lower_limit_of_agreement:+.2f} to {values.upper_limit_of_agreement:+.2f}")
        axes.set_title(f"{name} (n = {values.images})\nbias {tables.format_value(values.bias)}, {limits}", fontsize=9)
    if not names:
        panels[0].text(0.5, 0.5, "no classes to count", ha="center", va="center")
    handles, labels = panels[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.suptitle(f"Bland–Altman: predicted − annotated count against their mean, per image (score ≥ "
                    f"{agreement.score_threshold:g})\nbias = mean difference; 95 % limits of agreement = bias ± 1.96 SD",
                    fontsize=10)
    return figures.save_figure(figure, path)
