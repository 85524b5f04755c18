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
from helpers.classification import model as classification_model
from helpers.classification import predict as classification_predict
from helpers.grading import ordinal, preprocessing
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


# ---------------------------------------------------------------- BioImage Model Zoo package (section 5.3)

GRADING_LIMITATIONS = ("Trained on one collection of graded images: another camera, field of view, population or "
                       "grading protocol can lower its agreement without warning. It always answers with a grade, "
                       "also for an image that is not gradable. Scores are not calibrated probabilities. Check it "
                       "on graded images of your own (section 5 of the DL4Cells notebook) before relying on it.")
GRADING_OUT_OF_SCOPE = ("Not a medical device: not for diagnosis, screening or any clinical decision. Not for other "
                        "kinds of images than those it was trained on. Not validated beyond the numbers in its "
                        "documentation.")
CORAL_CITATION = ("Cao W, Mirjalili V, Raschka S. Rank consistent ordinal regression for neural networks with "
                  "application to age estimation. Pattern Recognition Letters 140, 325-331 (2020).",
                  "10.1016/j.patrec.2020.11.008")
GRAHAM_CITATION = ("Graham B. Kaggle Diabetic Retinopathy Detection competition report (local colour "
                   "normalisation), 2015.", "https://www.kaggle.com/c/diabetic-retinopathy-detection")


def zoo_outputs(settings: dict) -> tuple[str, list[str], str]:
    """(output id, channel names, description) of a grader's raw output, per head (``grading.json``)."""
    grades = settings["num_grades"]
    if settings["head"] == "softmax":
        return ("grade_probabilities", [f"grade_{grade}" for grade in range(grades)],
                "Probability of each grade 0..K-1 (softmax); the predicted grade is the most probable one.")
    if settings["head"] == "cumulative":
        return ("cumulative_probabilities", [f"grade_above_{grade}" for grade in range(grades - 1)],
                "P(grade > k) for k = 0..K-2 (CORAL); the predicted grade is the number of them above 0.5.")
    return ("grade_value", ["grade"], "The grade as a real number; the predicted grade is the number of thresholds "
            "(config.dl4cells.grading) it reaches.")


def zoo_preprocessing_text(settings: dict) -> str:
    """Markdown: the preprocessing of ``grading.json`` (``preprocessing.preprocess``); crop and colour normalisation
    happen outside the model."""
    from helpers import model_zoo

    steps = [classification_predict.ZOO_READ_STEP]
    if settings["crop_to_disc"]:
        steps.append(f"Crop to the bright retina disc (rows and columns where more than "
                     f"{preprocessing.MINIMUM_DISC_SHARE:.0%} of the pixels are brighter than "
                     f"{preprocessing.DISC_THRESHOLD:.0%} of the 99th-percentile brightness), padded with black to a "
                     f"square.")
    steps.append(classification_predict.zoo_resize_step(settings["image_size"]))
    if settings["colour_normalisation"]:
        sigma = max(1.0, settings["image_size"] / 2 * preprocessing.SIGMA_PER_RADIUS)  # local_colour_normalisation's
        steps.append(f"Local colour normalisation (Graham 2015): clip(4 * image - 4 * GaussianBlur(image, sigma) "
                     f"+ 128) with sigma {sigma:g} px (the disc radius / 30), as 8-bit.")
    steps.append(classification_predict.ZOO_DTYPE_STEP)
    outside = ("\n\nThe crop and the colour normalisation are not part of the model: the package's test input is an "
               "image after them (as `helpers.grading.preprocessing.load_preprocessed` gives it)."
               if settings["crop_to_disc"] or settings["colour_normalisation"] else "")
    return model_zoo.numbered_list(steps) + outside


def zoo_validation_text(metrics: dict | None, test_images: str) -> str:
    """Markdown: the QC numbers of ``qc/metrics.json`` (scikit-learn) and where they were measured."""
    if not metrics:
        return classification_predict.zoo_validation_text(None, test_images)
    where = ("a held-out test folder never used for training" if test_images else "the validation images "
             "(OPTIMISTIC: they chose the kept epoch and the thresholds; no separate test folder was given)")
    referable = metrics.get("referable") or {}
    rows = [("quadratic weighted kappa", metrics.get("quadratic_kappa")), ("linear kappa", metrics.get("linear_kappa")),
            ("exact accuracy", metrics.get("accuracy")),
            ("mean absolute error (grades)", metrics.get("mean_absolute_error")),
            (f"referable (grade >= {referable.get('threshold')}) sensitivity", referable.get("sensitivity")),
            ("referable specificity", referable.get("specificity")), ("referable ROC AUC", referable.get("roc_auc"))]
    lines = [f"Measured with scikit-learn on {metrics['number_of_images']} images of {where}.", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in rows if value is not None]
    lines += ["", "![Confusion matrix](confusion_matrix.png)", "",
              "To validate it on your own data, compare its grades with your graders' on images it never saw."]
    return "\n".join(lines)


