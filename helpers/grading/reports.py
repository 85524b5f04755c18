"""The grading training and QC reports, written from the run's real state (never boilerplate).

Shared pieces come from ``helpers.run_report`` (header, hardware and versions, config verbatim) and
the classification engine (augmentation sentence, backbone registry, plots).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from helpers import history, run_report, tables
from helpers.classification import augmentation, backbones
from helpers.classification import reports as classification_reports
from helpers.grading import dataset as dataset_module
from helpers.grading import train as grading_train

REFERENCES = (
    "Tan M., Le Q. V. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019.",
    "Howard A. et al. Searching for MobileNetV3. ICCV 2019.",
    "Cao W., Mirjalili V., Raschka S. Rank consistent ordinal regression for neural networks with application to "
    "age estimation (CORAL). Pattern Recognition Letters 140, 325–331 (2020).",
    "Graham B. Kaggle Diabetic Retinopathy Detection competition report (local colour normalisation), 2015.",
    "Cohen J. Weighted kappa. Psychological Bulletin 70, 213–220 (1968).",
    "Wilkinson C. P. et al. Proposed international clinical diabetic retinopathy and diabetic macular edema disease "
    "severity scales (ICDR). Ophthalmology 110, 1677–1682 (2003).",
    "Chollet F. et al. Keras 3 and keras.applications. https://keras.io",
    "Pedregosa F. et al. Scikit-learn: Machine Learning in Python. JMLR 12, 2825–2830 (2011).",
    "von Chamier L. et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
    "Nat. Commun. 12, 2276 (2021).",
    "Selvaraju R. R. et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization. ICCV 2017.",
)
METRIC_MEANINGS = (
    ("quadratic weighted kappa", "agreement between true and predicted grades beyond chance, where a disagreement "
                                 "costs the square of its distance in grades: 1 = perfect, 0 = chance level"),
    ("accuracy", "share of images given exactly their true grade"),
    ("mean absolute error", "average distance in grades between the true and the predicted grade"),
    ("balanced accuracy", "mean over grades of the share of that grade found; chance level is 1 / number of grades"),
    ("referable sensitivity / specificity", "share of referable eyes (grade >= threshold) predicted referable / "
                                            "share of the other eyes predicted not referable"),
    ("referable ROC AUC", "probability that a referable eye scores higher for referable disease than a "
                          "non-referable one; 0.5 is chance"),
)
HEAD_SENTENCES = {
    "regression": "a regression head (one output, trained with the squared error to the grade); the decision "
                  "thresholds between grades were then chosen on the validation images to maximise quadratic kappa "
                  "(coordinate search)",
    "cumulative": "a cumulative-logit head in the style of CORAL [3] (K−1 sigmoid outputs P(grade > k) sharing one "
                  "weight vector, binary cross-entropy on each; the grade is the number of outputs above 0.5)",
    "softmax": "a softmax head (one probability per grade, categorical cross-entropy), i.e. plain classification "
               "that ignores the order of the grades",
}


def _value(number: Any) -> str:
    return tables.format_value(number)


def preprocessing_sentence(config: Any) -> str:
    """One sentence naming the fundus preprocessing actually applied."""
    parts = []
    if config.crop_to_disc:
        parts.append("cropped to the bright retina disc (black border removed by a brightness threshold) and padded "
                     "to a square")
    parts.append(f"resized to {config.image_size}×{config.image_size} pixels")
    if config.colour_normalisation:
        parts.append("locally colour-normalised as 4·image − 4·Gaussian blur + 128 [4]")
    return "Images were " + ", ".join(parts) + "."


def sampling_sentence(config: Any) -> str:
    """One sentence on how the grade imbalance was handled."""
    if config.class_balance == "balanced_sampling":
        return (f"Training batches were drawn with a balanced sampler: grade k with probability proportional to "
                f"{', '.join(f'{value:g}' for value in config.multipliers)} (grades 0..{config.num_grades - 1}).")
    if config.class_balance == "class_weights":
        return "The loss was weighted by inverse grade frequency."
    return "The grades were sampled in their natural proportions, without weighting."


def training_outcome(rows: list[dict], training: Any) -> str:
    """Which epoch was kept and its validation figures (and the regression thresholds)."""
    scored = [row for row in rows if not math.isnan(row.get(grading_train.MONITOR, math.nan))]
    if not scored:
        return "No validation images were held out, so the last epoch was kept."
    best = max(scored, key=lambda row: row[grading_train.MONITOR])
    text = (f"The epoch with the highest validation quadratic weighted kappa (epoch {best['epoch']}) was kept: "
            f"kappa {best['validation_kappa']:.3f}, accuracy {best['validation_accuracy']:.3f}, mean absolute error "
            f"{best['validation_mean_absolute_error']:.3f} grades.")
    if training is not None and training.thresholds is not None:
        text += " Decision thresholds: " + ", ".join(f"{value:.2f}" for value in training.thresholds) + "."
    return text


def methods_paragraph(session: Any, rows: list[dict]) -> str:
    """A methods paragraph a user can paste into a paper, written from the actual settings."""
    config, dataset, split = session.config, session.dataset, session.split
    spec = backbones.get_backbone(config.backbone)
    counts = ", ".join(f"grade {grade}: {count}" for grade, count in dataset.class_counts().items())
    start = ("initialised with ImageNet weights from keras.applications" if session.pretrained is not None
             else f"continued from an earlier grader, {config.continue_from}" if config.continue_from
             else "trained from scratch")
    # A continued model is trained in one fine-tuning phase (helpers.classification.train.phases).
    rate = config.fine_tune_learning_rate if config.continue_from else config.learning_rate
    grouped = f", keeping all images of one {split.grouped_by} in the same set" if split.grouped_by else ""
    return (f"Images were graded on a {config.num_grades}-level ordinal scale with a {spec.constructor} network "
            f"[1, 2] ({start}) and {HEAD_SENTENCES[config.head]}, implemented in Keras 3 [7] through the DL4Cells "
            f"notebooks. {len(dataset.items)} graded images ({counts}) were split at random (seed {split.seed}, "
            f"stratified by grade{grouped}) into {len(split.train)} training and {len(split.validation)} validation "
            f"images. {preprocessing_sentence(config)} {augmentation.describe(config)} {sampling_sentence(config)} "
            f"The {config.optimizer} optimiser was used with batch size {config.batch_size} and learning rate "
            f"{rate:g}; {len(rows)} epochs were run. {training_outcome(rows, session.training)} "
            f"Quadratic weighted kappa [5] and the other figures were computed with scikit-learn [8].")


def _dataset_section(document: Any, session: Any) -> None:
    dataset, config = session.dataset, session.config
    classification_reports.dataset_section(
        document, session, [("Images folder", config.images_dir), ("Grades CSV", config.labels_csv),
                            ("Columns", f"file {config.filename_column}, grade {config.grade_column}, group "
                                        f"{config.group_column or '(none)'}"),
                            ("Usable images", len(dataset.items))]
        + [(f"Images of grade {grade}", count) for grade, count in dataset.class_counts().items()],
        dataset_module.PROBLEM_KINDS)


def training_report(session: Any) -> pathlib.Path:
    """Write ``training_report.pdf`` into the run folder from the run's real state; returns its path.

    Order: the kept epoch and its figures in words, the curves (kept epoch marked), data, split,
    preprocessing, model, methods, glossary, references, then the appendix (hardware, settings).
    """
    config, run, training = session.config, session.run, session.training
    rows = history.read_history(run.history_path)
    document = run_report.start_report(
        f"Training report: {run.root.name}", run, config, config.images_dir,
        answer=[training_outcome(rows, training), classification_reports.time_and_hardware(session, training.result)])
    classification_reports.run_summary(document, session, training.result,
                                       f"ordinal grading, {config.num_grades} grades (Keras 3, keras.applications)", rows)
    document.heading("Training curves")
    document.figure(classification_reports.plot_training_curves(
        run, grading_train.CURVE_PANELS, classification_reports.kept_epoch(rows, grading_train.MONITOR)), width_mm=170)
    document.paragraph(classification_reports.curves_caption(config))
    _dataset_section(document, session)
    classification_reports.split_section(document, session)
    document.heading("Preprocessing and augmentation")
    document.paragraph(preprocessing_sentence(config) + " " + augmentation.describe(config))
    for name in ("preprocessing_preview.png", "augmentation_preview.png"):
        if (run.plots / name).is_file():
            document.figure(run.plots / name, width_mm=140)
    document.heading("Model")
    spec = backbones.get_backbone(config.backbone)
    document.key_value_table([("Backbone", f"{spec.constructor}: {spec.description}"),
                              ("Initial weights", classification_reports.initial_weights(session)),
                              ("Ordinal head", HEAD_SENTENCES[config.head]),
                              ("Grade imbalance", sampling_sentence(config))])
    document.heading("Methods (ready to paste)")
    document.paragraph(methods_paragraph(session, rows))
    run_report.add_glossary(document, METRIC_MEANINGS[:4])
    classification_reports.add_references(document, REFERENCES)
    run_report.add_appendix(document, config, getattr(training.result, "strategy", None))
    return document.save(run.root / "training_report.pdf")


def within_one_grade(matrix: Any) -> float:
    """Share of images whose predicted grade is at most one grade from the true one (0..1; NaN without images)."""
    total = sum(sum(row) for row in matrix)
    near = sum(count for true, row in enumerate(matrix) for predicted, count in enumerate(row) if abs(true - predicted) <= 1)
    return near / total if total else math.nan


def qc_answer(result: Any) -> list[str]:
    """The QC report's first lines: kappa in words, exact and within-one-grade agreement, referable disease."""
    evaluation = result.evaluation
    referable = evaluation.referable
    return [f"Quadratic weighted kappa {_value(evaluation.quadratic_kappa)} (1 = perfect agreement, 0 = chance); "
            f"{100 * within_one_grade(evaluation.confusion_matrix):.0f} % of the {evaluation.number_of_images} images "
            f"within one grade, {100 * evaluation.accuracy:.0f} % exactly right.",
            f"Referable disease (grade ≥ {referable['threshold']}): sensitivity {_value(referable['sensitivity'])}, "
            f"specificity {_value(referable['specificity'])}. "
            + classification_reports.most_confused([f"grade {grade}" for grade in range(evaluation.num_grades)],
                                                   evaluation.confusion_matrix)
            + f" Images: {result.source}."]


