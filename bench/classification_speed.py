"""Benchmark: training images per second of our classification path against a bare Keras ``fit``.

For each backbone, trained from scratch (all layers learn) on the same images, image size, batch
size, optimiser, loss and metrics:

* ``ours``: ``helpers.classification.train.train_classifier`` as a run calls it: our ``tf.data``
  pipeline reading the image files from disk with our augmentation and class weights, our
  callbacks (validation figures, reduce-LR, early stopping, checkpoint + ``state.json`` +
  ``history.csv`` every epoch, progress bar, live plot), one pass over the training images per epoch;
* ``bare``: ``keras.Model.fit`` of the same model (``helpers.classification.model.build_classifier``
  and ``compile_model``) on one batch of those images already in memory
  (``tf.data.Dataset.from_tensors(batch).repeat()``), no callbacks but the timer.

A Keras callback stamps every ``on_train_batch_end``; a step's time is the interval between two
stamps (input wait, train step and per-batch callbacks). The first ``--warmup`` steps build the
graph and are left out. Reported: the median seconds per step, images per second and
``ratio = bare / ours`` (1.0 = no overhead; goal >= 0.95), plus the mean over the timed steps,
which for ``ours`` also carries the end-of-epoch work (validation pass, checkpoint).

    .venv/bin/python bench/classification_speed.py --backbones mobilenetv3small efficientnetb0 --steps 20
    .venv/bin/python bench/classification_speed.py --smoke      # seconds-long check on synthetic images
Writes ``bench/output/classification_speed/<time>.json`` and prints a Markdown table.

Images: ``--data`` (default ../shared/data/wbc_bccd_crops, white-cell crops in one subfolder per
class under ``BCCD_cropped/``); when absent, synthetic demo images (said so in the output).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from from_scratch import class_folders  # noqa: E402  (one definition of the crops layout)

DEFAULT_DATA = REPOSITORY_ROOT.parent / "shared" / "data" / "wbc_bccd_crops"


def choose_images(arguments: argparse.Namespace, work: pathlib.Path) -> tuple[pathlib.Path, str]:
    """(images folder with one subfolder per class, description): real crops, or synthetic demo images."""
    from helpers.classification import demo_data

    if not arguments.smoke:
        folder = class_folders(pathlib.Path(arguments.data))
        if folder is not None:
            return folder, f"real: {folder}"
        print(f"{arguments.data}: no class subfolders found; timing on synthetic demo images instead "
              f"(pass --data with the wbc_bccd_crops folder for the real set).", file=sys.stderr)
    size = 64 if arguments.smoke else max(arguments.image_size, 64)
    count = 6 if arguments.smoke else 60
    folder = demo_data.make_classification_demo(work / "synthetic", images_per_class=count, image_size=size)
    return folder, f"synthetic demo ({count} per class, {size} px)"


def load_split(images_dir: pathlib.Path, config) -> tuple[list, list, list[str]]:
    """(training items, validation items, class names): the doctor's usable images, split as a run splits them."""
    from helpers import split as split_module
    from helpers.classification import dataset as dataset_module

    dataset = dataset_module.load_classification_dataset(images_dir, None, config.minimum_images_per_class,
                                                         progress=False)
    split = split_module.split_dataset([item.key for item in dataset.items], [item.label for item in dataset.items],
                                       config.validation_fraction, seed=config.split_seed)
    by_key = dataset.items_by_key()
    return [by_key[key] for key in split.train], [by_key[key] for key in split.validation], dataset.classes


def step_clock(total_steps: int):
    """A Keras callback that stamps each training step's end and stops training after ``total_steps`` steps."""
    import keras

    class StepClock(keras.callbacks.Callback):
        """``ends``: ``time.perf_counter()`` at every ``on_train_batch_end``, all epochs together."""

        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            if len(self.ends) >= total_steps:
                self.model.stop_training = True

    return StepClock()


def step_figures(ends: list[float], warmup: int, batch_size: int) -> dict:
    """Median and mean seconds per step over the intervals after the first ``warmup`` steps, and images/s.

    Args:
        ends: perf_counter seconds at the end of each step (at least ``warmup + 1`` of them).
    """
    intervals = [later - earlier for earlier, later in zip(ends[warmup - 1:], ends[warmup:])]
    median = statistics.median(intervals)
    return {"median_seconds_per_step": round(median, 4), "mean_seconds_per_step": round(statistics.fmean(intervals), 4),
            "images_per_second": round(batch_size / median, 2), "timed_steps": len(intervals)}


def measure_ours(config, run, train_items, validation_items, classes, total_steps: int) -> dict:
    """Seconds per step of ``train.train_classifier`` (our pipeline, callbacks and checkpoints) for ``config``."""
    from helpers.classification import train

    clock = step_clock(total_steps)
    callbacks = (train.ProgressCallback(config.epochs, stream=io.StringIO()), train.LivePlotCallback(run), clock)
    started = time.perf_counter()
    train.train_classifier(config, run, train_items, validation_items, classes, callbacks=callbacks)
    return {"ends": clock.ends, "first_step_seconds": round(clock.ends[0] - started, 1)}


