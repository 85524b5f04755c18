"""Benchmark: classification or grading trained from scratch on a real set; test metric per training minute.

Goes through the engine path of a notebook run: the form values become the task's config
(``helpers.config.config_from_form`` through the workflow's ``start``, preset ``quick`` plus the
options below), the run folder is opened, the data checked and split into training/validation
by the engine (``check_data``, ``split.json``), the model trained by the engine's loop
(``train.train_classifier`` / ``grading.train.train_grader``, with the notebook's progress and
live-plot callbacks plus a clock), exported, the training report written, and the held-out test
images predicted and scored by QC (``workflow.quality_control`` → ``helpers.qc.classification`` /
``helpers.qc.grading``, scikit-learn).

The held-out test images never reach the engine (symbolic links in the output folder; the data
folder is never written):

* ``classification`` (default data ../shared/data/wbc_bccd_crops, class subfolders in
  ``BCCD_cropped/``): test = the last 20 % (rounded half up) of each class's files by file name,
  as in docs/benchmarks.md §4 (351 crops → 280 for training and validation, 71 for test);
  test metric: balanced accuracy (and accuracy);
* ``grading`` (default data ../shared/data/dr_srahim, ``images/`` + ``labels.csv`` with columns
  image, dr_grade, patient_id): test = the test part of ``helpers.split.split_dataset`` with
  ``test_fraction = 0.2``, stratified by grade and grouped by patient, seed 42 (596 images →
  480 + 116 test images of 58 patients, as in §4); test metric: quadratic kappa (and accuracy).

Recorded per epoch: wall and CPU seconds since training started (after the epoch's checkpoint),
the epoch's seconds and validation figures from ``history.csv``. Then the training wall and CPU
time, the test figures, and ``metric_per_minute = test metric / training minutes (wall)``.

    .venv/bin/python bench/from_scratch.py --task classification --backbone mobilenetv3small --epochs 80
    .venv/bin/python bench/from_scratch.py --task classification --backbone efficientnetb0 --epochs 40
    .venv/bin/python bench/from_scratch.py --task grading --backbone mobilenetv3small --head regression --epochs 25
    .venv/bin/python bench/from_scratch.py --task classification --smoke    # seconds-long check
    .venv/bin/python bench/from_scratch.py --task grading --smoke
Writes ``bench/output/from_scratch/<task>-<backbone>[-<head>]-<time>/result.json`` (next to the
run folder ``run/`` and the linked data ``data/``) and prints one Markdown row.
``--smoke``: a handful of images (the real set's first files when present, synthetic otherwise),
1 epoch, 48 px, batch 4.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import math
import os
import pathlib
import platform
import sys
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

SHARED_DATA = REPOSITORY_ROOT.parent / "shared" / "data"
TEST_FRACTION = 0.2
SPLIT_SEED = 42
SMOKE_FILES_PER_CLASS = 5
SMOKE_PATIENTS_PER_GRADE = 3
# Columns of the grades CSV written for the engine (the notebook's defaults plus the group).
FILENAME, GRADE, GROUP = "filename", "grade", "patient_id"
TASKS = {
    "classification": {"data": SHARED_DATA / "wbc_bccd_crops", "image_size": 64, "epochs": 80,
                       "metric": "balanced_accuracy", "validation": ("validation_balanced_accuracy",
                                                                     "validation_accuracy", "validation_macro_f1")},
    "grading": {"data": SHARED_DATA / "dr_srahim", "image_size": 128, "epochs": 25,
                "metric": "quadratic_kappa", "validation": ("validation_kappa", "validation_accuracy",
                                                            "validation_mean_absolute_error")},
}


# ---------------------------------------------------------------- held-out test split


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest whole number, halves up (Python's ``round`` rounds halves to even)."""
    return int(math.floor(value + 0.5))


def class_folders(data: pathlib.Path) -> pathlib.Path | None:
    """The folder holding one subfolder per class: ``data/BCCD_cropped`` or ``data`` itself; None if absent."""
    for candidate in (data / "BCCD_cropped", data):
        if candidate.is_dir() and any(path.is_dir() for path in candidate.iterdir()):
            return candidate
    return None


