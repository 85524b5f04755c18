"""Classification quality control: scikit-learn's figures for one label per image.

Labels and predictions are joined by file name, never by row position. Every figure comes
from ``sklearn.metrics`` (our code only lines the data up):

* accuracy, balanced accuracy, macro and weighted precision / recall / F1, a per-class report
  (``zero_division=0``: a class never predicted has precision 0), the confusion matrix (rows =
  true class, columns = predicted, ``classes`` order) as counts and row-normalised.
* with scores for every class (``score_<class>`` columns): one-vs-rest ROC AUC per class and
  its macro mean (``roc_auc_score(..., multi_class="ovr")`` when the scores of a row sum to 1,
  which scikit-learn requires; otherwise the mean of the per-class binary AUCs, the same
  definition), and ROC curves. With two classes the AUC is the binary one of the second
  (sorted) class.

CSV files are UTF-8 (a byte-order mark is tolerated); extra columns are ignored; file names
and labels are stripped of surrounding spaces. The reading functions here are shared with
``helpers.qc.grading``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from helpers import errors, figures, tables

LOGGER = logging.getLogger(__name__)
SCORE_PREFIX = "score_"
EXAMPLES_IN_ERRORS = 5


def _cell(path: pathlib.Path, line: int, row: Mapping[str, Any], column: str) -> str:
    """Stripped text of ``row[column]``; DatasetError naming file, line and column when it is empty."""
    text = (row.get(column) or "").strip()
    if not text:
        raise errors.DatasetError(f"{path}: line {line}: column {column!r} is empty. Fill it in or delete the row.")
    return text


def read_column_by_filename(path: str | pathlib.Path, column: str) -> dict[str, tuple[int, str]]:
    """filename -> (line number, stripped text of ``column``) of a CSV with a ``filename`` column.

    Raises:
        DatasetError: missing column, empty cell, or a file name listed twice (both lines named).
    """
    path = pathlib.Path(path)
    _, rows = tables.read_csv_rows(path, ["filename", column])
    values: dict[str, tuple[int, str]] = {}
    for line, row in rows:
        filename = _cell(path, line, row, "filename")
        if filename in values:
            raise errors.DatasetError(f"{path}: line {line}: {filename!r} is listed again (first on line "
                                      f"{values[filename][0]}). Keep one row per image.")
        values[filename] = (line, _cell(path, line, row, column))
    return values


def read_label_csv(path: str | pathlib.Path, label_column: str = "label") -> dict[str, str]:
    """filename -> label of a CSV with columns ``filename`` and ``label_column`` (others ignored).

    Raises:
        DatasetError: missing file or column, empty cell, duplicate file name (named with its line).
    """
    return {filename: text for filename, (_, text) in read_column_by_filename(path, label_column).items()}


def read_score_csv(path: str | pathlib.Path, prefix: str = SCORE_PREFIX) -> dict[str, dict[str, float]]:
    """filename -> {name: score} from the ``<prefix><name>`` columns (e.g. ``score_RBC``); {} when there are none.

    Raises:
        DatasetError: a score that is not a finite number (file, line and column named).
    """
    path = pathlib.Path(path)
    columns, rows = tables.read_csv_rows(path, ["filename"])
    score_columns = [column for column in columns if column.startswith(prefix) and len(column) > len(prefix)]
    if not score_columns:
        return {}
    scores = {}
    for line, row in rows:
        values = {}
        for column in score_columns:
            text = _cell(path, line, row, column)
            try:
                values[column[len(prefix):]] = float(text)
            except ValueError:
                values[column[len(prefix):]] = math.nan
            if not math.isfinite(values[column[len(prefix):]]):
                raise errors.DatasetError(f"{path}: line {line}: column {column!r} is {text!r}, not a finite number. "
                                          "Write the model's score (e.g. 0.93).")
        scores[_cell(path, line, row, "filename")] = values
    return scores


def join_by_filename(labels: Mapping[str, Any], predictions: Mapping[str, Any], labels_source: str = "labels",
                     predictions_source: str = "predictions") -> list[str]:
    """Sorted file names present in both; DatasetError naming the first files present in only one.

    Args:
        labels, predictions: filename -> value.
        labels_source, predictions_source: how the two are named in errors (e.g. the CSV paths).
    """
    for present, source, absent, other in ((labels, labels_source, predictions, predictions_source),
                                           (predictions, predictions_source, labels, labels_source)):
        only_here = sorted(set(present) - set(absent))
        if only_here:
            shown = ", ".join(repr(name) for name in only_here[:EXAMPLES_IN_ERRORS])
            more = f" and {len(only_here) - EXAMPLES_IN_ERRORS} more" if len(only_here) > EXAMPLES_IN_ERRORS else ""
            raise errors.DatasetError(f"{source}: {shown}{more} not in {other} ({len(only_here)} file name(s) in only "
                                      f"one file). Give both files the same images (rows are joined by filename).")
    if not labels:
        raise errors.DatasetError(f"{labels_source}: no rows. Give one row per image (filename and its label).")
    return sorted(labels)


# ---------------------------------------------------------------- evaluation


@dataclasses.dataclass
class ClassificationEvaluation:
    """scikit-learn's classification figures.

    Attributes:
        accuracy, balanced_accuracy: 0..1.
        macro_f1, weighted_f1, macro_precision, macro_recall, weighted_precision, weighted_recall: 0..1.
        classes: sorted union of true and predicted labels.
        confusion_matrix: int [C][C], rows = true class, columns = predicted, ``classes`` order.
        confusion_matrix_normalised: float [C][C], each row divided by its total (0 for absent classes).
        per_class: class -> {precision, recall, f1, support, roc_auc (None without scores)}.
        roc_auc_ovr: one-vs-rest macro ROC AUC; None without scores for every class or when undefined.
        roc_curves: class -> {"false_positive_rate": [...], "true_positive_rate": [...]} (with scores).
        number_of_images: rows joined.
    """

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    weighted_f1: float
    macro_precision: float
    macro_recall: float
    weighted_precision: float
    weighted_recall: float
    classes: list[str]
    confusion_matrix: list[list[int]]
    confusion_matrix_normalised: list[list[float]]
    per_class: dict[str, dict[str, Any]]
    roc_auc_ovr: float | None
    roc_curves: dict[str, dict[str, list[float]]]
    number_of_images: int

    def to_json_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types; NaN becomes None."""
        return tables.json_safe(dataclasses.asdict(self))


