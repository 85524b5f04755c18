"""The grader as a ``helpers.prediction_jobs.TaskPredictor``: prediction on Dask workers, resumable.

Rows are those of ``predict.write_predictions_csv`` (``grade`` then ``score_0..score_<K-1>`` at 6 decimals), decoded
with the thresholds and preprocessing of the run's ``grading.json`` exactly as ``predict.grade_paths`` does, so the
merged ``predictions.csv`` equals the single-process one. Module-level functions: they pickle by reference.
"""

from __future__ import annotations

import functools
import pathlib

from helpers import prediction_jobs, runs


def load(run_root: str):
    """(Keras model, grading.json dict) of the run's exported grader (once per worker process)."""
    from helpers.grading import predict

    return predict.load_grader(runs.existing_run(run_root))


def predict_images(loaded, paths: list[pathlib.Path]) -> list:
    """Per path: ``[row]`` or the message saying why it could not be read (``TaskPredictor.predict``)."""
    from helpers.grading import predict

    model, settings = loaded
    grades, scores, kept, skipped = predict.grade_paths(model, settings, paths, progress=False)
    rows = [[int(grade)] + [f"{float(value):.6f}" for value in row] for grade, row in zip(grades, scores)]
    return prediction_jobs.outcomes_in_order(paths, kept, rows, skipped)


def job_predictor(run: runs.RunFolder) -> prediction_jobs.TaskPredictor:
    """The ``TaskPredictor`` of a run with an exported grader."""
    from helpers.classification import model as model_module
    from helpers.grading import predict

    settings = predict.read_grading_file(run)
    header = ("filename", "grade", *(f"{predict.SCORE_PREFIX}{grade}" for grade in range(settings["num_grades"])))
    key = prediction_jobs.model_key(run.root, run.exported_model / model_module.MODEL_FILE_NAME)
    return prediction_jobs.TaskPredictor(key, functools.partial(load, str(run.root)), predict_images, header,
                                         recursive=True)
