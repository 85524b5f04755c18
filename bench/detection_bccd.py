"""Benchmark: our detection pipeline trained from scratch on BCCD, scored on BCCD's own test split.

Trains on ``ImageSets/Main/<--train-split>.txt`` (default ``trainval``, as the YOLOv8n side of
``bench/detection_vs_yolo.py``), picks the checkpoint by validation mAP50-95 on ``val.txt`` and
scores the exported model on ``test.txt`` with the QC command (``python -m helpers.qc detection``,
pycocotools), exactly as a notebook user's run would go (doctor, records, train loop, export,
prediction). Writes ``bench/output/detection_bccd-<backbone>-<size>/<time>/result.json``.

    .venv/bin/python bench/detection_bccd.py --epochs 14 --image-size 384 --backbone spinenet49_mobile
    .venv/bin/python bench/detection_bccd.py --smoke      # seconds-long check that the script runs

The BCCD folder defaults to ../shared/data/bccd (PASCAL VOC layout: Annotations/, JPEGImages/, ImageSets/Main/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from bccd import DEFAULT_BCCD, experiment_overrides, link_split, parse_overrides, score_with_qc, stems, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", default=str(DEFAULT_BCCD))
    parser.add_argument("--train-split", default="trainval", choices=["train", "trainval"])
    parser.add_argument("--backbone", default="spinenet49_mobile")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-interval", type=int, default=0,
                        help="validate every N epochs (0 = the automatic rule; 1 = every epoch, as before)")
    parser.add_argument("--override", action="append", default=[], metavar="PATH=VALUE",
                        help="ablation: a Model Garden experiment override, e.g. "
                             "task.train_data.parser.aug_scale_min=0.5 (repeatable; recorded in result.json)")
    parser.add_argument("--box-iou-loss-weight", type=float, default=0.0,
                        help="ablation: weight of the GIoU box term next to the Huber term (0 = off, the default)")
    parser.add_argument("--pixel-scale", default="auto",
                        help="the config's pixel_scale: auto (the default), or a number; with --mosaic, 'whole' = the "
                             "scale that shrinks a whole mosaic into one window (the behaviour before tiles)")
    parser.add_argument("--mosaic", type=int, default=1, metavar="N",
                        help="paste every N x N images of each split into one field of view (N x 640 by N x 480 px), "
                             "objects at their own pixel size; 1 = the BCCD images themselves")
    parser.add_argument("--label", default="", help="short name of the ablation row (part of the output folder)")
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output"))
    parser.add_argument("--smoke", action="store_true", help="2 epochs of 2 steps at 128 px on 12 images")
    arguments = parser.parse_args(argv)

    from helpers import config as config_module
    from helpers import history, runs
    from helpers.detection import dataset as detection_dataset
    from helpers.detection import export, predict, train
    from helpers.detection.config import DetectionConfig

    bccd = pathlib.Path(arguments.bccd)
    if not bccd.is_dir():
        print(f"{bccd}: BCCD not found; pass --bccd", file=sys.stderr)
        return 2
    size = 128 if arguments.smoke else arguments.image_size
    overrides = parse_overrides(arguments.override)
    name = (f"detection_bccd-{arguments.backbone}-{size}" + (f"-mosaic{arguments.mosaic}" if arguments.mosaic > 1 else "")
            + (f"-scale{arguments.pixel_scale}" if arguments.pixel_scale != "auto" else "")
            + (f"-{arguments.label}" if arguments.label else "") + ("-smoke" if arguments.smoke else ""))
    output = pathlib.Path(arguments.output) / name / time.strftime("%Y%m%d-%H%M%S")
    images_dir, annotations_dir = bccd / "JPEGImages", bccd / "Annotations"
    split_stems = {split: stems(bccd, split) for split in (arguments.train_split, "val", "test")}
    if arguments.smoke:
        split_stems = {split: values[:8 if split == arguments.train_split else 2 * arguments.mosaic ** 2]
                       for split, values in split_stems.items()}
    if arguments.mosaic > 1:
        from bccd import make_mosaics

        mosaic_stems = {}
        for split, values in split_stems.items():
            folder = output / "mosaics" / split
            mosaic_images, mosaic_annotations, mosaic_stems[split] = make_mosaics(
                images_dir, annotations_dir, values, arguments.mosaic, folder, prefix=f"{split}_mosaic")
        # One folder of all mosaics (links) for the doctor; splits by stem as before.
        images_dir, annotations_dir = output / "mosaics" / "all" / "images", output / "mosaics" / "all" / "annotations"
        for folder in (images_dir, annotations_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for split, values in mosaic_stems.items():
            for stem in values:
                for folder, suffix in ((images_dir, ".png"), (annotations_dir, ".xml")):
                    kind = "images" if suffix == ".png" else "annotations"
                    (folder / f"{stem}{suffix}").symlink_to(output / "mosaics" / split / kind / f"{stem}{suffix}")
        split_stems = mosaic_stems
    pixel_scale = arguments.pixel_scale
    if pixel_scale == "whole":
        pixel_scale = f"{size / (640 * arguments.mosaic):.4g}"
    config = config_module.config_from_form(
        DetectionConfig, "default", images_dir=str(images_dir), annotations_dir=str(annotations_dir), pixel_scale=pixel_scale,
        model_path=str(output), model_name="run", backbone=arguments.backbone, pretrained="none",
        image_size=size, epochs=2 if arguments.smoke else arguments.epochs, batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate, steps_per_epoch=2 if arguments.smoke else 0,
        validation_interval=arguments.validation_interval, box_iou_loss_weight=arguments.box_iou_loss_weight)
    dataset = detection_dataset.load_detection_dataset(config.images_dir, config.annotations_dir, progress=False)
    by_stem = {item.stem: item for item in dataset.items}
    train_items = [by_stem[stem] for stem in split_stems[arguments.train_split] if stem in by_stem]
    validation_items = [by_stem[stem] for stem in split_stems["val"] if stem in by_stem]
    test_stems = split_stems["test"]
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(dataset.classes)
    started, started_cpu = time.perf_counter(), time.process_time()
    with experiment_overrides(overrides):
        result = train.train_detector(config, run, train_items, validation_items, dataset.classes,
                                      dataset.usable_objects, callbacks=(train.ProgressCallback(),))
    training_seconds, training_cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    rows = history.read_history(run.history_path)
    validated_rows = [row for row in rows if not math.isnan(row["validation_seconds"])]  # empty = not validated
    validation_seconds = sum(row["validation_seconds"] for row in validated_rows)
    with experiment_overrides(overrides):  # the export rebuilds the model from the (overridden) experiment
        export.export_saved_model(result.model, config, dataset.classes, run.exported_model,
                                  pixel_scale=result.pixel_scale)

    if arguments.mosaic > 1:
        test_images, test_annotations = output / "mosaics" / "test" / "images", output / "mosaics" / "test" / "annotations"
    else:
        test_images, test_annotations = link_split(bccd, test_stems, output / "test")
    prediction = predict.predict_folder(run.root, test_images, output / "test_predictions", progress=False,
                                        score_threshold=0.05)
    evaluation = summary(score_with_qc(prediction.csv_path, test_annotations, test_images))
    report = {
        "benchmark": "detection_bccd", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(), "config": dataclasses.asdict(config),
        "label": arguments.label, "overrides": arguments.override, "mosaic": arguments.mosaic,
        "pixel_scale": result.pixel_scale.to_dict() if result.pixel_scale else None,
        "train_split": arguments.train_split, "train_images": len(train_items), "validation_images": len(validation_items), "test_images": len(test_stems),
        "epochs": result.epochs_completed, "best_epoch": result.best_epoch, "training_seconds": round(training_seconds, 1),
        "training_cpu_seconds": round(training_cpu_seconds, 1),
        "seconds_per_epoch_median": statistics.median(row["epoch_seconds"] for row in rows),
        "validation_seconds": round(validation_seconds, 1),
        "validation_share_of_training_wall_time": round(validation_seconds / training_seconds, 4),
        "validated_epochs": [row["epoch"] for row in validated_rows],
        "test_map50": evaluation["map50"], "test_map50_95": evaluation["map50_95"], "per_class": evaluation["per_class"],
        "validation_best": result.best_metrics, "predictions_csv": str(prediction.csv_path),
    }
    (output / "result.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(json.dumps({key: report[key] for key in ("epochs", "training_seconds", "validation_share_of_training_wall_time",
                                                   "test_map50", "test_map50_95", "per_class")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