def bare_batch(config, train_items, classes) -> tuple:
    """(images float32 [B, S, S, 3] 0..255, one-hot targets float32 [B, C], class weights float32 [B]) in memory."""
    import numpy as np

    from helpers.classification import pipeline

    chosen = [train_items[index % len(train_items)] for index in range(config.batch_size)]
    labels = [classes.index(item.label) for item in train_items]
    weights_per_class = np.asarray(pipeline.class_weights(labels, len(classes)), dtype=np.float32)
    indices = np.asarray([classes.index(item.label) for item in chosen])
    images = np.stack([pipeline.load_resized(item.path, config.image_size) for item in chosen]).astype(np.float32)
    return images, np.eye(len(classes), dtype=np.float32)[indices], weights_per_class[indices]


def measure_bare(config, batch: tuple, number_of_classes: int, total_steps: int) -> dict:
    """Seconds per step of a plain ``model.fit`` of the same model on ``batch`` held in memory."""
    import keras
    import tensorflow as tf

    from helpers.classification import model as model_module
    from helpers.classification import train

    keras.backend.clear_session()
    model = model_module.build_classifier(config.backbone, number_of_classes, config.image_size,
                                          dropout=config.dropout,
                                          batch_norm_momentum=train.FROM_SCRATCH_BATCH_NORM_MOMENTUM)
    optimizer = model_module.make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    model_module.compile_model(model, optimizer, config.label_smoothing)
    clock = step_clock(total_steps)
    started = time.perf_counter()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=total_steps, verbose=0,
              shuffle=False, callbacks=[clock])
    return {"ends": clock.ends, "first_step_seconds": round(clock.ends[0] - started, 1)}


def measure(backbone: str, arguments: argparse.Namespace, images_dir: pathlib.Path, work: pathlib.Path) -> dict:
    """One backbone: our path, then the bare fit, with the figures of both and their ratio."""
    import keras

    from helpers import config as config_module
    from helpers import runs
    from helpers.classification import pipeline
    from helpers.classification.config import ClassificationConfig

    total_steps = arguments.warmup + arguments.steps
    config = config_module.config_from_form(
        ClassificationConfig, "quick", images_dir=str(images_dir), model_path=str(work / "models"),
        model_name=backbone, backbone=backbone, pretrained="none", image_size=arguments.image_size,
        batch_size=arguments.batch_size, early_stopping_patience=0, minimum_images_per_class=1)
    train_items, validation_items, classes = load_split(images_dir, config)
    steps_per_epoch = pipeline.steps_per_epoch(len(train_items), config.batch_size)
    # Enough epochs of one pass each (as in a run) to cover the steps; the clock stops training after them.
    config = config_module.validate_config(dataclasses.replace(config, epochs=math.ceil(total_steps / steps_per_epoch)))
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    keras.utils.set_random_seed(config.split_seed)
    load_before = os.getloadavg()[0]
    ours = measure_ours(config, run, train_items, validation_items, classes, total_steps)
    bare = measure_bare(config, bare_batch(config, train_items, classes), len(classes), total_steps)
    ours_figures = step_figures(ours["ends"], arguments.warmup, config.batch_size)
    bare_figures = step_figures(bare["ends"], arguments.warmup, config.batch_size)
    return {"backbone": backbone, "image_size": config.image_size, "batch_size": config.batch_size,
            "train_images": len(train_items), "validation_images": len(validation_items), "classes": len(classes),
            "steps_per_epoch_ours": steps_per_epoch,
            "ours": {**ours_figures, "first_step_seconds": ours["first_step_seconds"]},
            "bare": {**bare_figures, "first_step_seconds": bare["first_step_seconds"]},
            "ratio": round(bare_figures["median_seconds_per_step"] / ours_figures["median_seconds_per_step"], 3),
            "ratio_of_means": round(bare_figures["mean_seconds_per_step"] / ours_figures["mean_seconds_per_step"], 3),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table: median s/step and images/s of both sides, both ratios."""
    lines = ["| backbone | size | batch | s/step ours | s/step bare | img/s ours | img/s bare | ratio (median) | "
             "ratio (mean, with epoch ends) | load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['backbone']} | {row['image_size']} | {row['batch_size']} | "
                     f"{row['ours']['median_seconds_per_step']} | {row['bare']['median_seconds_per_step']} | "
                     f"{row['ours']['images_per_second']} | {row['bare']['images_per_second']} | {row['ratio']} | "
                     f"{row['ratio_of_means']} | {row['load_average_before']:.1f}–{row['load_average_after']:.1f} |")
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--smoke`` overrides backbones, size, batch and step counts)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["mobilenetv3small", "efficientnetb0"],
                        help="helpers.classification.backbones names (case-insensitive)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="wbc_bccd_crops folder (or any class-folder set)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out (graph building); at least 1")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output" / "classification_speed"))
    parser.add_argument("--smoke", action="store_true", help="MobileNetV3-Small, 48 px, batch 4, 1+2 steps, synthetic")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.backbones, arguments.image_size, arguments.batch_size = ["mobilenetv3small"], 48, 4
        arguments.warmup, arguments.steps = 1, 2
    if arguments.warmup < 1 or arguments.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step builds the graph)")
    arguments.backbones = [name.lower() for name in arguments.backbones]
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Measure every backbone, write the JSON and print the Markdown table."""
    arguments = parse_arguments(argv)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = pathlib.Path(temporary)
        images_dir, data_description = choose_images(arguments, work)
        for backbone in arguments.backbones:
            rows.append(measure(backbone, arguments, images_dir, work / backbone))
            print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "classification_speed", "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": platform.platform(), "cpu_count": os.cpu_count(), "data": data_description,
              "load_average_at_end": os.getloadavg(), "arguments": vars(arguments), "rows": rows}
    output = pathlib.Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"Data: {data_description}. Raw figures: {path}\n{markdown_table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
