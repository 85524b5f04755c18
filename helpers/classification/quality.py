"""Section 5: measure a trained classifier on labelled images it never trained on.

The test images are a held-out folder (one subfolder per class, or a folder plus labels CSV),
read and checked by the same doctor as the training data; without one, the run's validation
split is used and the report says that this is optimistic (it chose the kept epoch). Every
figure comes from ``helpers.qc.classification`` (scikit-learn). Written into ``<run>/qc/``:
``labels.csv`` and ``predictions.csv`` (the inputs of ``python -m helpers.qc classification``),
``metrics.json``, the confusion matrix, ROC curves, a gallery of the most confident mistakes and
Grad-CAM figures; and ``qc_report.pdf`` in the run folder.
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
from helpers.classification import dataset as dataset_module
from helpers.classification import gradcam, plots, predict
from helpers.classification.config import ClassificationConfig
from helpers.qc import classification as classification_qc

MISTAKES_SHOWN = 8
GRADCAM_DEFAULT = 4


@dataclasses.dataclass
class QualityResult:
    """Everything QC measured and drew.

    Attributes:
        run, config: the run checked and its settings.
        source: plain words saying which images were used (test folder or validation split).
        evaluation: ``helpers.qc.classification.ClassificationEvaluation``.
        items: the labelled images, by key.
        probabilities: {key: float [classes]} in ``classes`` order.
        classes: the model's class names.
        plots: {name: PNG path}.
        mistakes: the most confident mistakes, most confident first (dicts: key, path, label, predicted, score).
        gradcam_figures: PNG paths.
        report_path: ``qc_report.pdf``.
    """

    run: runs.RunFolder
    config: ClassificationConfig
    source: str
    evaluation: Any
    items: dict
    probabilities: dict
    classes: list
    model: Any = None
    plots: dict = dataclasses.field(default_factory=dict)
    mistakes: list = dataclasses.field(default_factory=list)
    gradcam_figures: list = dataclasses.field(default_factory=list)
    report_path: pathlib.Path | None = None

    def predicted(self, key: str) -> tuple[str, float]:
        scores = self.probabilities[key]
        return self.classes[int(np.argmax(scores))], float(np.max(scores))

    def summary_text(self) -> str:
        return f"Measured on {self.source}.\n" + classification_qc.summary_table(self.evaluation)

    def show(self) -> None:
        """Print the metrics table and show the plots."""
        display.show_result(self.summary_text(), self.report_path, list(self.plots.values()) + list(self.gradcam_figures))

    def browse(self):
        """An ipywidgets browser over the test images: image and Grad-CAM, true and predicted class, scores."""
        from helpers.classification import browser

        return browser.browse(self)


def _test_items(run: runs.RunFolder, config: ClassificationConfig, test_images: str, test_labels_csv: str):
    """(items, description): the test folder's usable images, or the run's validation split."""
    if str(test_images).strip():
        test = dataset_module.load_classification_dataset(test_images, test_labels_csv or None,
                                                          minimum_images_per_class=1)
        if test.problems:
            print(test.summary_text())
        return test.items, f"the test images in {test_images} ({len(test.items)} images never used for training)"
    training = dataset_module.load_classification_dataset(config.images_dir, config.labels_csv or None,
                                                          minimum_images_per_class=1, progress=False)
    split = split_module.load_split(run.split_path)
    by_key = training.items_by_key()
    items = [by_key[key] for key in split.validation if key in by_key]
    if not items:
        raise errors.DatasetError("Test_images: empty and the run has no validation images. Give a folder of "
                                  "labelled test images in form 1.1.")
    return items, (f"the validation split ({len(items)} images; OPTIMISTIC: these images chose the kept epoch — "
                   f"give Test_images for an honest figure)")


def _write_inputs(folder: pathlib.Path, items, probabilities: dict, classes: list) -> tuple[pathlib.Path, pathlib.Path]:
    """``labels.csv`` and ``predictions.csv`` for ``python -m helpers.qc classification``."""
    folder.mkdir(parents=True, exist_ok=True)
    labels_path = folder / "labels.csv"
    with labels_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        writer.writerows([item.key, item.label] for item in items)
    keys = [item.key for item in items]
    predictions_path = predict.write_predictions_csv(folder / "predictions.csv", keys,
                                                     np.stack([probabilities[key] for key in keys]), classes)
    return labels_path, predictions_path


def _mistakes(result: QualityResult) -> list[dict]:
    wrong = []
    for key, item in result.items.items():
        label, score = result.predicted(key)
        if label != item.label:
            wrong.append({"key": key, "path": item.path, "label": item.label, "predicted": label, "score": score})
    return sorted(wrong, key=lambda mistake: -mistake["score"])


def gradcam_keys(result: Any, chosen: Sequence[str]) -> list[str]:
    """The images to explain: those named, else the most confident mistakes then the most confident hits."""
    if chosen:
        unknown = [key for key in chosen if key not in result.items]
        if unknown:
            raise errors.DatasetError(f"Grad_CAM_images: {unknown[0]!r} is not a test image. Give file names as in "
                                      f"qc/labels.csv, separated by commas.")
        return list(chosen)
    mistakes = [mistake["key"] for mistake in result.mistakes[:GRADCAM_DEFAULT // 2]]
    hits = sorted((key for key in result.items if key not in {m["key"] for m in result.mistakes}),
                  key=lambda key: -result.predicted(key)[1])
    return mistakes + hits[:GRADCAM_DEFAULT - len(mistakes)]


def evaluate_run(run: runs.RunFolder, test_images: str = "", test_labels_csv: str = "",
                 gradcam_images: Sequence[str] = ()) -> QualityResult:
    """Predict the test (or validation) images, evaluate, draw and write the QC report.

    Args:
        run: a run folder with an exported classifier.
        test_images: held-out labelled images ("" = the validation split).
        test_labels_csv: their labels CSV ("" = one subfolder per class).
        gradcam_images: keys to explain with Grad-CAM (empty = chosen automatically).
    """
    from helpers.classification import reports

    config = config_module.load_config(ClassificationConfig, run.config_path)
    model, classes, image_size = predict.load_run_model(run)
    items, source = _test_items(run, config, test_images, test_labels_csv)
    probabilities, kept, _ = predict.predict_paths(model, [item.path for item in items], image_size)
    readable = set(kept)
    items = [item for item in items if item.path in readable]
    by_key = {item.key: scores for item, scores in zip(items, probabilities)}
    labels_path, predictions_path = _write_inputs(run.qc, items, by_key, classes)
    evaluation = classification_qc.evaluate_classification(
        classification_qc.read_label_csv(labels_path), classification_qc.read_label_csv(predictions_path),
        classification_qc.read_score_csv(predictions_path), str(labels_path), str(predictions_path))
    (run.qc / "metrics.json").write_text(json.dumps(evaluation.to_json_dict(), ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    result = QualityResult(run, config, source, evaluation, {item.key: item for item in items}, by_key, classes, model)
    result.plots = {"confusion_matrix": classification_qc.plot_confusion_matrix(evaluation, run.qc / "confusion_matrix.png"),
                    "roc_curves": classification_qc.plot_roc_curves(evaluation, run.qc / "roc_curves.png")}
    result.mistakes = _mistakes(result)
    result.plots["mistakes"] = plots.mistakes_gallery(result.mistakes[:MISTAKES_SHOWN], run.qc / "confident_mistakes.png")
    result.gradcam_figures = [
        gradcam.gradcam_figure(model, result.items[key].path, classes, run.qc / f"gradcam_{index:02d}.png",
                               true_label=result.items[key].label)
        for index, key in enumerate(gradcam_keys(result, gradcam_images))]
    result.report_path = reports.qc_report(result)
    return result
