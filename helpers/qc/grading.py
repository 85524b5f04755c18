"""Grading quality control: ordinal grades 0..K-1 (e.g. diabetic retinopathy 0-4) judged by kappa.

Every figure comes from ``sklearn.metrics``; labels and predictions are joined by file name:

* ``quadratic_kappa`` / ``linear_kappa``: ``cohen_kappa_score(..., labels=range(K), weights=...)``,
  the field's standard metric (quadratic weights punish a grade 4 called 0 sixteen times more
  than one called 3). Undefined (None in JSON) when all images and predictions share one grade.
* accuracy, ``mean_absolute_error`` (in grades), the K x K confusion matrix (rows = true grade
  0..K-1, columns = predicted) as counts and row-normalised.
* per grade: sensitivity (recall of that grade) and specificity (recall of "not that grade"
  from ``multilabel_confusion_matrix``), support.
* referable disease, grade >= ``referable_threshold`` (2 for DR): sensitivity and specificity
  (``recall_score`` with positive label 1 and 0), and with per-grade scores (``score_0`` ...
  ``score_<K-1>`` columns) the ROC AUC of the referable probability, the sum of the scores of
  grades >= threshold, with its ROC curve.

The CSVs hold ``filename,grade`` (a ``label`` column is accepted when there is no ``grade``);
grades are whole numbers 0..K-1 (``2`` or ``2.0``); extra columns such as a patient ID are ignored.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping

import numpy as np

from helpers import errors, figures, tables
from helpers.qc import classification

GRADE_COLUMNS = ("grade", "label")


# ---------------------------------------------------------------- reading


def _grade(text: str) -> int | None:
    """The whole number in ``text`` ('2', '2.0'), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def read_grade_csv(path: str | pathlib.Path, num_grades: int = 5) -> dict[str, int]:
    """filename -> grade of a CSV with ``filename`` and ``grade`` (or ``label``) columns.

    Raises:
        DatasetError: missing file or column, duplicate file name, or a grade that is not a whole
            number in 0..num_grades-1 (file, line and value named).
    """
    path = pathlib.Path(path)
    columns, _ = tables.read_csv_rows(path, ["filename"])
    column = next((name for name in GRADE_COLUMNS if name in columns), GRADE_COLUMNS[0])
    grades = {}
    for filename, (line, text) in classification.read_column_by_filename(path, column).items():
        grade = _grade(text)
        if grade is None or not 0 <= grade < num_grades:
            raise errors.DatasetError(f"{path}: line {line}: grade {text!r} of {filename!r} is not a whole number from "
                                      f"0 to {num_grades - 1}. Fix the grade, or set the number of grades "
                                      f"(--num-grades) to match your scale.")
        grades[filename] = grade
    return grades


def read_grade_scores(path: str | pathlib.Path, num_grades: int = 5) -> dict[str, dict[int, float]]:
    """filename -> {grade: score} from ``score_0`` ... columns; {} when the file has none.

    Raises:
        DatasetError: a score column that is not ``score_<grade>`` for a grade 0..num_grades-1, or a
            non-numeric score.
    """
    scores = classification.read_score_csv(path)
    result = {}
    for filename, values in scores.items():
        grades = {_grade(name): score for name, score in values.items()}
        if None in grades or not all(0 <= grade < num_grades for grade in grades):
            raise errors.DatasetError(f"{path}: score columns {', '.join(sorted(values))} must be "
                                      f"{classification.SCORE_PREFIX}0 to {classification.SCORE_PREFIX}"
                                      f"{num_grades - 1}. Rename them (one per grade).")
        result[filename] = grades
    return result


# ---------------------------------------------------------------- evaluation