def model_zoo_package(run: runs.RunFolder, test_images: str = "", authors: str = "", licence: str = "MIT",
                      description: str = "") -> pathlib.Path:
    """Write and validate the run's grader as a BioImage Model Zoo package; returns the zip's path.

    The test input is one real image of the run after the fundus preprocessing of ``grading.json``; the test
    output is the head's raw output for it from ``grade_paths`` (our own prediction code).

    Raises:
        ModelError: the run holds no exported grader, or none of its images is found.
    """
    from helpers import config as config_module
    from helpers import model_zoo

    config = config_module.load_config(GradingConfig, run.config_path)
    model, settings = load_grader(run)
    loading = config_for_loading(settings)
    paths = classification_predict.zoo_test_images(run, config.images_dir, test_images)
    outputs, paths, _ = grading_train.predict_outputs(model, paths, loading, progress=False)
    chosen = classification_predict.zoo_test_choice(outputs, paths)
    image_path, outputs = paths[chosen], outputs[chosen:chosen + 1]
    grades, scores = ordinal.decode(settings["head"], outputs, settings["num_grades"], settings["thresholds"])
    output_id, channels, output_description = zoo_outputs(settings)
    metrics = classification_predict.read_qc_metrics(run)
    description = model_zoo.description_text(description, f"Grades an image on an ordinal scale of "
                                             f"{settings['num_grades']} grades (0..{settings['num_grades'] - 1}) "
                                             f"with a {settings['head']} head.")
    documentation = model_zoo.documentation(
        f"{run.root.name}: a DL4Cells ordinal grader", description,
        [("Inputs and outputs", classification_predict.zoo_io_text(settings["image_size"], channels)
          + f"\n\n{output_description}"),
         ("Preprocessing", zoo_preprocessing_text(settings)),
         ("Training data and training", classification_predict.zoo_training_text(config, run, "grade")),
         ("Validation", zoo_validation_text(metrics, test_images)),
         ("Limitations", GRADING_LIMITATIONS),
         ("Use it in Python", classification_predict.zoo_loading_text(model, classification_model.MODEL_FILE_NAME)),
         ("Licence", classification_predict.zoo_licence_text(config, licence))])
    common = classification_predict.zoo_common_fields(run, config, model, authors, licence,
                                                      {"softmax": "categorical cross-entropy",
                                                       "cumulative": "CORAL cumulative binary cross-entropy",
                                                       "regression": "squared error to the grade"}[settings["head"]])
    common["training"]["training_preprocessing"] = zoo_preprocessing_text(settings)
    if settings["head"] == "cumulative":
        common["citations"].append(model_zoo.Citation(CORAL_CITATION[0], doi=CORAL_CITATION[1]))
    if settings["colour_normalisation"]:
        common["citations"].append(model_zoo.Citation(GRAHAM_CITATION[0], url=GRAHAM_CITATION[1]))
    content = model_zoo.PackageContent(
        name=f"DL4Cells grader {run.root.name}", description=description,
        test_input=grading_train.image_loader(loading)(image_path, settings["image_size"])[np.newaxis],
        test_output=np.asarray(outputs[:1], dtype=np.float32), output_id=output_id, output_channels=channels,
        input_description=(f"RGB image, {settings['image_size']}x{settings['image_size']} pixels, values 0..255 "
                           f"(8-bit), after the preprocessing in the documentation."),
        output_description=output_description, documentation=documentation,
        cover_caption=f"predicted: grade {int(grades[0])} ({scores[0][int(grades[0])]:.2f})",
        tags=["classification", "ordinal-regression", "grading", "keras", "dl4cells", "2d"], task="classification",
        limits={"limitations": GRADING_LIMITATIONS, "out_of_scope_use": GRADING_OUT_OF_SCOPE},
        extra_config={"grading": settings, "quality_control": metrics,
                      "settings": model_zoo.public_settings(config_module.config_to_dict(config))},
        **common)
    classification_predict.zoo_custom_layer_note(model)
    return model_zoo.write_package(content, model_zoo.package_path(run.root, run.root.name))
