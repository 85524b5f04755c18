"""The classification training and QC reports, written from the run's real state (never boilerplate).

The report sections that do not depend on the task (run summary, dataset problems, split, initial
weights, training curves, references) are public functions that ``helpers.grading.reports`` uses too.
"""

from __future__ import annotations

import math
import pathlib
import time
from typing import Any, Sequence

from helpers import history, qc, run_report
from helpers.classification import augmentation, backbones, train

REFERENCES = (
    "Tan M., Le Q. V. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019.",
    "Tan M., Le Q. V. EfficientNetV2: Smaller Models and Faster Training. ICML 2021.",
    "Howard A. et al. Searching for MobileNetV3. ICCV 2019.",
    "He K., Zhang X., Ren S., Sun J. Deep Residual Learning for Image Recognition. CVPR 2016.",
    "Chollet F. et al. Keras 3 and keras.applications. https://keras.io",
    "Pedregosa F. et al. Scikit-learn: Machine Learning in Python. JMLR 12, 2825–2830 (2011).",
    "Selvaraju R. R. et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization. ICCV 2017.",
    "von Chamier L. et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. Nat. Commun. 12, 2276 (2021).",
)
METRIC_MEANINGS = (
    ("accuracy", "share of images whose predicted class is the true one; dominated by frequent classes"),
    ("balanced accuracy", "mean over classes of the share of that class found (recall); a rare class counts as "
                          "much as a frequent one; chance level is 1 / number of classes"),
    ("macro F1", "mean over classes of F1, the harmonic mean of precision (how many predicted X are X) and recall"),
    ("ROC AUC (one-vs-rest)", "probability that an image of a class scores higher for it than an image of another "
                              "class; 0.5 is chance, 1 is perfect ranking"),
)


def plot_training_curves(run: Any, panels=train.CURVE_PANELS) -> pathlib.Path:
    """The ``panels`` (default: loss, accuracy and macro F1) from ``history.csv`` into ``plots/training_curves.png``."""
    return history.plot_history(run.history_path, run.plots / "training_curves.png", panels)


def initial_weights(session: Any) -> str:
    """Where the run's initial weights came from (earlier model, ImageNet URL and checksum, or none)."""
    config = session.config
    if config.continue_from:
        return f"continued from the model in {config.continue_from}"
    if session.pretrained is None:
        return "trained from scratch (random initial weights; no pretrained download)"
    download = session.pretrained
    return f"ImageNet weights {download.url} (sha256 {download.sha256})"


def _phase_sentence(config: Any) -> str:
    if config.trains_from_scratch:
        return (f"All layers were trained from random weights for up to {config.epochs} epochs (batch-normalisation "
                f"momentum {train.FROM_SCRATCH_BATCH_NORM_MOMENTUM}, so that its running averages follow the "
                f"quickly changing weights).")
    head = (f"First only the new classification head was trained for {config.head_epochs} epochs with the backbone "
            f"frozen (learning rate {config.learning_rate:g}); then " if config.head_epochs and not config.continue_from
            else "")
    return (f"{head}the top {config.fine_tune_layers} backbone layers were fine-tuned with batch-normalisation "
            f"layers kept frozen (learning rate {config.fine_tune_learning_rate:g}), {config.epochs} epochs in total.")


