"""The classifier as a ``helpers.prediction_jobs.TaskPredictor``: prediction on Dask workers, resumable.

Rows are those of ``predict.write_predictions_csv`` (``label`` then ``score_<class>...`` at 6 decimals), so
the merged ``predictions.csv`` equals the single-process one. The functions are module-level so that the
predictor pickles to worker processes by reference.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Sequence

import numpy as np

from helpers import prediction_jobs, runs


def load(run_root: str):
    """(model, class names, input size) of the run's exported classifier (once per worker process)."""
    from helpers.classification import predict

    return predict.load_run_model(runs.existing_run(run_root))


def probability_row(classes: Sequence[str], probabilities: np.ndarray) -> list[str]:
    """``[label, score_<class>...]`` of one image, written as ``predictions.csv`` writes it."""
    return [classes[int(np.argmax(probabilities))]] + [f"{float(value):.6f}" for value in probabilities]


def predict_images(loaded, paths: list[pathlib.Path]) -> list:
    """Per path: ``[row]`` or the message saying why it could not be read (``TaskPredictor.predict``)."""
    from helpers.classification import predict

    model, classes, image_size = loaded
    probabilities, kept, skipped = predict.predict_paths(model, paths, image_size, batch_size=max(1, len(paths)),
                                                         progress=False)
    rows = [probability_row(classes, row) for row in probabilities]
    return prediction_jobs.outcomes_in_order(paths, kept, rows, skipped)


def classes_of(run: runs.RunFolder) -> list[str]:
    """Class names in output order, read from the exported label map (without loading the model)."""
    label_map = run.exported_model / "label_map.json"
    return json.loads(label_map.read_text(encoding="utf-8"))["classes"] if label_map.is_file() else run.read_label_map()


def job_predictor(run: runs.RunFolder) -> prediction_jobs.TaskPredictor:
    """The ``TaskPredictor`` of a run with an exported classifier (``predict.load_run_model`` checks it exists)."""
    from helpers.classification import model as model_module
    from helpers.classification import predict

    model_file = run.exported_model / model_module.MODEL_FILE_NAME
    header = ("filename", "label", *(predict.SCORE_PREFIX + name for name in classes_of(run)))
    return prediction_jobs.TaskPredictor(prediction_jobs.model_key(run.root, model_file),
                                         functools.partial(load, str(run.root)), predict_images, header, recursive=True)
