"""Section 5: measure a trained grader on graded images it never trained on.

The test images are a held-out folder plus its grades CSV (same columns as the training CSV),
checked by the same doctor; without one, the run's validation split is used and the report says
that this is optimistic (those images chose the kept epoch and the regression thresholds).
Every figure comes from ``helpers.qc.grading`` (scikit-learn). Written into ``<run>/qc/``:
``labels.csv`` and ``predictions.csv`` (the inputs of ``python -m helpers.qc grading``),
``metrics.json``, the confusion matrix, the referable-disease ROC curve, a gallery of the
largest grade errors and Grad-CAM figures of the expected grade (``helpers.grading.gradcam``);
and ``qc_report.pdf`` in the run folder. ``QualityResult.browse`` shows every image.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from helpers import config as config_module
from helpers import display, errors, runs
from helpers import split as split_module
from helpers.grading import dataset as dataset_module
from helpers.grading import predict
from helpers.grading.config import GradingConfig
from helpers.qc import grading as grading_qc

ERRORS_SHOWN = 8


@dataclasses.dataclass
class QualityResult:
    """Everything QC measured and drew.

    Attributes:
        run, config: the run checked and its settings; settings: its ``grading.json``.
        source: plain words saying which images were used.
        evaluation: ``helpers.qc.grading.GradingEvaluation``.
        items: the graded images by key; grades: {key: predicted grade}; scores: {key: float [K]}.
        model: the exported grader (for Grad-CAM).
        plots: {name: PNG path}; report_path: ``qc_report.pdf``.
        mistakes: wrongly graded images, furthest from the true grade first (dicts: key, path, label,
            predicted, score, distance).
        gradcam_figures: PNG paths (image | expected-grade Grad-CAM).
    """

    run: runs.RunFolder
    config: GradingConfig
    settings: dict
    source: str
    evaluation: Any
    items: dict
    grades: dict
    scores: dict
    model: Any = None
    plots: dict = dataclasses.field(default_factory=dict)
    report_path: pathlib.Path | None = None
    mistakes: list = dataclasses.field(default_factory=list)
    gradcam_figures: list = dataclasses.field(default_factory=list)

    def predicted(self, key: str) -> tuple[str, float]:
        """(predicted grade as text, its score 0..1) of image ``key``."""
        grade = self.grades[key]
        return str(grade), float(self.scores[key][grade])

    def browse(self):
        """An ipywidgets browser over the test images: image and Grad-CAM, true and predicted grade, scores."""
        from helpers.grading import browser

        return browser.browse(self)

    def summary_text(self) -> str:
        return f"Measured on {self.source}.\n" + grading_qc.summary_table(self.evaluation)

    def show(self) -> None:
        """Print the metrics tables and show the plots."""
        display.show_result(self.summary_text(), self.report_path, list(self.plots.values()) + list(self.gradcam_figures))


def _test_items(run: runs.RunFolder, config: GradingConfig, test_images: str, test_labels_csv: str):
    """(items, description): the test folder's usable images, or the run's validation split."""
    columns = {"num_grades": config.num_grades, "grade_column": config.grade_column,
               "group_column": config.group_column, "filename_column": config.filename_column}
    if str(test_images).strip():
        test = dataset_module.load_grading_dataset(test_images, test_labels_csv, minimum_images_per_grade=1, **columns)
        if test.problems:
            print(test.summary_text())
        return test.items, f"the test images in {test_images} ({len(test.items)} images never used for training)"
    training = dataset_module.load_grading_dataset(config.images_dir, config.labels_csv, minimum_images_per_grade=1,
                                                   progress=False, **columns)
    by_key = training.items_by_key()
    items = [by_key[key] for key in split_module.load_split(run.split_path).validation if key in by_key]
    if not items:
        raise errors.DatasetError("Test_images: empty and the run has no validation images. Give a folder of graded "
                                  "test images and its CSV in form 1.1.")
    return items, (f"the validation split ({len(items)} images; OPTIMISTIC: these images chose the kept epoch"
                   f"{' and the decision thresholds' if config.head == 'regression' else ''} — give Test_images "
                   f"for an honest figure)")


def _write_labels(path: pathlib.Path, items, group_column: str) -> pathlib.Path:
    """``labels.csv``: filename,grade (and the group column, which the QC command ignores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "grade"] + ([group_column] if group_column else []))
        writer.writerows([item.key, item.label] + ([item.group] if group_column else []) for item in items)
    return path


def _largest_errors(result: QualityResult) -> list[dict]:
    """Images whose predicted grade is furthest from the truth (then most confident first)."""
    wrong = []
    for key, item in result.items.items():
        predicted = result.grades[key]
        if int(item.label) != predicted:
            wrong.append({"key": key, "path": item.path, "label": f"grade {item.label}", "predicted": str(predicted),
                          "score": float(result.scores[key][predicted]), "distance": abs(int(item.label) - predicted)})
    return sorted(wrong, key=lambda error: (-error["distance"], -error["score"]))


def evaluate_run(run: runs.RunFolder, test_images: str = "", test_labels_csv: str = "",
                 gradcam_images: Sequence[str] = ()) -> QualityResult:
    """Grade the test (or validation) images, evaluate with ``helpers.qc.grading``, draw, write the QC report.

    Args:
        gradcam_images: keys to explain with Grad-CAM (empty = the largest errors, then the surest hits).
    """
    from helpers.classification import plots
    from helpers.classification import quality as classification_quality
    from helpers.grading import gradcam, reports

    config = config_module.load_config(GradingConfig, run.config_path)
    model, settings = predict.load_grader(run)
    items, source = _test_items(run, config, test_images, test_labels_csv)
    grades, scores, kept, _ = predict.grade_paths(model, settings, [item.path for item in items])
    readable = set(kept)
    items = [item for item in items if item.path in readable]
    labels_path = _write_labels(run.qc / "labels.csv", items, config.group_column)
    predictions_path = predict.write_predictions_csv(run.qc / "predictions.csv", [item.key for item in items],
                                                     grades, scores)
    num_grades, threshold = settings["num_grades"], settings["referable_threshold"]
    evaluation = grading_qc.evaluate_grading(
        grading_qc.read_grade_csv(labels_path, num_grades), grading_qc.read_grade_csv(predictions_path, num_grades),
        num_grades, threshold, grading_qc.read_grade_scores(predictions_path, num_grades),
        str(labels_path), str(predictions_path))
    (run.qc / "metrics.json").write_text(json.dumps(evaluation.to_json_dict(), ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    result = QualityResult(run, config, settings, source, evaluation, {item.key: item for item in items},
                            {item.key: int(grade) for item, grade in zip(items, grades)},
                            {item.key: np.asarray(row) for item, row in zip(items, scores)}, model)
    result.mistakes = _largest_errors(result)
    result.plots = {"confusion_matrix": grading_qc.plot_confusion_matrix(evaluation, run.qc / "confusion_matrix.png"),
                    "referable_roc": grading_qc.plot_roc_curves(evaluation, run.qc / "referable_roc.png"),
                    "largest_errors": plots.mistakes_gallery(result.mistakes[:ERRORS_SHOWN],
                                                             run.qc / "largest_errors.png")}
    result.gradcam_figures = [gradcam.gradcam_figure(result, key, run.qc / f"gradcam_{index:02d}.png")
                              for index, key in enumerate(classification_quality.gradcam_keys(result, gradcam_images))]
    result.report_path = reports.qc_report(result)
    return result
