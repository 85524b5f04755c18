"""The classification training and QC reports, written from the run's real state (never boilerplate).

The report sections that do not depend on the task (run summary, dataset problems, split, initial
weights, training curves, references) are public functions that ``helpers.grading.reports`` uses too.
"""

from __future__ import annotations

import math
import pathlib
import time
from typing import Any, Sequence

from helpers import errors, history, run_report, tables
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


def plot_training_curves(run: Any, panels=train.CURVE_PANELS, kept_epoch: int | None = None) -> pathlib.Path:
    """The ``panels`` (default: loss, accuracy and macro F1) from ``history.csv``, ``kept_epoch`` marked, into
    ``plots/training_curves.png``."""
    return history.plot_history(run.history_path, run.plots / "training_curves.png", panels, marked_epoch=kept_epoch)


def kept_epoch(rows: list[dict], monitor: str) -> int | None:
    """The epoch whose weights were exported: the best by ``monitor`` (higher is better), else the last; None without rows."""
    scored = [row for row in rows if not math.isnan(row.get(monitor, math.nan))]
    if scored:
        return max(scored, key=lambda row: row[monitor])["epoch"]
    return rows[-1]["epoch"] if rows else None


def time_and_hardware(session: Any, result: Any) -> str:
    """The sentence under a training answer: how long this session took and on what."""
    return (f"Training took {run_report.format_duration(time.time() - session.started_at)} in this session on "
            f"{run_report.accelerator_used(getattr(result, 'strategy', None))}; the curves below mark the kept epoch.")


def curves_caption(config: Any) -> str:
    """What the curves show and which loss was optimised (classification and grading)."""
    return ("Lines: training figures, running means over each epoch's augmented batches"
            + (", weighted like the loss by class, so training accuracy is a balanced accuracy"
               if config.class_balance == "class_weights" else "")
            + ". Points: validation figures, measured after each epoch on the unchanged validation images "
              "(validation loss without label smoothing). The loss drawn is the one that was optimised (one term). "
              "The dashed line is the epoch that was kept.")


def unseen_classes(run: Any, true_classes: Sequence[str]) -> list[str]:
    """Classes of the QC labels that are not among the model's classes (``label_map.json``), sorted."""
    try:
        trained = set(str(name) for name in run.read_label_map())
    except errors.HelpersError:
        return []
    return sorted(str(name) for name in set(true_classes) - trained)


def unseen_class_warnings(run: Any, true_classes: Sequence[str], what: str = "class") -> list[str]:
    """One warning per QC class the model was never trained on."""
    return [f"{what.capitalize()} {name} is in the test labels but not in training: the model cannot predict it; "
            f"every image of it counts as wrong." for name in unseen_classes(run, true_classes)]


def most_confused(classes: Sequence[Any], matrix: Sequence[Sequence[int]]) -> str:
    """"Most confused: A taken for B (5 times)." from a confusion matrix (rows true, columns predicted)."""
    pairs = [(matrix[row][column], row, column) for row in range(len(classes)) for column in range(len(classes))
             if row != column]
    count, row, column = max(pairs, default=(0, 0, 0))
    if count == 0:
        return "No image was given a wrong class."
    return f"Most confused: {classes[row]} taken for {classes[column]} ({count} time{'s' * (count != 1)})."


def qc_answer(result: Any) -> list[str]:
    """The QC report's first lines: images correct, balanced accuracy against chance, the most common confusion."""
    evaluation = result.evaluation
    matrix = evaluation.confusion_matrix
    correct = sum(matrix[index][index] for index in range(len(matrix)))
    images = evaluation.number_of_images
    chance = 1 / max(1, len(evaluation.classes))
    return [f"{correct} of {images} test images correct ({100 * correct / max(1, images):.0f} %); balanced accuracy "
            f"{tables.format_value(evaluation.balanced_accuracy)} (chance level {chance:.2f}).",
            most_confused(evaluation.classes, matrix) + f" Images: {result.source}."]


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
                              ("Epochs completed", len(rows)), ("Hardware used", run_report.accelerator_used(result.strategy)),
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
    """Write ``training_report.pdf`` into the run folder from the run's real state; returns its path.

    Order: the kept epoch and its figures in words, the curves (kept epoch marked), data, split,
    augmentation, network, methods, glossary, references, then the appendix (hardware, settings).
    """
    config, run, result = session.config, session.run, session.training
    rows = history.read_history(run.history_path)
    document = run_report.start_report(f"Training report: {run.root.name}", run, config, config.images_dir,
                                       answer=[training_outcome(session, rows), time_and_hardware(session, result)])
    run_summary(document, session, result, "image classification (Keras 3, keras.applications)", rows)
    document.heading("Training curves")
    document.figure(plot_training_curves(run, kept_epoch=kept_epoch(rows, train.MONITOR)), width_mm=170)
    document.paragraph(curves_caption(config))
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
    document.heading("Methods (ready to paste)")
    document.paragraph(methods_paragraph(session, rows))
    run_report.add_glossary(document, METRIC_MEANINGS[:3])
    add_references(document, REFERENCES)
    run_report.add_appendix(document, config, getattr(result, "strategy", None))
    return document.save(run.root / "training_report.pdf")


def qc_report(result: Any) -> pathlib.Path:
    """Write ``qc_report.pdf`` (the answer, metrics, per-class table, plots, Grad-CAM, glossary, appendix)."""
    run, config, evaluation = result.run, result.config, result.evaluation
    first = next(iter(result.items.values()))
    warnings = [run_report.sample_size_warning(evaluation.number_of_images)]
    warnings += unseen_class_warnings(run, [name for name, values in evaluation.per_class.items() if values["support"]])
    document = run_report.start_report(f"Quality control report: {run.root.name}", run, config, first.path.parent,
                                       answer=qc_answer(result), warnings=warnings)
    document.heading("What was measured")
    document.paragraph(f"The exported model classified {evaluation.number_of_images} images: {result.source}. "
                       f"The predicted class is the one with the highest score; figures come from scikit-learn [6]. "
                       f"The glossary at the end says what each figure means.")
    document.key_value_table([("Accuracy", tables.format_value(evaluation.accuracy)),
                              ("Balanced accuracy", tables.format_value(evaluation.balanced_accuracy)),
                              ("Macro F1", tables.format_value(evaluation.macro_f1)), ("Weighted F1", tables.format_value(evaluation.weighted_f1)),
                              ("Macro precision / recall", f"{tables.format_value(evaluation.macro_precision)} / "
                                                           f"{tables.format_value(evaluation.macro_recall)}"),
                              ("ROC AUC (one-vs-rest, macro)", tables.format_value(evaluation.roc_auc_ovr))])
    document.heading("Per class")
    document.table(["class", "precision", "recall", "F1", "support", "ROC AUC"],
                   [[name, tables.format_value(values["precision"]), tables.format_value(values["recall"]), tables.format_value(values["f1"]),
                     str(values["support"]), tables.format_value(values["roc_auc"])] for name, values in evaluation.per_class.items()])
    for name in ("confusion_matrix", "roc_curves", "mistakes"):
        document.figure(result.plots[name], width_mm=160)
    document.heading("Grad-CAM: where the model looked")
    document.paragraph("Red areas raised the score of the class named above the right-hand image most (Grad-CAM [7], "
                       "computed on the last feature map, so the map is coarse).")
    for path in result.gradcam_figures:
        document.figure(path, width_mm=120)
    run_report.add_glossary(document, METRIC_MEANINGS + (("support", "number of test images of the class"),))
    add_references(document, REFERENCES)
    run_report.add_appendix(document, config)
    return document.save(run.root / "qc_report.pdf")