def _score_matrix(filenames: Sequence[str], classes: Sequence[str],
                  scores: Mapping[str, Mapping[str, float]] | None) -> np.ndarray | None:
    """float [N, C] scores in ``classes`` order, or None when some class (or image) has none."""
    if not scores:
        return None
    missing_images = [name for name in filenames if name not in scores]
    if missing_images:
        raise errors.DatasetError(f"scores: no scores for {missing_images[0]!r} ({len(missing_images)} image(s)). "
                                  "Give score columns on every row of the predictions.")
    missing_classes = sorted({name for name in classes for filename in filenames if name not in scores[filename]})
    if missing_classes:
        LOGGER.warning("no %s<class> scores for %s: ROC AUC is not computed", SCORE_PREFIX, ", ".join(missing_classes))
        return None
    return np.array([[scores[filename][name] for name in classes] for filename in filenames], dtype=np.float64)


def roc_figures(truth: np.ndarray, classes: Sequence[str], score_matrix: np.ndarray) -> tuple[dict, dict, float | None]:
    """Per-class one-vs-rest AUCs, ROC curves, and the macro AUC (module docstring), all from scikit-learn.

    Args:
        truth: [N] true labels.
        classes: C names, the columns of ``score_matrix``.
        score_matrix: float [N, C].

    Returns:
        ({class: AUC or None}, {class: {false_positive_rate, true_positive_rate}}, macro AUC or None);
        a class absent from (or alone in) ``truth`` has no AUC, and then neither has the macro mean.
    """
    from sklearn import metrics

    aucs, curves = {}, {}
    for column, name in enumerate(classes):
        positives = truth == name
        if positives.all() or not positives.any():
            aucs[name] = None
            continue
        aucs[name] = float(metrics.roc_auc_score(positives, score_matrix[:, column]))
        false_positive_rate, true_positive_rate, _ = metrics.roc_curve(positives, score_matrix[:, column])
        curves[name] = {"false_positive_rate": false_positive_rate.tolist(),
                        "true_positive_rate": true_positive_rate.tolist()}
    if any(value is None for value in aucs.values()):
        return aucs, curves, None
    if len(classes) == 2:
        return aucs, curves, aucs[classes[1]]
    if np.allclose(score_matrix.sum(axis=1), 1.0):
        return aucs, curves, float(metrics.roc_auc_score(truth, score_matrix, multi_class="ovr", labels=list(classes)))
    return aucs, curves, float(np.mean(list(aucs.values())))