def split_class_files(folder: pathlib.Path, files_per_class: int | None) -> dict[str, list[tuple[str, pathlib.Path]]]:
    """{"train": [(class, file)], "test": [...]}: test = the last 20 % (half up) of each class's files by name.

    Args:
        folder: one subfolder per class.
        files_per_class: keep only each class's first files by name (smoke runs), or None for all.
    """
    from helpers import images

    chosen = {"train": [], "test": []}
    for class_folder in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
        files = sorted(images.list_images(class_folder), key=lambda path: path.name)[:files_per_class]
        test_count = round_half_up(TEST_FRACTION * len(files))
        chosen["train"] += [(class_folder.name, path) for path in files[:len(files) - test_count]]
        chosen["test"] += [(class_folder.name, path) for path in files[len(files) - test_count:]]
    return chosen


def link_class_files(pairs: list[tuple[str, pathlib.Path]], destination: pathlib.Path) -> pathlib.Path:
    """``destination/<class>/<file>`` symbolic links (the data folder is never written); returns ``destination``."""
    for class_name, path in pairs:
        link = destination / class_name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return destination


def read_grade_rows(labels_csv: pathlib.Path, columns: tuple[str, str, str]) -> list[dict]:
    """Rows ``{filename, grade (int), patient_id}`` of a grades CSV whose columns are ``columns``."""
    filename_column, grade_column, group_column = columns
    with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        return [{FILENAME: row[filename_column], GRADE: int(float(row[grade_column])), GROUP: row[group_column]}
                for row in csv.DictReader(handle)]


def smoke_patients(rows: list[dict]) -> list[dict]:
    """Rows of the first ``SMOKE_PATIENTS_PER_GRADE`` patients (by ID) of each worst grade."""
    worst = collections.defaultdict(int)
    for row in rows:
        worst[row[GROUP]] = max(worst[row[GROUP]], row[GRADE])
    kept, per_grade = set(), collections.Counter()
    for patient in sorted(worst):
        if per_grade[worst[patient]] < SMOKE_PATIENTS_PER_GRADE:
            kept.add(patient)
            per_grade[worst[patient]] += 1
    return [row for row in rows if row[GROUP] in kept]


def split_graded_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """{"train": rows, "test": rows}: the test part of the engine's grouped split (``test_fraction`` 0.2)."""
    from helpers import split as split_module

    split = split_module.split_dataset([row[FILENAME] for row in rows], [row[GRADE] for row in rows], 0.0,
                                       test_fraction=TEST_FRACTION, seed=SPLIT_SEED,
                                       groups=[row[GROUP] for row in rows], group_name=GROUP)
    test = set(split.test)
    return {"train": [row for row in rows if row[FILENAME] not in test],
            "test": [row for row in rows if row[FILENAME] in test]}


