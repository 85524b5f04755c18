"""The detection training and QC reports, written from the run's real state (never boilerplate)."""

from __future__ import annotations

import math
import pathlib
import time
from typing import Any

from helpers import history, run_report
from helpers.detection import backbones

HISTORY_PANELS = (
    ("Training loss", ("train_total_loss", "train_class_loss", "train_box_loss", "validation_loss")),
    ("Validation mAP (COCO)", ("validation_map50", "validation_map50_95")),
)

REFERENCES = (
    "Lin T.-Y., Goyal P., Girshick R., He K., Dollár P. Focal Loss for Dense Object Detection. ICCV 2017.",
    "TensorFlow Model Garden, official/vision RetinaNet. https://github.com/tensorflow/models",
    "Lin T.-Y. et al. Microsoft COCO: Common Objects in Context. ECCV 2014 (evaluation protocol, pycocotools).",
    "von Chamier L. et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
    "Nat. Commun. 12, 2276 (2021).",
)


def plot_training_curves(run: Any) -> pathlib.Path:
    """Loss and validation-mAP curves from ``history.csv`` into ``plots/training_curves.png``."""
    return history.plot_history(run.history_path, run.plots / "training_curves.png", HISTORY_PANELS)


def best_epoch_row(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The history row with the highest validation mAP50-95 (the checkpoint kept), or None."""
    scored = [row for row in rows if not math.isnan(row.get("validation_map50_95", math.nan))]
    return max(scored, key=lambda row: row["validation_map50_95"]) if scored else None


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
    augmentation = (f"Each training image was complemented by {config.augmentation_factor - 1} augmented copies "
                    f"(flips, rotations, scaling, brightness, contrast, gamma, blur and noise, with boxes transformed "
                    f"accordingly). " if config.augmentation_factor > 1 else "")
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
    """Write ``training_report.pdf`` into the run folder from the run's real state; returns its path."""
    config, run = session.config, session.run
    rows = history.read_history(run.history_path)
    document = run_report.start_report(f"Training report: {run.root.name}", run, config, config.images_dir)
    document.key_value_table([("Task", "object detection (RetinaNet, TF Model Garden)"),
                              ("Training time (this session)", run_report.format_duration(time.time() - session.started_at)),
                              ("Epochs completed", len(rows))])
    run_report.add_environment(document)
    run_report.add_config(document, config)
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
    if session.augmentation is not None:
        document.paragraph(session.augmentation.summary())
        preview = run.plots / "augmentation_preview.png"
        if preview.is_file():
            document.figure(preview, width_mm=160)
    else:
        document.paragraph("No augmented copies (augmentation_factor = 1)."
                           + (" Random horizontal flips and scale jitter were applied on the fly." if config.random_flip else ""))
    document.heading("Backbone and initial weights")
    spec = backbones.get_backbone(config.backbone)
    source = ("trained from scratch" if session.pretrained is None and not config.continue_from
              else f"continued from {config.continue_from}" if config.continue_from
              else f"{session.pretrained.url} (sha256 {session.pretrained.sha256}, licence {spec.licence})")
    document.key_value_table([("Backbone", f"{spec.name}: {spec.description}"), ("Initial weights", source)])
    document.heading("Training curves")
    document.figure(plot_training_curves(run), width_mm=170)
    best = best_epoch_row(rows)
    if best:
        document.heading("Validation metrics of the kept checkpoint")
        document.key_value_table([("Epoch", best["epoch"]),
                                  ("COCO mAP50 (IoU ≥ 0.5, scores ≥ 0.05 ranked)", f"{best['validation_map50']:.3f}"),
                                  ("COCO mAP50-95 (IoU 0.50:0.05:0.95)", f"{best['validation_map50_95']:.3f}"),
                                  ("Validation loss", f"{best.get('validation_loss', math.nan):.4f}")])
    document.heading("Methods (ready to paste)")
    document.paragraph(methods_paragraph(session, rows))
    document.heading("References")
    document.bullet_list([f"[{index}] {text}" for index, text in enumerate(REFERENCES, start=1)])
    return document.save(run.root / "training_report.pdf")


COUNT_PLOTS = ("count_scatter", "count_bland_altman")


def _count_section(document: Any, result: Any) -> None:
    """Predicted vs annotated counts per image: definitions, the table, the best threshold, both plots."""
    from helpers.qc import detection as detection_qc

    agreement = result.evaluation.count_agreement
    document.heading("Counts: predicted vs annotated objects per image")
    lines = detection_qc.count_summary_lines(agreement)
    for line in lines:
        document.paragraph(line.replace(">=", "≥").replace("+-", "±"))
    if any(obj.difficult for annotation in result.ground_truth.values() for obj in annotation.objects):
        document.paragraph("Difficult boxes are not counted as annotated (as they are excluded from every other "
                           "figure), but a detection of such a cell is counted as predicted.")
    document.paragraph(f"Per class, over the {agreement.all_classes.images} images evaluated:")
    rows = detection_qc.count_table_rows(agreement, images_column=False)
    document.table(rows[0], rows[1:], column_widths_mm=(25, 23, 21, 14, 20, 20, 15, 32))
    for name in COUNT_PLOTS:
        if name in result.plots:
            document.figure(result.plots[name], width_mm=170)


def qc_report(result: Any) -> pathlib.Path:
    """Write ``qc_report.pdf`` (metrics with thresholds, plots, example images) into the run folder."""
    run, config, evaluation = result.run, result.config, result.evaluation
    document = run_report.start_report(f"Quality control report: {run.root.name}", run, config,
                                       next(iter(result.image_paths.values())).parent)
    document.heading("What was measured")
    document.paragraph(result.summary_text())
    document.key_value_table(scale_rows(result.pixel_scale))
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
    for name, path in result.plots.items():
        if name not in COUNT_PLOTS:
            document.figure(path, width_mm=150)
    _count_section(document, result)
    document.heading("Examples: image, prediction, annotation")
    for filename in sorted(result.image_paths)[:3]:
        document.figure(result.figure_for(filename), width_mm=170, caption=filename)
    run_report.add_config(document, config)
    return document.save(run.root / "qc_report.pdf")