def methods_paragraph(session: Any, rows: list[dict]) -> str:
    """A methods paragraph a user can paste into a paper, written from the actual settings."""
    config, dataset, split = session.config, session.dataset, session.split
    spec = backbones.get_backbone(config.backbone)
    counts = ", ".join(f"{name} {count}" for name, count in dataset.class_counts().items())
    start = ("initialised with ImageNet weights from keras.applications" if session.pretrained is not None
             else "continued from an earlier model" if config.continue_from else "trained from scratch")
    balance = {"class_weights": "The loss was weighted by inverse class frequency. ",
               "balanced_sampling": "Every class was sampled equally often. ", "none": ""}[config.class_balance]
    best = training_outcome(session, rows)
    grouped = f", keeping each {split.grouped_by} in one set" if split.grouped_by else ""
    return (f"Images were classified with a {spec.constructor} network [1–4] ({start}) with a global-average-pooling "
            f"and softmax head (dropout {config.dropout:g}), implemented in Keras 3 [5] through the DL4Cells notebooks. "
            f"{len(dataset.items)} labelled images ({counts}) were split at random (seed {split.seed}, stratified by "
            f"class{grouped}) into {len(split.train)} training and {len(split.validation)} validation images. Images "
            f"were resized to {config.image_size}×{config.image_size} pixels. {augmentation.describe(config)} "
            f"{_phase_sentence(config)} The {config.optimizer} optimiser was used with batch size {config.batch_size} "
            f"and categorical cross-entropy with label smoothing {config.label_smoothing:g}. {balance}The learning rate "
            f"was divided by {1 / train.PLATEAU_FACTOR:g} after {config.reduce_lr_patience} epochs without improvement "
            f"of the validation balanced accuracy" + (f", and a phase stopped after {config.early_stopping_patience} "
                                                      f"such epochs" if config.early_stopping_patience else "")
            + f". {len(rows)} epochs were run. {best} Metrics were computed with scikit-learn [6].")


def training_outcome(session: Any, rows: list[dict]) -> str:
    """One sentence: which epoch was kept and its validation figures."""
    scored = [row for row in rows if not math.isnan(row.get(train.MONITOR, math.nan))]
    if not scored:
        return "No validation images were held out, so the last epoch was kept."
    best = max(scored, key=lambda row: row[train.MONITOR])
    return (f"The epoch with the highest validation balanced accuracy (epoch {best['epoch']}) was kept: validation "
            f"accuracy {best['validation_accuracy']:.3f}, balanced accuracy {best['validation_balanced_accuracy']:.3f}, "
            f"macro F1 {best['validation_macro_f1']:.3f}.")


def _dataset_section(document: Any, session: Any) -> None:
    from helpers.classification import dataset as dataset_module

    dataset, config = session.dataset, session.config
    dataset_section(document, session, [("Images folder", config.images_dir),
                                         ("Labels", config.labels_csv or "one subfolder per class"),
                                         ("Usable images", len(dataset.items))]
                    + [(f"Images of {name}", count) for name, count in dataset.class_counts().items()],
                    dataset_module.PROBLEM_KINDS)


def dataset_section(document: Any, session: Any, facts: list[tuple[str, Any]], problem_kinds: dict[str, str]) -> None:
    """The "Dataset" section: ``facts`` (label, value) rows, the doctor's problem counts, the dataset plots.

    Args:
        problem_kinds: what happened to the images of each problem kind (``dataset.PROBLEM_KINDS``).
    """
    document.heading("Dataset")
    document.key_value_table(facts)
    counts = session.dataset.problem_counts()
    if counts:
        document.paragraph("Problems found by the data check (what happened to each is listed; the full list is "
                           "dataset_problems.json in the run folder):")
        document.table(["problem", "what happened", "count"],
                       [[kind, problem_kinds[kind], str(count)] for kind, count in counts.items()])
    else:
        document.paragraph("The data check found no problems.")
    for name in ("class_counts.png", "class_examples.png"):
        if (session.run.plots / name).is_file():
            document.figure(session.run.plots / name, width_mm=150)


def run_summary(document: Any, session: Any, result: Any, task: str, rows: list[dict]) -> None:
    """The report's first table: task, training time, epochs, hardware, precision and step time of ``result``."""
    document.key_value_table([("Task", task),
                              ("Training time (this session)",
                               run_report.format_duration(time.time() - session.started_at)),
                              ("Epochs completed", len(rows)), ("Hardware used", result.strategy),
                              ("Numeric precision", result.precision),
                              ("Seconds per training step (median, this session)",
                               "not measured (nothing left to train)" if math.isnan(result.seconds_per_step)
                               else f"{result.seconds_per_step:.3f}")])


def split_section(document: Any, session: Any) -> None:
    """The "Split" section: seed, stratification, groups and set sizes of ``session.split``."""
    split, run = session.split, session.run
    document.heading("Split")
    document.key_value_table([("Seed", split.seed), ("Stratified by", split.stratified_by),
                              ("Grouped by", split.grouped_by or "no groups"), ("Training images", len(split.train)),
                              ("Validation images", len(split.validation)), ("Recorded in", run.split_path)])