def link_graded_rows(rows: list[dict], images_dir: pathlib.Path,
                     destination: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``destination/images/`` (symbolic links) and ``destination/labels.csv`` (filename,grade,patient_id)."""
    folder = destination / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        (folder / row[FILENAME]).symlink_to((images_dir / row[FILENAME]).resolve())
    labels = destination / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[FILENAME, GRADE, GROUP])
        writer.writeheader()
        writer.writerows(rows)
    return folder, labels


# ---------------------------------------------------------------- data for each task


def source_data(arguments: argparse.Namespace, work: pathlib.Path) -> tuple[str, pathlib.Path, pathlib.Path | None]:
    """(description, images folder, labels CSV or None): the real set, or synthetic images for a smoke run.

    Raises:
        SystemExit: the real set is missing outside ``--smoke`` (a metric on synthetic images means nothing).
    """
    from helpers.classification import demo_data as classification_demo
    from helpers.grading import demo_data as grading_demo

    data = pathlib.Path(arguments.data)
    crops = class_folders(data) if arguments.task == "classification" else None
    if crops is not None:
        return f"real: {crops}", crops, None
    if arguments.task == "grading" and (data / "labels.csv").is_file():
        return f"real: {data}", data / "images", data / "labels.csv"
    if not arguments.smoke:
        raise SystemExit(f"{data}: the {arguments.task} set was not found. Pass --data with the folder "
                         f"(wbc_bccd_crops or dr_srahim layout, see the docstring).")
    print(f"{data}: not found; the smoke run uses synthetic images.", file=sys.stderr)
    if arguments.task == "classification":
        return "synthetic", classification_demo.make_classification_demo(work / "synthetic", 6, 48), None
    images_dir, labels = grading_demo.make_grading_demo(work / "synthetic", SMOKE_PATIENTS_PER_GRADE)
    return "synthetic", images_dir, labels


def prepare_data(arguments: argparse.Namespace, work: pathlib.Path) -> dict:
    """Link the training pool and the held-out test images under ``work``; their folders, CSVs and counts."""
    description, images_dir, labels_csv = source_data(arguments, work)
    synthetic = description == "synthetic"
    if arguments.task == "classification":
        pairs = split_class_files(images_dir, SMOKE_FILES_PER_CLASS if arguments.smoke else None)
        folders = {name: (link_class_files(pairs[name], work / name), "") for name in ("train", "test")}
        counts = {name: len(pairs[name]) for name in pairs}
    else:
        columns = (FILENAME, GRADE, GROUP) if synthetic else (arguments.filename_column, arguments.grade_column,
                                                              arguments.group_column)
        rows = read_grade_rows(labels_csv, columns)
        rows = smoke_patients(rows) if arguments.smoke and not synthetic else rows
        parts = split_graded_rows(rows)
        folders = {name: link_graded_rows(parts[name], images_dir, work / name) for name in ("train", "test")}
        counts = {name: len(parts[name]) for name in parts}
        counts["test_patients"] = len({row[GROUP] for row in parts["test"]})
    return {"description": description, "folders": folders, "counts": counts}


# ---------------------------------------------------------------- the run


def epoch_clock():
    """A Keras callback recording, after each epoch is saved, wall and CPU seconds since ``start()``."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        """``rows``: {epoch, elapsed_seconds, elapsed_cpu_seconds}; given after the engine's own callbacks."""

        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.wall = self.cpu = 0.0

        def start(self) -> None:
            """Start both clocks (just before training starts)."""
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"epoch": epoch + 1, "elapsed_seconds": round(time.perf_counter() - self.wall, 2),
                              "elapsed_cpu_seconds": round(time.process_time() - self.cpu, 2)})

    return EpochClock()


def open_session(arguments: argparse.Namespace, data: dict, output: pathlib.Path):
    """The notebook's section 1–3: config from the form values, run folder, data check and split, backbone."""
    from helpers.classification import workflow as classification_workflow
    from helpers.grading import workflow as grading_workflow

    (train_images, train_csv) = data["folders"]["train"]
    fields = dict(images_dir=str(train_images), labels_csv=str(train_csv), model_path=str(output), model_name="run",
                  backbone=arguments.backbone, pretrained="none", epochs=arguments.epochs, head_epochs=0,
                  image_size=arguments.image_size, batch_size=arguments.batch_size,
                  learning_rate=arguments.learning_rate, validation_fraction=arguments.validation_fraction,
                  split_seed=SPLIT_SEED, reduce_lr_patience=arguments.reduce_lr_patience,
                  early_stopping_patience=arguments.early_stopping_patience)
    if arguments.task == "grading":
        fields.update(filename_column=FILENAME, grade_column=GRADE, group_column=GROUP, head=arguments.head,
                      num_grades=5, referable_threshold=2)
        session = grading_workflow.start("quick", **fields)
    else:
        session = classification_workflow.start("quick", **fields)
    session.check_data()
    session.prepare_backbone()
    return session