def qc_report(result: Any) -> pathlib.Path:
    """Write ``qc_report.pdf`` (the answer, kappa, referable and per-grade tables, plots, glossary, appendix)."""
    run, config, evaluation = result.run, result.config, result.evaluation
    referable = evaluation.referable
    first = next(iter(result.items.values()))
    document = run_report.start_report(f"Quality control report: {run.root.name}", run, config, first.path.parent,
                                       answer=qc_answer(result),
                                       warnings=[run_report.sample_size_warning(evaluation.number_of_images)])
    document.heading("What was measured")
    document.paragraph(f"The exported model graded {evaluation.number_of_images} images: {result.source}. Figures "
                       f"come from scikit-learn [8] through helpers.qc.grading (the same as python -m helpers.qc "
                       f"grading on qc/labels.csv and qc/predictions.csv). The glossary at the end says what each "
                       f"figure means.")
    document.key_value_table([("Quadratic weighted kappa", _value(evaluation.quadratic_kappa)),
                              ("Linear weighted kappa", _value(evaluation.linear_kappa)),
                              ("Accuracy", _value(evaluation.accuracy)),
                              ("Within one grade", _value(within_one_grade(evaluation.confusion_matrix))),
                              ("Mean absolute error (grades)", _value(evaluation.mean_absolute_error))])
    document.heading(f"Referable disease (grade >= {referable['threshold']})")
    document.table(["referable threshold", "referable eyes", "other eyes", "sensitivity", "specificity", "ROC AUC"],
                   [[f"grade >= {referable['threshold']}", str(referable["positives"]), str(referable["negatives"]),
                     _value(referable["sensitivity"]), _value(referable["specificity"]),
                     _value(referable["roc_auc"])]])
    document.figure(result.plots["referable_roc"], width_mm=110)
    document.heading("Per grade")
    document.table(["grade", "sensitivity", "specificity", "images"],
                   [[str(grade), _value(values["sensitivity"]), _value(values["specificity"]), str(values["support"])]
                    for grade, values in evaluation.per_grade.items()])
    document.figure(result.plots["confusion_matrix"], width_mm=160)
    document.heading("Largest errors")
    document.paragraph("The images whose predicted grade is furthest from the true one (true → predicted, score of "
                       "the predicted grade); worth checking for grading or image-quality problems.")
    document.figure(result.plots["largest_errors"], width_mm=150)
    if result.gradcam_figures:
        document.heading("Grad-CAM: where the model looked")
        document.paragraph("Red areas raised the expected grade most (Grad-CAM [10] of sum over grades of grade × "
                           "its probability; for the regression head the output itself), computed on the last "
                           "feature map, so the map is coarse; an image with nothing that raises the grade has an "
                           "empty map.")
        for path in result.gradcam_figures:
            document.figure(path, width_mm=120)
    run_report.add_glossary(document, METRIC_MEANINGS + (("within one grade", "share of images whose predicted grade "
                                                                              "is at most one grade from the true one"),))
    classification_reports.add_references(document, REFERENCES)
    run_report.add_appendix(document, config)
    return document.save(run.root / "qc_report.pdf")