def evaluate_classification(labels: Mapping[str, str], predictions: Mapping[str, str],
                            scores: Mapping[str, Mapping[str, float]] | None = None,
                            labels_source: str = "labels", predictions_source: str = "predictions"
                            ) -> ClassificationEvaluation:
    """Compare predicted labels with true ones, joined by file name.

    Args:
        labels: filename -> true label.
        predictions: filename -> predicted label.
        scores: optional filename -> {class: score}; ROC figures need a score for every class.
        labels_source, predictions_source: names used in errors (e.g. the CSV paths).

    Returns:
        The evaluation (module docstring for the definitions).

    Raises:
        DatasetError: a file name in only one of the two (named), or no rows.
    """
    from sklearn import metrics

    filenames = join_by_filename(labels, predictions, labels_source, predictions_source)
    truth = np.array([labels[name] for name in filenames], dtype=object)
    predicted = np.array([predictions[name] for name in filenames], dtype=object)
    classes = sorted(set(truth) | set(predicted))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(truth, predicted, labels=classes,
                                                                             zero_division=0)
    averages = {average: metrics.precision_recall_fscore_support(truth, predicted, labels=classes, average=average,
                                                                 zero_division=0)[:3]
                for average in ("macro", "weighted")}
    score_matrix = _score_matrix(filenames, classes, scores)
    aucs, curves, macro_auc = roc_figures(truth, classes, score_matrix) if score_matrix is not None else ({}, {}, None)
    per_class = {name: {"precision": float(precision[index]), "recall": float(recall[index]), "f1": float(f1[index]),
                        "support": int(support[index]), "roc_auc": aucs.get(name)}
                 for index, name in enumerate(classes)}
    return ClassificationEvaluation(
        accuracy=float(metrics.accuracy_score(truth, predicted)),
        balanced_accuracy=float(metrics.balanced_accuracy_score(truth, predicted)),
        macro_f1=float(averages["macro"][2]), weighted_f1=float(averages["weighted"][2]),
        macro_precision=float(averages["macro"][0]), macro_recall=float(averages["macro"][1]),
        weighted_precision=float(averages["weighted"][0]), weighted_recall=float(averages["weighted"][1]),
        classes=classes, confusion_matrix=metrics.confusion_matrix(truth, predicted, labels=classes).tolist(),
        confusion_matrix_normalised=np.nan_to_num(
            metrics.confusion_matrix(truth, predicted, labels=classes, normalize="true")).tolist(),
        per_class=per_class, roc_auc_ovr=macro_auc, roc_curves=curves, number_of_images=len(filenames))


def summary_table(evaluation: ClassificationEvaluation) -> str:
    """Plain-text summary: headline figures, the per-class report and the confusion matrix."""
    value = tables.format_value
    lines = [f"{evaluation.number_of_images} images, {len(evaluation.classes)} classes. Accuracy "
             f"{value(evaluation.accuracy)}, balanced accuracy {value(evaluation.balanced_accuracy)}, macro F1 "
             f"{value(evaluation.macro_f1)}, weighted F1 {value(evaluation.weighted_f1)}, one-vs-rest ROC AUC "
             f"{value(evaluation.roc_auc_ovr)}.", ""]
    rows = [["class", "precision", "recall", "F1", "support", "ROC AUC"]]
    rows += [[name] + [values[key] for key in ("precision", "recall", "f1", "support", "roc_auc")]
             for name, values in evaluation.per_class.items()]
    lines += [tables.text_table(rows), "", "Confusion matrix (rows = true class, columns = predicted):"]
    lines.append(tables.text_table([["true \\ predicted"] + evaluation.classes]
                               + [[name] + row for name, row in zip(evaluation.classes, evaluation.confusion_matrix)]))
    return "\n".join(lines)


# ---------------------------------------------------------------- plots




def plot_confusion_panels(counts: Sequence[Sequence[int]], normalised: Sequence[Sequence[float]],
                          labels: Sequence[str], title: str, path: str | pathlib.Path) -> pathlib.Path:
    """Save a 2-panel PNG: confusion counts | row-normalised fractions (rows = true, columns = predicted)."""
    size = 2.5 + 0.55 * len(labels)
    figure = figures.new_figure(2 * size + 1, size + 1.6)  # room for the rotated class names and the title
    for index, (matrix, subtitle, text) in enumerate(((np.asarray(counts), "counts", "{:d}"),
                                                      (np.asarray(normalised), "fraction of each true row", "{:.2f}"))):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.imshow(matrix, cmap="Blues", vmin=0)
        middle = matrix.max() / 2 if matrix.size else 0
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, text.format(value.item()), ha="center", va="center", fontsize=8,
                      color="white" if value > middle else "black")
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axes.set_yticks(range(len(labels)), labels)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(subtitle)
    figure.suptitle(title)
    return figures.save_figure(figure, path)


def plot_confusion_matrix(evaluation: ClassificationEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save the confusion matrix as counts and row-normalised; the PNG path."""
    return plot_confusion_panels(evaluation.confusion_matrix, evaluation.confusion_matrix_normalised,
                                 evaluation.classes, f"Confusion matrix ({evaluation.number_of_images} images, "
                                 f"accuracy {evaluation.accuracy:.3f})", path)


def plot_roc_curves(evaluation: ClassificationEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save one-vs-rest ROC curves per class (a note instead when no scores were given); the PNG path."""
    figure = figures.new_figure(6, 5)
    axes = figure.add_subplot()
    for name, curve in evaluation.roc_curves.items():
        axes.plot(curve["false_positive_rate"], curve["true_positive_rate"],
                  label=f"{name} (AUC {evaluation.per_class[name]['roc_auc']:.3f})")
    axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    if not evaluation.roc_curves:
        axes.text(0.5, 0.5, f"no ROC curves: give {SCORE_PREFIX}<class> columns\nfor every class in the predictions",
                  ha="center", va="center")
    else:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_title(f"ROC one-vs-rest, macro AUC {tables.format_value(evaluation.roc_auc_ovr)}")
    return figures.save_figure(figure, path)
