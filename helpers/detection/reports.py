"""The detection training and QC reports, written from the run's real state (never boilerplate)."""

from __future__ import annotations

import math
import pathlib
import time
from typing import Any

from helpers import errors, history, run_report, tables
from helpers.detection import augmentation, backbones, model

VALIDATION_PANEL = ("Validation mAP (COCO)", (("validation_map50", "mAP50, validation", 1.0),
                                                ("validation_map50_95", "mAP50-95, validation", 1.0)),
                    "mean average precision")
TRAINING_GLOSSARY = (
    ("mAP50", "mean over classes of the average precision at IoU ≥ 0.5: 1 = every object found, with no false "
              "detection scored above any true one; 0 = none found"),
    ("mAP50-95", "the same averaged over IoU thresholds 0.50, 0.55, …, 0.95: also rewards boxes that fit tightly"),
    ("IoU", "intersection over union of a predicted and an annotated box (0 = apart, 1 = identical)"),
    ("focal loss", "the classification loss of RetinaNet: cross-entropy that down-weights easy background anchors "
                   "(α balances classes, γ sets how strongly easy examples are down-weighted)"),
    ("box loss", "Huber loss between predicted and annotated box offsets, over anchors that overlap an object"),
    ("epoch", "one pass over the training images (and their augmented copies)"),
)

REFERENCES = (
    "Lin T.-Y., Goyal P., Girshick R., He K., Dollár P. Focal Loss for Dense Object Detection. ICCV 2017.",
    "TensorFlow Model Garden, official/vision RetinaNet. https://github.com/tensorflow/models",
    "Lin T.-Y. et al. Microsoft COCO: Common Objects in Context. ECCV 2014 (evaluation protocol, pycocotools).",
    "von Chamier L. et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
    "Nat. Commun. 12, 2276 (2021).",
)


def loss_panel(config: Any) -> tuple:
    """The loss panel: the total and each term times the weight it had in the loss that was optimised."""
    return ("Loss that was optimised",
            (("train_total_loss", "total, training (with weight decay)", 1.0),
             ("train_class_loss", f"classification (focal) × {config.classification_loss_weight:g}",
              config.classification_loss_weight),
             ("train_box_loss", f"box (Huber) × {config.box_loss_weight:g}", config.box_loss_weight),
             ("validation_loss", "total, validation", 1.0)), "loss")


def plot_training_curves(run: Any, config: Any, kept_epoch: int | None = None) -> pathlib.Path:
    """Weighted loss terms and validation mAP from ``history.csv``, kept epoch marked, into ``plots/training_curves.png``."""
    return history.plot_history(run.history_path, run.plots / "training_curves.png",
                                (loss_panel(config), VALIDATION_PANEL), marked_epoch=kept_epoch)