def add_references(document: Any, references: Sequence[str]) -> None:
    """The numbered "References" list that the report's [n] marks point to."""
    document.heading("References")
    document.bullet_list([f"[{index}] {text}" for index, text in enumerate(references, start=1)])


def training_report(session: Any) -> pathlib.Path:
    """Write ``training_report.pdf`` into the run folder from the run's real state; returns its path."""
    config, run, result = session.config, session.run, session.training
    rows = history.read_history(run.history_path)
    document = run_report.start_report(f"Training report: {run.root.name}", run, config, config.images_dir)
    run_summary(document, session, result, "image classification (Keras 3, keras.applications)", rows)
    run_report.add_environment(document)
    run_report.add_config(document, config)
    _dataset_section(document, session)
    split_section(document, session)
    document.heading("Augmentation")
    document.paragraph(augmentation.describe(config))
    if (run.plots / "augmentation_preview.png").is_file():
        document.figure(run.plots / "augmentation_preview.png", width_mm=150)
    document.heading("Backbone and initial weights")
    spec = backbones.get_backbone(config.backbone)
    document.key_value_table([("Backbone", f"{spec.constructor}: {spec.description}"),
                              ("Initial weights", initial_weights(session)),
                              ("Phases", _phase_sentence(config))])
    document.heading("Training curves")
    document.figure(plot_training_curves(run), width_mm=170)
    document.paragraph("Training figures are running means over each epoch's augmented batches"
                       + (", weighted like the loss by class, so training accuracy is a balanced accuracy"
                          if config.class_balance == "class_weights" else "")
                       + "; validation figures are measured after each epoch on the unchanged validation images "
                         "(validation loss without label smoothing).")
    document.heading("Validation metrics of the kept model")
    document.paragraph(training_outcome(session, rows))
    document.table(["metric", "what it means"], [list(pair) for pair in METRIC_MEANINGS[:3]])
    document.heading("Methods (ready to paste)")
    document.paragraph(methods_paragraph(session, rows))
    add_references(document, REFERENCES)
    return document.save(run.root / "training_report.pdf")


def qc_report(result: Any) -> pathlib.Path:
    """Write ``qc_report.pdf`` (metrics with their meaning, per-class table, plots, Grad-CAM) into the run folder."""
    run, config, evaluation = result.run, result.config, result.evaluation
    first = next(iter(result.items.values()))
    document = run_report.start_report(f"Quality control report: {run.root.name}", run, config, first.path.parent)
    document.heading("What was measured")
    document.paragraph(f"The exported model classified {evaluation.number_of_images} images: {result.source}. "
                       f"The predicted class is the one with the highest score; figures come from scikit-learn [6].")
    document.key_value_table([("Accuracy", qc.format_value(evaluation.accuracy)),
                              ("Balanced accuracy", qc.format_value(evaluation.balanced_accuracy)),
                              ("Macro F1", qc.format_value(evaluation.macro_f1)), ("Weighted F1", qc.format_value(evaluation.weighted_f1)),
                              ("Macro precision / recall", f"{qc.format_value(evaluation.macro_precision)} / "
                                                           f"{qc.format_value(evaluation.macro_recall)}"),
                              ("ROC AUC (one-vs-rest, macro)", qc.format_value(evaluation.roc_auc_ovr))])
    document.table(["metric", "what it means"], [list(pair) for pair in METRIC_MEANINGS])
    document.heading("Per class")
    document.table(["class", "precision", "recall", "F1", "support", "ROC AUC"],
                   [[name, qc.format_value(values["precision"]), qc.format_value(values["recall"]), qc.format_value(values["f1"]),
                     str(values["support"]), qc.format_value(values["roc_auc"])] for name, values in evaluation.per_class.items()])
    for name in ("confusion_matrix", "roc_curves", "mistakes"):
        document.figure(result.plots[name], width_mm=160)
    document.heading("Grad-CAM: where the model looked")
    document.paragraph("Red areas raised the score of the class named above the right-hand image most (Grad-CAM [7], "
                       "computed on the last feature map, so the map is coarse).")
    for path in result.gradcam_figures:
        document.figure(path, width_mm=120)
    run_report.add_config(document, config)
    add_references(document, REFERENCES)
    return document.save(run.root / "qc_report.pdf")
