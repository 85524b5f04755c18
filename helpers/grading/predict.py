"""Use a trained grader: reload it and grade a folder of images into ``predictions.csv``.

The exported model is the classification exporter's ``<run>/exported_model/classifier.keras``
(with ``label_map.json``: the grades "0".."K-1") plus ``grading.json`` (head, K, the regression
decision thresholds chosen on the validation images, and the preprocessing), so QC and
prediction decode exactly as validation did.

``predictions.csv`` has the columns ``filename,grade,score_0..score_<K-1>``: the file's path
relative to the folder given (POSIX separators), the predicted grade and the per-grade scores
(each row sums to 1; ``helpers.grading.ordinal`` says how each head's output becomes scores).
It is the input of ``python -m helpers.qc grading``.
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Sequence

import numpy as np

from helpers import errors, runs
from helpers.classification import predict as classification_predict
from helpers.grading import ordinal
from helpers.grading import train as grading_train
from helpers.grading.config import GradingConfig

SCORE_PREFIX = "score_"


def read_grading_file(run: runs.RunFolder) -> dict:
    """The run's ``exported_model/grading.json``; ModelError when the run holds no exported grader."""
    path = run.exported_model / grading_train.GRADING_FILE
    if not path.is_file():
        raise errors.ModelError(f"{run.root}: holds no exported grader yet. Finish training (section 4) first, or "
                                f"give the run folder of a trained grading model.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_grader(run: runs.RunFolder):
    """(Keras model, grading.json dict) of a run's exported grader."""
    # The grading layers and losses are registered with Keras when helpers.grading.model is imported
    # (through train, at the top of this module), so the saved model loads.
    settings = read_grading_file(run)
    model = classification_predict.load_run_model(run)[0]
    return model, settings


def config_for_loading(settings: dict) -> GradingConfig:
    """A config carrying only what image loading needs (size and preprocessing) from ``grading.json``."""
    return GradingConfig(image_size=settings["image_size"], crop_to_disc=settings["crop_to_disc"],
                         colour_normalisation=settings["colour_normalisation"])


def grade_paths(model, settings: dict, paths: Sequence[pathlib.Path], progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray, list[pathlib.Path], list[str]]:
    """(grades int [N], scores float [N, K], readable files, messages for unreadable files)."""
    outputs, kept, skipped = grading_train.predict_outputs(model, paths, config_for_loading(settings), progress=progress)
    grades, scores = ordinal.decode(settings["head"], outputs, settings["num_grades"], settings["thresholds"])
    return grades, scores, kept, skipped


def write_predictions_csv(path: pathlib.Path, filenames: Sequence[str], grades: np.ndarray,
                          scores: np.ndarray) -> pathlib.Path:
    """Write ``filename,grade,score_0..score_<K-1>`` (UTF-8), one row per image; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "grade"] + [f"{SCORE_PREFIX}{grade}" for grade in range(scores.shape[1])])
        for filename, grade, row in zip(filenames, grades, scores):
            writer.writerow([filename, int(grade)] + [f"{float(value):.6f}" for value in row])
    return path


class PredictionResult(classification_predict.PredictionResult):
    """Grades for a folder (fields as ``classification.predict.PredictionResult``; each row's ``grade`` is an int)."""

    LABEL_KEY = "grade"
    VERB = "graded"

    @staticmethod
    def label_text(value) -> str:
        return f"grade {value}"


def predict_folder(run_root: str | pathlib.Path, images_dir: str | pathlib.Path,
                   output_dir: str | pathlib.Path) -> PredictionResult:
    """Grade every image under ``images_dir`` (subfolders included) with the run's exported grader.

    Raises:
        DatasetError: no images in the folder. ModelError: no exported grader in the run.
    """
    run = runs.existing_run(run_root)
    images_dir, output_dir = pathlib.Path(images_dir), pathlib.Path(output_dir)
    model, settings = load_grader(run)
    paths = classification_predict.images_to_predict(images_dir)
    grades, scores, kept, skipped = grade_paths(model, settings, paths)
    filenames = [path.relative_to(images_dir).as_posix() for path in kept]
    csv_path = write_predictions_csv(output_dir / "predictions.csv", filenames, grades, scores)
    rows = [{"filename": name, "grade": int(grade), "score": float(row[grade]), "path": path}
            for name, grade, row, path in zip(filenames, grades, scores, kept)]
    return PredictionResult(images_dir, output_dir, csv_path, rows, skipped)