def best_epoch_row(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The history row with the highest validation mAP50-95 (the checkpoint kept), or None."""
    scored = [row for row in rows if not math.isnan(row.get("validation_map50_95", math.nan))]
    return max(scored, key=lambda row: row["validation_map50_95"]) if scored else None


def kept_row(session: Any, rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The history row of the checkpoint that was exported: training's best epoch, else the best by mAP, else the last."""
    best_epoch = getattr(getattr(session, "training", None), "best_epoch", None)
    by_epoch = {row["epoch"]: row for row in rows}
    if best_epoch in by_epoch:
        return by_epoch[best_epoch]
    return best_epoch_row(rows) or (rows[-1] if rows else None)


def training_answer(session: Any, rows: list[dict[str, float]]) -> list[str]:
    """The training report's first lines: which epoch was kept, its validation figures, the time and hardware."""
    row = kept_row(session, rows)
    if row is None:
        return ["No epoch was completed, so there is no model yet."]
    validation = len(session.split.validation)
    if math.isnan(row.get("validation_map50_95", math.nan)):
        headline = (f"Kept epoch {row['epoch']} of {len(rows)} (no validation images, so the epoch with the lowest "
                    f"training loss): there are no validation figures; section 5 (quality control) measures the model "
                    f"on annotated test images.")
    else:
        headline = (f"Kept epoch {row['epoch']} of {len(rows)} (highest validation mAP50-95): on the {validation} "
                    f"validation images mAP50 = {row['validation_map50']:.3f} and mAP50-95 = "
                    f"{row['validation_map50_95']:.3f} (1 = every object found, 0 = none).")
    hardware = getattr(getattr(session, "training", None), "strategy", None)
    return [headline, f"Training took {run_report.format_duration(time.time() - session.started_at)} in this session "
                      f"on {run_report.accelerator_used(hardware)}; the curves below mark the kept epoch."]


def methods_paragraph(session: Any, rows: list[dict[str, float]]) -> str:
    """A methods paragraph a user can paste into a paper, written from the actual settings."""
    config, dataset, split = session.config, session.dataset, session.split
    spec = backbones.get_backbone(config.backbone)
    statistics = dataset.statistics()
    per_class = ", ".join(f"{name} {count}" for name, count in statistics["objects_per_class"].items())
    if config.continue_from:
        start = f"The network was initialised from an earlier model trained with the same notebook ({config.continue_from})."
    elif session.pretrained is not None:
        start = (f"The backbone and feature pyramid were initialised from COCO-trained RetinaNet weights published by the "
                 f"Model Garden (COCO box AP {spec.coco_box_ap}; {session.pretrained.url}, sha256 {session.pretrained.sha256}).")
    else:
        start = "The network was trained from scratch (no pretrained weights)."
    augmentation = augmentation_sentence(session)
    best = best_epoch_row(rows)
    outcome = (f"The checkpoint with the highest validation COCO mAP50-95 (epoch {best['epoch']}) was kept: validation "
               f"mAP50 = {best['validation_map50']:.3f}, mAP50-95 = {best['validation_map50_95']:.3f}."
               if best else "No validation images were held out, so no checkpoint was selected by validation mAP.")
    iou_term = (f"A generalised-IoU loss on the decoded boxes of positive anchors was added with weight "
                f"{config.box_iou_loss_weight}. " if config.box_iou_loss_weight else "")
    return (f"Objects were detected with RetinaNet [1] with a {spec.name} backbone, as implemented in the TensorFlow "
            f"Model Garden [2], through the DL4Cells notebooks. {start} {statistics['images']} annotated images "
            f"({per_class} boxes) were split at random (seed {split.seed}, stratified by the classes present) into "
            f"{len(split.train)} training and {len(split.validation)} validation images. {augmentation}"
            f"{_scale_methods(session)} The model was trained for "
            f"{len(rows)} epochs with batch size {config.batch_size}, the {config.optimizer} optimiser and a peak "
            f"learning rate of {config.learning_rate:g} ({config.learning_rate_schedule} schedule), with the focal "
            f"loss (α = {config.focal_alpha}, γ = {config.focal_gamma}) and classification and box loss weights of "
            f"{config.classification_loss_weight} and {config.box_loss_weight}. {iou_term}{outcome} Detection quality was "
            f"measured with the COCO protocol (pycocotools) [3].")


def augmentation_sentence(session: Any) -> str:
    """The methods sentence naming every augmentation that was applied, with its ranges ("" when none was).

    Written from ``helpers.detection.augmentation``'s constants (the copies made before training)
    and ``model.SCALE_JITTER`` (on the fly with ``random_flip``), so it cannot drift from the code.
    """
    config = session.config
    sentences = []
    if config.augmentation_factor > 1:
        sentences.append(
            f"Each training image was complemented by {config.augmentation_factor - 1} augmented copies made before "
            f"training" + (f" (more for images with a rare class, boost {config.rare_class_boost:g})"
                           if config.rare_class_boost else "")
            + f", each with its own random transform: horizontal and vertical flips (p 0.5 each), a multiple of 90°, "
            f"a small rotation (±{augmentation.SMALL_ANGLE_DEGREES:g}°, p 0.5), scaling "
            f"({augmentation.SCALE_RANGE[0]:g}–{augmentation.SCALE_RANGE[1]:g}, p 0.5), contrast "
            f"({augmentation.CONTRAST_RANGE[0]:g}–{augmentation.CONTRAST_RANGE[1]:g}, p 0.5), brightness "
            f"(±{augmentation.BRIGHTNESS_GREY_LEVELS:g} grey levels, p 0.5), gamma "
            f"({augmentation.GAMMA_RANGE[0]:g}–{augmentation.GAMMA_RANGE[1]:g}, p 0.5), Gaussian blur (σ "
            f"{augmentation.BLUR_SIGMA_RANGE[0]:g}–{augmentation.BLUR_SIGMA_RANGE[1]:g} px, p 0.25) and Gaussian "
            f"noise (σ {augmentation.NOISE_SIGMA_RANGE[0]:g}–{augmentation.NOISE_SIGMA_RANGE[1]:g} grey levels, "
            f"p 0.25), boxes transformed with the image.")
    if config.random_flip:
        sentences.append(f"While training, images were also flipped horizontally at random and rescaled by a random "
                         f"factor of {model.SCALE_JITTER[0]:g}–{model.SCALE_JITTER[1]:g} (scale jitter), with their "
                         f"boxes.")
    if not sentences:
        return "No augmentation was applied. "
    return " ".join(sentences) + " "


def _scale_methods(session: Any) -> str:
    """The methods sentence on how images were presented to the network."""
    scale = getattr(session, "pixel_scale", None)
    size = session.config.image_size
    if scale is None:
        return f"Images were resized to {size}×{size} pixels."
    return (f"Images were resized by a factor of {scale.scale:g} ({'chosen from the annotated box sizes' if scale.chosen_by == 'auto' else 'set by the user'}) "
            f"and cut into overlapping {size}×{size}-pixel windows (overlap {scale.training_overlap} pixels in training, "
            f"{scale.overlap} at prediction, where detections were merged across window seams).")


def scale_rows(pixel_scale: Any, image_sizes: Any = None) -> list[tuple[str, Any]]:
    """Key-value rows saying at which pixel scale the model sees images, and why."""
    if pixel_scale is None:
        return [("Pixel scale", "none recorded (a model exported before pixel scales): every image is shrunk whole "
                                "into one window")]
    return [("Pixel scale", f"{pixel_scale.scale:g} network pixels per image pixel ({pixel_scale.chosen_by})"),
            ("Windows", f"{pixel_scale.window}×{pixel_scale.window} px, overlapping by {pixel_scale.overlap} px "
                        f"(training: {pixel_scale.training_overlap} px)"),
            ("Why", pixel_scale.reason)]


def _dataset_section(document: Any, session: Any) -> None:
    """Doctor findings (with counts of anything skipped), statistics and the example image."""
    dataset = session.dataset
    document.heading("Dataset")
    statistics = dataset.statistics()
    document.key_value_table([("Images folder", session.config.images_dir),
                              ("Annotations (folder or .json file)", session.config.annotations_dir),
                              ("Usable images", statistics["images"])]
                             + [(f"Boxes of {name}", count) for name, count in statistics["objects_per_class"].items()])
    counts = dataset.problem_counts()
    if counts:
        document.paragraph("Problems found by the data check (boxes with zero area or outside the image were dropped "
                           "or clipped as listed; the full list is dataset_problems.json in the run folder):")
        document.table(["problem", "count"], [[kind, str(count)] for kind, count in sorted(counts.items())])
    else:
        document.paragraph("The data check found no problems.")
    for name in ("class_counts.png", "objects_per_image.png", "box_sizes.png", "example_annotated_image.png"):
        path = session.run.plots / name
        if path.is_file():
            document.figure(path, width_mm=150)


def training_report(session: Any) -> pathlib.Path:
    """Write ``training_report.pdf`` into the run folder from the run's real state; returns its path.

    Order: the kept epoch and its figures in words, the curves (kept epoch marked), the data, split,
    augmentation and network, the methods paragraph, glossary, references, then the appendix
    (hardware, versions, settings verbatim).
    """
    config, run = session.config, session.run
    rows = history.read_history(run.history_path)
    kept = kept_row(session, rows)
    document = run_report.start_report(f"Training report: {run.root.name}", run, config, config.images_dir,
                                       answer=training_answer(session, rows))
    document.key_value_table([("Task", "object detection (RetinaNet, TF Model Garden)"), ("Epochs completed", len(rows))])
    document.heading("Training curves")
    document.figure(plot_training_curves(run, config, kept["epoch"] if kept else None), width_mm=170)
    document.paragraph("Lines: training figures, averaged over each epoch. Points: validation figures (measured "
                       "after the epochs that were validated). The loss terms are drawn times the weight they had in "
                       "the optimised loss, so they add up to the total (which also holds the L2 weight decay"
                       + (" and the box IoU term" if config.box_iou_loss_weight else "") + "). The dashed line is the "
                       "epoch that was kept.")
    if kept and not math.isnan(kept.get("validation_map50_95", math.nan)):
        document.heading("Validation metrics of the kept checkpoint")
        document.key_value_table([("Epoch", kept["epoch"]),
                                  ("COCO mAP50 (IoU ≥ 0.5)", f"{kept['validation_map50']:.3f}"),
                                  ("COCO mAP50-95 (IoU 0.50 to 0.95)", f"{kept['validation_map50_95']:.3f}"),
                                  ("Validation loss", f"{kept.get('validation_loss', math.nan):.4f}")])
    _dataset_section(document, session)
    document.heading("How the network sees the images")
    document.key_value_table(scale_rows(getattr(session, "pixel_scale", None)))
    sizes_plot = run.plots / "object_sizes_network.png"
    if sizes_plot.is_file():
        document.figure(sizes_plot, width_mm=150)
    document.heading("Split")
    document.key_value_table([("Seed", session.split.seed), ("Training images", len(session.split.train)),
                              ("Validation images", len(session.split.validation)), ("Recorded in", run.split_path)])
    document.heading("Augmentation")
    document.paragraph(augmentation_sentence(session).strip())
    if session.augmentation is not None:
        document.paragraph(session.augmentation.summary())
        preview = run.plots / "augmentation_preview.png"
        if preview.is_file():
            document.figure(preview, width_mm=160)
    document.heading("Backbone and initial weights")
    spec = backbones.get_backbone(config.backbone)
    source = ("trained from scratch" if session.pretrained is None and not config.continue_from
              else f"continued from {config.continue_from}" if config.continue_from
              else f"{session.pretrained.url} (sha256 {session.pretrained.sha256}, licence {spec.licence})")
    document.key_value_table([("Backbone", f"{spec.name}: {spec.description}"), ("Initial weights", source)])
    document.heading("Methods (ready to paste)")
    document.paragraph(methods_paragraph(session, rows))
    run_report.add_glossary(document, TRAINING_GLOSSARY)
    document.heading("References")
    document.bullet_list([f"[{index}] {text}" for index, text in enumerate(REFERENCES, start=1)])
    run_report.add_appendix(document, config, getattr(getattr(session, "training", None), "strategy", None))
    return document.save(run.root / "training_report.pdf")


COUNT_PLOTS = ("count_scatter", "count_bland_altman")
COUNT_TOLERANCE = 1  # the answer says in how many images the count is within ± this of the annotation
QC_GLOSSARY = (
    ("score threshold", "a detection counts (as found, false, or in a count) only when the model's score for it is "
                        "at least this; the report's answer and counts use the threshold of the settings"),
    ("IoU", "intersection over union of a predicted and an annotated box (0 = apart, 1 = identical); a detection "
            "finds an annotated object when their IoU is at least 0.5"),
    ("found / false detection", "found (TP): an annotated box matched by a detection of its class; false detection "
                                "(FP): a detection that matches no annotated box of its class; missed (FN): an "
                                "annotated box that no detection matched"),
    ("precision, recall, F1", "precision = TP / (TP + FP), the share of detections that are right; recall = TP / "
                              "(TP + FN), the share of annotated objects found; F1 = their harmonic mean"),
    ("AP, mAP50, mAP50-95", "average precision: the area under the precision-recall curve as the score threshold "
                            "goes from high to low (COCO protocol: precision read at 101 recall levels, objects of "
                            "every size, every detection with score ≥ 0.05 ranked); mAP = mean over classes; "
                            "mAP50 at IoU ≥ 0.5, mAP50-95 averaged over IoU 0.50, 0.55, …, 0.95, mAP75 at IoU ≥ 0.75"),
    ("MAE, MRE", "mean absolute error of the count per image (objects); mean relative error = the error divided by "
                 "the annotated count, over images with at least one annotated object"),
    ("Bland-Altman bias and limits", "bias = mean of (predicted − annotated) count; 95 % limits of agreement = bias ± "
                                     "1.96 × the standard deviation of the differences (sample SD, n − 1 in the "
                                     "denominator): where 95 % of images' count errors are expected to fall"),
    ("Pearson r", "correlation of predicted with annotated counts over the images (1 = perfectly proportional)"),
    ("difficult box", "an annotated object marked difficult: neither a miss when not found nor a false detection "
                      "when found"),
)


# One plot per question, each with a caption saying what to read from it.
QUESTION_PLOTS = {
    "pr_curves": ("How precise is the model at each level of recall?",
                  "One line per class: precision (share of detections that are right) as the score threshold falls and "
                  "recall (share of annotated objects found) rises; the dot is where the threshold in use puts you, "
                  "and the higher and further right a line stays, the better."),
    "f1_curve": ("Which score threshold?",
                 "F1 (precision and recall together) at each score threshold: the dashed red line is the threshold in "
                 "use and the star the best F1; a flat top means the threshold matters little."),
    "confusion_matrix": ("Which classes are confused, missed or falsely detected?",
                         "Rows: annotated class; the last column counts annotated objects the model missed, the last "
                         "row counts detections where nothing was annotated, and off-diagonal class cells count "
                         "objects found with the wrong class (colour: share of the row)."),
}


def best_f1_sentence(curves: Any) -> str:
    """The best F1 threshold (all classes) against the one in use, stated as chosen on these images."""
    from helpers.qc import detection as detection_qc

    pooled, best = curves.per_class[detection_qc.ALL_CLASSES], curves.best[detection_qc.ALL_CLASSES]
    in_use = pooled["f1"][curves.score_thresholds.index(curves.score_threshold)]
    return (f"All classes together: F1 {in_use:.2f} at the score threshold in use ({curves.score_threshold:g}); "
            f"the best F1 is {best['f1']:.2f} at score threshold {best['score_threshold']:g} (precision "
            f"{best['precision']:.2f}, recall {best['recall']:.2f}), {curves.best_threshold_note}. The threshold in use is "
            f"the run's score_threshold setting.")


QUESTION_FIGURE_WIDTH_MM = 140
CAPTION_AND_PARAGRAPH_MM = 30  # room kept below a question's heading besides its figure


def _figure_height_mm(document: Any, path: pathlib.Path, width_mm: float) -> float:
    """The height ``document.figure`` gives the PNG at ``path`` (0 when it is missing)."""
    from PIL import Image

    if not pathlib.Path(path).is_file():
        return 0.0
    with Image.open(path) as image:
        return min(width_mm, document.text_width_mm) * image.size[1] / image.size[0]


def _threshold_and_confusion_section(document: Any, result: Any) -> None:
    """The PR curves, the F1 curve (with the best threshold in words) and the confusion matrix, one per question.

    Each heading starts a new page unless its figure fits below it, so no question stands alone at a page end.
    """
    for name, (question, caption) in QUESTION_PLOTS.items():
        if name not in result.plots:
            continue
        path = result.plots[name]
        document.heading(question, keep_with_next_mm=_figure_height_mm(document, path, QUESTION_FIGURE_WIDTH_MM)
                         + CAPTION_AND_PARAGRAPH_MM)
        if name == "f1_curve" and getattr(result.evaluation, "f1_curves", None) is not None:
            document.paragraph(best_f1_sentence(result.evaluation.f1_curves))
        document.figure(path, width_mm=QUESTION_FIGURE_WIDTH_MM, caption=caption)


def _count_section(document: Any, result: Any) -> None:
    """Predicted vs annotated counts per image: definitions, the table, the best threshold, both plots."""
    from helpers.qc import detection as detection_qc

    agreement = result.evaluation.count_agreement
    document.heading("Counts: predicted vs annotated objects per image")
    lines = detection_qc.count_summary_lines(agreement)
    for line in lines:
        # "ddof 1" is defined in the glossary (sample SD) rather than in the text.
        document.paragraph(line.replace(" (ddof 1)", "").replace(">=", "≥").replace("+-", "±"))
    if any(obj.difficult for annotation in result.ground_truth.values() for obj in annotation.objects):
        document.paragraph("Difficult boxes are not counted as annotated (as they are excluded from every other "
                           "figure), but a detection of such a cell is counted as predicted.")
    document.paragraph(f"Per class, over the {agreement.all_classes.images} images evaluated:")
    rows = detection_qc.count_table_rows(agreement, images_column=False)
    document.table(rows[0], rows[1:])
    for name in COUNT_PLOTS:
        if name in result.plots:
            document.figure(result.plots[name], width_mm=170)


def within_tolerance(agreement: Any, tolerance: int = COUNT_TOLERANCE) -> tuple[int, int]:
    """(images whose total count, all classes summed, is within ± ``tolerance`` of the annotated total, images)."""
    differences = [sum(row["predicted"].values()) - sum(row["annotated"].values()) for row in agreement.per_image.values()]
    return sum(abs(difference) <= tolerance for difference in differences), len(differences)


def unseen_classes(result: Any) -> list[str]:
    """Annotated (non-difficult) classes of the QC images that the model was not trained on, sorted."""
    try:
        trained = set(result.run.read_label_map())
    except errors.HelpersError:
        return []  # no label map (a model exported elsewhere): nothing to compare with
    annotated = {obj.name for annotation in result.ground_truth.values() for obj in annotation.objects
                 if not obj.difficult}
    return sorted(annotated - trained)


def qc_answer(result: Any) -> list[str]:
    """The QC report's first lines: found, false and counted at the score threshold in use, per class, then mAP."""
    evaluation = result.evaluation
    threshold = evaluation.thresholds.get("score_threshold", result.config.score_threshold)
    per_class = evaluation.per_class
    found = sum(int(values.get("tp", 0)) for values in per_class.values())
    annotated = found + sum(int(values.get("fn", 0)) for values in per_class.values())
    false = sum(int(values.get("fp", 0)) for values in per_class.values())
    headline = (f"At score ≥ {threshold:g}: {found} of {annotated} annotated objects found, {false} false "
                f"detection{'s' * (false != 1)}")
    if evaluation.count_agreement is not None and evaluation.count_agreement.per_image:
        within, images = within_tolerance(evaluation.count_agreement)
        headline += f"; counts within ±{COUNT_TOLERANCE} per image in {within} of {images} images"
        if getattr(evaluation.count_agreement, "merge_iou", None) is not None:
            headline += " (each object counted once)"
    lines = [headline + "."]
    if len(per_class) > 1:
        lines.append("Per class: " + "; ".join(
            f"{name} {int(values.get('tp', 0))} of {int(values.get('tp', 0)) + int(values.get('fn', 0))} found, "
            f"{int(values.get('fp', 0))} false" for name, values in per_class.items()) + ".")
    lines.append(f"Detection quality over all score thresholds: mAP50 = {tables.format_value(evaluation.map50)} "
                 f"(1 = every object found, with no false detection scored above a true one; 0 = none found). "
                 f"Images: {result.source}.")
    return lines


def qc_warnings(result: Any) -> list[str]:
    """What to read before trusting the QC figures: too few images, annotated classes the model never saw."""
    warnings = [run_report.sample_size_warning(len(result.image_paths))]
    for name in unseen_classes(result):
        warnings.append(f"Class {name} is in the test annotations but not in training: the model cannot find it; "
                        f"it lowers mAP (its AP is 0) and every {name} box counts as missed.")
    return [warning for warning in warnings if warning]


def qc_report(result: Any) -> pathlib.Path:
    """Write ``qc_report.pdf`` into the run folder: the answer, counts, per-class figures, examples, glossary, appendix."""
    run, config, evaluation = result.run, result.config, result.evaluation
    document = run_report.start_report(f"Quality control report: {run.root.name}", run, config,
                                       next(iter(result.image_paths.values())).parent,
                                       answer=qc_answer(result), warnings=qc_warnings(result))
    document.heading("What was measured")
    document.paragraph(f"The exported model's detections on these {len(result.image_paths)} annotated images were "
                       f"compared with the annotated boxes (COCO protocol, pycocotools). Found, false and missed use IoU ≥ {evaluation.thresholds.get('iou_threshold', 0.5)} "
                       f"and score ≥ {evaluation.thresholds.get('score_threshold', config.score_threshold)}; mAP ranks "
                       f"every detection. The glossary at the end defines each figure.")
    document.key_value_table([("COCO mAP50-95", f"{evaluation.map50_95:.3f}"), ("COCO mAP50", f"{evaluation.map50:.3f}"),
                              ("COCO mAP75", f"{evaluation.map75:.3f}"),
                              ("Images / annotated boxes / detections ranked",
                               f"{len(result.image_paths)} / {sum(len(a.objects) for a in result.ground_truth.values())}"
                               f" / {len(result.predictions)}")])
    document.heading("Per class")
    document.table(["class", "AP50", "AP50-95", "precision", "recall", "F1", "TP", "FP", "FN"], result.metrics_rows())
    if evaluation.unknown_classes:
        document.paragraph(f"Predicted classes absent from the annotations (not in the mean): "
                           f"{', '.join(evaluation.unknown_classes)}.")
    if "per_class_ap" in result.plots:
        document.figure(result.plots["per_class_ap"], width_mm=150)
    _threshold_and_confusion_section(document, result)
    if evaluation.count_agreement is not None:
        _count_section(document, result)
    for name, path in result.plots.items():  # a plot added later is shown even before it has a section
        if name not in COUNT_PLOTS and name not in QUESTION_PLOTS and name != "per_class_ap":
            document.figure(path, width_mm=150)
    document.heading("Examples: image, prediction, annotation")
    for filename in sorted(result.image_paths)[:3]:
        document.figure(result.figure_for(filename), width_mm=170, caption=filename)
    run_report.add_glossary(document, QC_GLOSSARY)
    document.heading(f"{run_report.APPENDIX_TITLE}: how the network sees the images")
    document.key_value_table(scale_rows(result.pixel_scale))
    run_report.add_appendix(document, config)
    return document.save(run.root / "qc_report.pdf")
