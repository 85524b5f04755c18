"""Section 5 of the detection notebook: check a trained model against annotated images.

The exported model is run on a held-out test folder (or, when none is given, on the run's
validation split, which is said plainly since those images chose the best epoch), scored with
pycocotools through ``helpers.qc.detection``, and written up as ``qc_report.pdf``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

from helpers import config as config_module
from helpers import display, errors, images, prediction_formats, runs, tables, voc, workflow
from helpers import progress as progress_module
from helpers import split as split_module
from helpers.detection import dataset as dataset_module
from helpers.detection.config import DetectionConfig

# mAP needs the whole ranking of detections, so QC keeps everything above this score;
# precision / recall / F1 are then taken at the run's own score_threshold.
RANKING_SCORE_THRESHOLD = 0.05


@dataclasses.dataclass
class QualityResult:
    """What section 5 shows and writes.

    Attributes:
        run: the run folder of the model checked.
        config: its settings.
        evaluation: ``helpers.qc.detection.DetectionEvaluation`` (pycocotools figures).
        source: plain-language description of the images used.
        image_paths: image file name -> path of every image evaluated.
        ground_truth: image file name -> annotation (boxes as used for scoring).
        predictions: all detections above ``RANKING_SCORE_THRESHOLD``.
        output_dir: ``run/qc/<timestamp>`` with predictions.csv, metrics.json and plots.
        plots: name -> PNG path.
        report_path: the QC report PDF.
        pixel_scale: the model's ``tiling.PixelScale`` (None for a model exported before them).
    """

    run: runs.RunFolder
    config: DetectionConfig
    evaluation: Any
    source: str
    image_paths: dict[str, pathlib.Path]
    ground_truth: dict[str, voc.VocAnnotation]
    predictions: list
    output_dir: pathlib.Path
    plots: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    report_path: pathlib.Path | None = None
    pixel_scale: Any = None

    def metrics_rows(self) -> list[list[str]]:
        """Per-class table rows: class, AP50, AP50-95, precision, recall, F1, TP, FP, FN."""
        rows = []
        for name, values in self.evaluation.per_class.items():
            rows.append([name] + [tables.format_value(values.get(key))
                                  for key in ("ap50", "ap50_95", "precision", "recall", "f1")]
                        + [str(values.get(key, "")) for key in ("tp", "fp", "fn")])
        return rows

    def summary_text(self) -> str:
        """Plain-language headline numbers, each with its thresholds."""
        evaluation = self.evaluation
        return (f"Images: {self.source}.\n"
                f"COCO mAP50-95 = {tables.format_value(evaluation.map50_95)} (IoU 0.50:0.05:0.95), "
                f"mAP50 = {tables.format_value(evaluation.map50)} (IoU ≥ 0.5), mAP75 = {tables.format_value(evaluation.map75)} (IoU ≥ 0.75); "
                f"up to {evaluation.thresholds.get('max_detections', 100)} detections per image and class, all scores ≥ "
                f"{RANKING_SCORE_THRESHOLD} ranked.\n"
                f"Precision, recall, F1, TP/FP/FN below: IoU ≥ {evaluation.thresholds.get('iou_threshold', 0.5)} "
                f"and score ≥ {evaluation.thresholds.get('score_threshold', self.config.score_threshold)}."
                + (f"\n{self.pixel_scale.sentence()}" if self.pixel_scale is not None else ""))

    def show(self) -> None:
        """Print the metrics with their thresholds and display the plots."""
        print(self.summary_text())
        header = ["class", "AP50", "AP50-95", "precision", "recall", "F1", "TP", "FP", "FN"]
        widths = [max(len(str(row[index])) for row in [header] + self.metrics_rows()) for index in range(len(header))]
        for row in [header] + self.metrics_rows():
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if self.evaluation.unknown_classes:
            print(f"Classes predicted but absent from the annotations (not in the mean): {self.evaluation.unknown_classes}")
        self.show_counts()
        for path in self.plots.values():
            display.show_image(path)
        print(f"QC report: {self.report_path}\nFiles: {self.output_dir}")

    def show_counts(self) -> None:
        """Print the count agreement (predicted vs annotated objects per image) and the best count threshold."""
        from helpers.qc import detection as detection_qc

        agreement = self.evaluation.count_agreement
        print("\n" + "\n".join(detection_qc.count_summary_lines(agreement)))
        print(tables.text_table(detection_qc.count_table_rows(agreement)))

    def figure_for(self, filename: str) -> pathlib.Path:
        """Image / prediction / annotation side by side for one image (PNG in output_dir)."""
        from helpers.detection import outputs

        path = self.output_dir / "side_by_side" / f"{pathlib.Path(filename).stem}.png"
        path.parent.mkdir(exist_ok=True)
        kept = [row for row in self.predictions
                if row.filename == filename and row.score >= self.config.score_threshold]
        return outputs.side_by_side(images.read_image(self.image_paths[filename]), kept,
                                    self.ground_truth[filename].objects, path)

    def browse(self) -> Any:
        """An ipywidgets browser over the evaluated images (prints the figure paths without IPython).

        A Dropdown drives an ``ipywidgets.Image`` whose bytes are replaced on each choice. No
        ``Output`` widget is used: capturing displays into one hung papermill/nbclient after the
        training cell's live plots (reproduced twice), while an Image widget needs no capture.
        """
        names = sorted(self.image_paths)
        try:
            import ipywidgets
        except ImportError:
            for name in names[:4]:
                print(f"{name}: {self.figure_for(name)}")
            return None
        chooser = ipywidgets.Dropdown(options=names, description="image")
        picture = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%"))

        def show_image(change: Any) -> None:  # a widget callback must be a function
            picture.value = self.figure_for(change["new"]).read_bytes()

        chooser.observe(show_image, names="value")
        show_image({"new": names[0]})
        box = ipywidgets.VBox([chooser, picture])
        return display.show_widget(box)


def _evaluation_items(run: runs.RunFolder, config: DetectionConfig, test_images: str, test_annotations: str
                      ) -> tuple[dataset_module.DetectionDataset, list[dataset_module.DatasetItem], str]:
    """The dataset and items to evaluate, and a plain description of where they come from."""
    if str(test_images).strip():
        workflow.require_folder("Test_images", test_images)
        dataset_module.require_annotations("Test_annotations", test_annotations)
        dataset = dataset_module.load_detection_dataset(test_images, test_annotations)
        return dataset, list(dataset.items), f"held-out test folder {test_images} ({len(dataset.items)} images)"
    dataset = dataset_module.load_detection_dataset(config.images_dir, config.annotations_dir)
    recorded = split_module.load_split(run.split_path)
    by_stem = {item.stem: item for item in dataset.items}
    items = [by_stem[stem] for stem in recorded.validation if stem in by_stem]
    if not items:
        raise errors.DatasetError(f"{run.split_path}: no validation images to evaluate on. Give Test_images and "
                                  f"Test_annotations in form 1.1.")
    return dataset, items, (f"the run's {len(items)} validation images (no test folder given; these images chose "
                            f"the best epoch, so the numbers are optimistic)")


def evaluate_run(run: runs.RunFolder, test_images: str = "", test_annotations: str = "",
                 progress: bool = True) -> QualityResult:
    """Run the exported model on annotated images, score it, plot, and write the QC report.

    Returns:
        The result; ``result.show()`` prints and displays it, ``result.browse()`` opens a viewer.
    """
    from helpers.detection import annotation_loop, export, reports, tiling
    from helpers.qc import detection as detection_qc

    config = config_module.load_config(DetectionConfig, run.config_path)
    dataset, items, source = _evaluation_items(run, config, test_images, test_annotations)
    detector = export.load_exported_model(run.exported_model)
    ground_truth, image_paths, predictions = {}, {}, []
    for item in progress_module.bar(items, "QC", enabled=progress):
        filename = item.image_path.name
        image_paths[filename] = item.image_path
        ground_truth[filename] = dataclasses.replace(item.annotation, filename=filename,
                                                     objects=dataset.scoring_objects(item, detector.class_names))
        predictions.extend(dataclasses.replace(row, filename=filename) for row in
                           detector.detect(tiling.open_image(item.image_path), score_threshold=RANKING_SCORE_THRESHOLD))
    # Counts as section 6 writes them by default: each object once, at the model's own suppression IoU.
    evaluation = detection_qc.evaluate_detection(ground_truth, predictions, classes=detector.class_names,
                                                 score_threshold=config.score_threshold, iou_threshold=0.5,
                                                 count_merge_iou=detector.nms_iou_threshold)
    output_dir = run.qc / time.strftime("%Y%m%d-%H%M%S")
    output_dir.mkdir(parents=True, exist_ok=True)
    prediction_formats.write_predictions_csv(predictions, output_dir / "predictions.csv")
    annotation_loop.write_qc_images_record(test_images if str(test_images).strip() else None,
                                           list(image_paths.values()), output_dir / annotation_loop.QC_IMAGES_RECORD)
    (output_dir / "metrics.json").write_text(json.dumps(evaluation.to_json_dict(), indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    result = QualityResult(run=run, config=config, evaluation=evaluation, source=source, image_paths=image_paths,
                           ground_truth=ground_truth, predictions=predictions, output_dir=output_dir,
                           pixel_scale=detector.pixel_scale)
    result.plots = {
        "per_class_ap": detection_qc.plot_per_class_ap(evaluation, output_dir / "per_class_ap.png"),
        "pr_curves": detection_qc.plot_pr_curves(evaluation, output_dir / "pr_curves.png"),
        "f1_curve": detection_qc.plot_f1_curve(evaluation, output_dir / "f1_curve.png"),
        "confusion_matrix": detection_qc.plot_confusion_matrix(evaluation, output_dir / "confusion_matrix.png"),
        "count_scatter": detection_qc.plot_count_scatter(evaluation, output_dir / "count_scatter.png"),
        "count_bland_altman": detection_qc.plot_bland_altman(evaluation, output_dir / "count_bland_altman.png"),
    }
    result.report_path = reports.qc_report(result)
    return result