@dataclasses.dataclass
class GradingEvaluation:
    """scikit-learn's grading figures (module docstring for the definitions).

    Attributes:
        quadratic_kappa, linear_kappa: Cohen's kappa with those weights (NaN when undefined).
        accuracy: exact grade agreement 0..1.
        mean_absolute_error: mean |true - predicted| in grades.
        num_grades: K; grades are 0..K-1.
        confusion_matrix: int [K][K], rows = true grade, columns = predicted.
        confusion_matrix_normalised: float [K][K], each row divided by its total (0 for absent grades).
        per_grade: grade -> {sensitivity, specificity, support}.
        referable: {threshold, sensitivity, specificity, roc_auc (None without scores), positives, negatives}.
        referable_roc_curve: {"false_positive_rate", "true_positive_rate"} or None.
        number_of_images: rows joined.
    """

    quadratic_kappa: float
    linear_kappa: float
    accuracy: float
    mean_absolute_error: float
    num_grades: int
    confusion_matrix: list[list[int]]
    confusion_matrix_normalised: list[list[float]]
    per_grade: dict[int, dict[str, Any]]
    referable: dict[str, Any]
    referable_roc_curve: dict[str, list[float]] | None
    number_of_images: int

    def to_json_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types; grades as text keys, NaN as None."""
        return tables.json_safe(dataclasses.asdict(self))


def _check_settings(num_grades: int, referable_threshold: int) -> None:
    if int(num_grades) != num_grades or num_grades < 2:
        raise errors.ConfigError(f"num_grades: {num_grades} must be a whole number >= 2 (5 for diabetic retinopathy).")
    if int(referable_threshold) != referable_threshold or not 1 <= referable_threshold <= num_grades - 1:
        raise errors.ConfigError(f"referable_threshold: {referable_threshold} must be a whole number from 1 to "
                                 f"{num_grades - 1} (grade >= threshold is referable; 2 for diabetic retinopathy).")


def _check_grades(grades: Mapping[str, int], num_grades: int, source: str) -> None:
    wrong = [(name, grade) for name, grade in grades.items()
             if not isinstance(grade, (int, np.integer)) or not 0 <= grade < num_grades]
    if wrong:
        raise errors.DatasetError(f"{source}: grade {wrong[0][1]!r} of {wrong[0][0]!r} ({len(wrong)} row(s)) is not a "
                                  f"whole number from 0 to {num_grades - 1}. Fix the grades or the number of grades.")


def _referable(truth: np.ndarray, predicted: np.ndarray, threshold: int, probabilities: np.ndarray | None
               ) -> tuple[dict[str, Any], dict[str, list[float]] | None]:
    """Referable (grade >= threshold) sensitivity, specificity, ROC AUC and curve."""
    from sklearn import metrics

    true_referable, predicted_referable = (truth >= threshold).astype(int), (predicted >= threshold).astype(int)
    result = {"threshold": int(threshold),
              "sensitivity": float(metrics.recall_score(true_referable, predicted_referable, pos_label=1,
                                                        zero_division=0)),
              "specificity": float(metrics.recall_score(true_referable, predicted_referable, pos_label=0,
                                                        zero_division=0)),
              "roc_auc": None, "positives": int(true_referable.sum()),
              "negatives": int(len(true_referable) - true_referable.sum())}
    if probabilities is None or result["positives"] == 0 or result["negatives"] == 0:
        return result, None
    result["roc_auc"] = float(metrics.roc_auc_score(true_referable, probabilities))
    false_positive_rate, true_positive_rate, _ = metrics.roc_curve(true_referable, probabilities)
    return result, {"false_positive_rate": false_positive_rate.tolist(),
                    "true_positive_rate": true_positive_rate.tolist()}


def _referable_probabilities(filenames: list[str], scores: Mapping[str, Mapping[int, float]] | None, num_grades: int,
                             threshold: int) -> np.ndarray | None:
    """float [N]: sum of the scores of grades >= threshold; None unless every image has a score for every grade."""
    if not scores or any(name not in scores or set(scores[name]) != set(range(num_grades)) for name in filenames):
        return None
    return np.array([sum(scores[name][grade] for grade in range(threshold, num_grades)) for name in filenames])


def evaluate_grading(labels: Mapping[str, int], predictions: Mapping[str, int], num_grades: int = 5,
                     referable_threshold: int = 2, scores: Mapping[str, Mapping[int, float]] | None = None,
                     labels_source: str = "labels", predictions_source: str = "predictions") -> GradingEvaluation:
    """Compare predicted grades with true ones, joined by file name.

    Args:
        labels: filename -> true grade 0..num_grades-1.
        predictions: filename -> predicted grade.
        num_grades: K.
        referable_threshold: grades >= this are referable disease.
        scores: optional filename -> {grade: score} for every grade (the referable ROC needs it).
        labels_source, predictions_source: names used in errors (e.g. the CSV paths).

    Raises:
        DatasetError: a file name in only one of the two, or a grade out of range (named).
        ConfigError: num_grades or referable_threshold out of range.
    """
    from sklearn import metrics

    _check_settings(num_grades, referable_threshold)
    filenames = classification.join_by_filename(labels, predictions, labels_source, predictions_source)
    _check_grades(labels, num_grades, labels_source)
    _check_grades(predictions, num_grades, predictions_source)
    truth = np.array([int(labels[name]) for name in filenames])
    predicted = np.array([int(predictions[name]) for name in filenames])
    grades = list(range(num_grades))
    sensitivity = metrics.recall_score(truth, predicted, labels=grades, average=None, zero_division=0)
    per_grade = {}
    for grade, ((true_negative, false_positive), _) in zip(grades, metrics.multilabel_confusion_matrix(
            truth, predicted, labels=grades)):
        per_grade[grade] = {"sensitivity": float(sensitivity[grade]),
                            "specificity": float(true_negative / (true_negative + false_positive))
                            if true_negative + false_positive else 0.0,
                            "support": int(np.sum(truth == grade))}
    probabilities = _referable_probabilities(filenames, scores, num_grades, referable_threshold)
    referable, curve = _referable(truth, predicted, referable_threshold, probabilities)
    return GradingEvaluation(
        quadratic_kappa=float(metrics.cohen_kappa_score(truth, predicted, labels=grades, weights="quadratic")),
        linear_kappa=float(metrics.cohen_kappa_score(truth, predicted, labels=grades, weights="linear")),
        accuracy=float(metrics.accuracy_score(truth, predicted)),
        mean_absolute_error=float(metrics.mean_absolute_error(truth, predicted)), num_grades=int(num_grades),
        confusion_matrix=metrics.confusion_matrix(truth, predicted, labels=grades).tolist(),
        confusion_matrix_normalised=np.nan_to_num(
            metrics.confusion_matrix(truth, predicted, labels=grades, normalize="true")).tolist(),
        per_grade=per_grade, referable=referable, referable_roc_curve=curve, number_of_images=len(filenames))


def summary_table(evaluation: GradingEvaluation) -> str:
    """Plain-text summary: kappa and headline figures, per-grade table, referable disease, confusion matrix."""
    value, referable = tables.format_value, evaluation.referable
    lines = [f"{evaluation.number_of_images} images, grades 0-{evaluation.num_grades - 1}. Quadratic weighted kappa "
             f"{value(evaluation.quadratic_kappa)}, linear kappa {value(evaluation.linear_kappa)}, accuracy "
             f"{value(evaluation.accuracy)}, mean absolute error {value(evaluation.mean_absolute_error)} grades.",
             f"Referable (grade >= {referable['threshold']}; {referable['positives']} referable, "
             f"{referable['negatives']} not): sensitivity {value(referable['sensitivity'])}, specificity "
             f"{value(referable['specificity'])}, ROC AUC {value(referable['roc_auc'])}.", ""]
    rows = [["grade", "sensitivity", "specificity", "support"]]
    rows += [[grade] + [values[key] for key in ("sensitivity", "specificity", "support")]
             for grade, values in evaluation.per_grade.items()]
    lines += [tables.text_table(rows), "", "Confusion matrix (rows = true grade, columns = predicted):"]
    lines.append(tables.text_table([["true \\ predicted"] + list(range(evaluation.num_grades))]
                               + [[grade] + row for grade, row in enumerate(evaluation.confusion_matrix)]))
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def plot_confusion_matrix(evaluation: GradingEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save the K x K confusion matrix as counts and row-normalised; the PNG path."""
    return classification.plot_confusion_panels(
        evaluation.confusion_matrix, evaluation.confusion_matrix_normalised,
        [str(grade) for grade in range(evaluation.num_grades)],
        f"Grades ({evaluation.number_of_images} images): quadratic kappa {tables.format_value(evaluation.quadratic_kappa)}",
        path)


def plot_roc_curves(evaluation: GradingEvaluation, path: str | pathlib.Path) -> pathlib.Path:
    """Save the referable-disease ROC curve with the operating point of the predicted grades; the PNG path."""
    referable = evaluation.referable
    figure = figures.new_figure(6, 5)
    axes = figure.add_subplot()
    curve = evaluation.referable_roc_curve
    if curve is not None:
        axes.plot(curve["false_positive_rate"], curve["true_positive_rate"], label=f"AUC {referable['roc_auc']:.3f}")
    else:
        axes.text(0.5, 0.55, "no ROC curve: give score_0 ... score_K-1 columns\n(and images of both kinds)",
                  ha="center", va="center")
    axes.scatter([1 - referable["specificity"]], [referable["sensitivity"]], color="black", zorder=3,
                 label=f"predicted grades (sens. {referable['sensitivity']:.2f}, spec. {referable['specificity']:.2f})")
    axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_title(f"Referable disease: grade >= {referable['threshold']}")
    axes.legend(loc="lower right", fontsize=8)
    return figures.save_figure(figure, path)