def train(session, task: str, clock) -> None:
    """The training of section 4 as ``session.train()`` runs it (same engine call and callbacks), ``clock`` added."""
    from helpers.classification import train as classification_train
    from helpers.grading import train as grading_train

    config, run = session.config, session.run
    train_items = session.items_named(session.split.train)
    validation_items = session.items_named(session.split.validation)
    run.write_label_map(session.class_names())
    clock.start()
    if task == "grading":
        callbacks = (grading_train.GradingProgress(config.epochs),
                     classification_train.LivePlotCallback(run, grading_train.CURVE_PANELS), clock)
        session.training = grading_train.train_grader(config, run, train_items, validation_items, callbacks=callbacks)
    else:
        callbacks = (classification_train.ProgressCallback(config.epochs), classification_train.LivePlotCallback(run),
                     clock)
        session.training = classification_train.train_classifier(config, run, train_items, validation_items,
                                                                 session.class_names(), callbacks=callbacks)


def export_and_report(session, task: str) -> pathlib.Path:
    """The rest of section 4: export (plus ``grading.json`` for grading) and the training report PDF; its path."""
    from helpers.classification import predict
    from helpers.classification import reports as classification_reports
    from helpers.grading import train as grading_train
    from helpers.grading import reports as grading_reports

    if task == "grading":
        grading_train.export(session.training, session.config, session.run)
        grading_train.write_grading_file(session.run.root, session.config, session.training.thresholds)
        return grading_reports.training_report(session)
    predict.export_model(session.training.model, session.class_names(), session.run)
    return classification_reports.training_report(session)


def quality_control(task: str, output: pathlib.Path, data: dict) -> dict:
    """Section 5 on the held-out test images: ``helpers.qc`` figures as JSON (``qc/metrics.json``)."""
    from helpers.classification import workflow as classification_workflow
    from helpers.grading import workflow as grading_workflow

    test_images, test_csv = data["folders"]["test"]
    workflow = grading_workflow if task == "grading" else classification_workflow
    result = workflow.quality_control(str(output), "run", test_images=str(test_images), test_labels_csv=str(test_csv))
    return result.evaluation.to_json_dict()


def per_epoch(run, clock_rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
    """Per epoch: the clock's elapsed seconds with ``history.csv``'s epoch seconds and validation ``columns``."""
    from helpers import history

    rows = {row["epoch"]: row for row in history.read_history(run.history_path)}
    merged = []
    for clock_row in clock_rows:
        row = rows.get(clock_row["epoch"], {})
        merged.append({**clock_row, "epoch_seconds": round(row.get("epoch_seconds", math.nan), 2),
                       "train_loss": row.get("train_loss"), "learning_rate": row.get("learning_rate"),
                       **{column: row.get(column) for column in columns}})
    return merged


# ---------------------------------------------------------------- command line


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; task-dependent defaults (data, image size, epochs) filled in; ``--smoke`` shrinks the run."""
    from helpers.grading.config import HEADS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(TASKS), default="classification")
    parser.add_argument("--data", default=None, help="the data set folder (default: the task's set in ../shared/data)")
    parser.add_argument("--backbone", default="mobilenetv3small", help="a helpers.classification.backbones name")
    parser.add_argument("--epochs", type=int, default=None, help="default: 80 (classification), 25 (grading)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 64 (classification), 128 (grading)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="of the training pool (engine split)")
    parser.add_argument("--reduce-lr-patience", type=int, default=10)
    parser.add_argument("--early-stopping-patience", type=int, default=0, help="0 = train every epoch")
    parser.add_argument("--head", choices=HEADS, default="regression", help="grading only")
    parser.add_argument("--filename-column", default="image", help="grading CSV column of the file names")
    parser.add_argument("--grade-column", default="dr_grade", help="grading CSV column of the grades")
    parser.add_argument("--group-column", default="patient_id", help="grading CSV column of the patients")
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output" / "from_scratch"))
    parser.add_argument("--smoke", action="store_true", help="a handful of images, 1 epoch, 48 px, batch 4")
    arguments = parser.parse_args(argv)
    defaults = TASKS[arguments.task]
    arguments.backbone = arguments.backbone.lower()
    arguments.data = arguments.data or str(defaults["data"])
    arguments.epochs = arguments.epochs or defaults["epochs"]
    arguments.image_size = arguments.image_size or defaults["image_size"]
    if arguments.smoke:
        arguments.epochs, arguments.image_size, arguments.batch_size = 1, 48, 4
    return arguments


def result_record(arguments, session, data: dict, timings: dict, clock_rows: list[dict], test: dict) -> dict:
    """Everything ``result.json`` holds (see the module docstring)."""
    import keras
    import tensorflow as tf

    task = TASKS[arguments.task]
    training = session.training.result if arguments.task == "grading" else session.training
    metric = test[task["metric"]]
    minutes, cpu_minutes = timings["training_seconds"] / 60, timings["training_cpu_seconds"] / 60
    return {"benchmark": "from_scratch", "task": arguments.task, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": platform.platform(), "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "data": data["description"], "arguments": vars(arguments),
            "config": dataclasses.asdict(session.config),
            "images": {"train_pool": data["counts"]["train"], "train": len(session.split.train),
                       "validation": len(session.split.validation),
                       **{key: value for key, value in data["counts"].items() if key != "train"}},
            "epochs_completed": training.epochs_completed, "best_epoch": training.best_epoch,
            "stopped_early": training.stopped_early, **timings,
            "validation_kept": session.training.validation if arguments.task == "grading" else training.best_metrics,
            "test_metric_name": task["metric"], "test_metric": metric, "test_accuracy": test["accuracy"],
            "metric_per_minute": None if metric is None else round(metric / minutes, 4),
            "metric_per_cpu_minute": None if metric is None else round(metric / cpu_minutes, 4),
            "per_epoch": per_epoch(session.run, clock_rows, task["validation"]), "test": test}


def markdown_row(record: dict) -> str:
    """One Markdown table row (header printed above it)."""
    def number(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"

    head = record["config"].get("head", "—")
    images = record["images"]
    return ("| task | backbone | head | size | epochs (best) | train / val / test | training s (CPU s) | test "
            f"{record['test_metric_name']} | test accuracy | metric per minute | load avg |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {record['task']} | {record['config']['backbone']} | {head} | {record['config']['image_size']} | "
            f"{record['epochs_completed']} ({record['best_epoch']}) | {images['train']} / {images['validation']} / "
            f"{images['test']} | {record['training_seconds']:.0f} ({record['training_cpu_seconds']:.0f}) | "
            f"{number(record['test_metric'])} | {number(record['test_accuracy'])} | "
            f"{number(record['metric_per_minute'], 4)} | {record['load_average_start']:.1f}–"
            f"{record['load_average_end']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    """Link the data, run sections 1–5 of the notebook, write ``result.json`` and print the Markdown row."""
    arguments = parse_arguments(argv)
    name = "-".join([arguments.task, arguments.backbone] + ([arguments.head] if arguments.task == "grading" else [])
                    + [time.strftime("%Y%m%d-%H%M%S")] + (["smoke"] if arguments.smoke else []))
    output = pathlib.Path(arguments.output) / name
    load_start = os.getloadavg()[0]
    data = prepare_data(arguments, output / "data")
    session = open_session(arguments, data, output)
    clock = epoch_clock()
    train(session, arguments.task, clock)
    timings = {"training_seconds": round(time.perf_counter() - clock.wall, 1),
               "training_cpu_seconds": round(time.process_time() - clock.cpu, 1)}
    report = export_and_report(session, arguments.task)
    test = quality_control(arguments.task, output, data)
    timings.update(load_average_start=load_start, load_average_end=os.getloadavg()[0])
    record = result_record(arguments, session, data, timings, clock.rows, test)
    record.update(run_folder=str(session.run.root), training_report=str(report))
    (output / "result.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    print(f"Result: {output / 'result.json'}\n{markdown_row(record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
