"""A grader as a BioImage Model Zoo package (section 5.3): what differs from a classifier's package.

The test input is one real image after the run's fundus preprocessing (crop, colour normalisation: outside the
model), the test output the head's raw output; the documentation gives the grading metrics and the head's meaning.
The weights are a portable copy of the model (``portable_layer``): the cumulative (CORAL) head's
``CumulativeBiases`` becomes a standard ``Dense`` layer, ResNet50's preprocessing a standard ``Conv2D``
(``helpers.classification.model_zoo``, whose other parts are reused here).
"""

from __future__ import annotations

import pathlib

import numpy as np

from helpers import model_zoo as shared_zoo
from helpers import runs
from helpers.classification import model as classification_model
from helpers.classification import model_zoo as classification_zoo
from helpers.grading import model as grading_model
from helpers.grading import ordinal, predict, preprocessing
from helpers.grading import train as grading_train
from helpers.grading.config import GradingConfig

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


def cumulative_biases_as_dense(layer):
    """``grading.model.CumulativeBiases`` (sigmoid(score + b_k), float [batch, 1] -> [batch, K-1]) as a standard
    ``keras.layers.Dense(K-1, activation="sigmoid")``: a kernel of ones (score * 1 is exact) and the learned biases."""
    import keras

    biases = np.asarray(layer.get_weights()[0], np.float32)
    dense = keras.layers.Dense(layer.thresholds, activation="sigmoid", name=layer.name, dtype=layer.dtype_policy)
    dense.build((None, 1))
    dense.set_weights([np.ones((1, layer.thresholds), np.float32), biases])
    return dense


def portable_layer(layer):
    """The standard Keras layer that replaces ``layer`` in the package's weights, or None to keep it: the cumulative
    head's ``CumulativeBiases``, and the classifier's replacements (``classification_zoo.portable_layer``)."""
    if isinstance(layer, grading_model.CumulativeBiases):
        return cumulative_biases_as_dense(layer)
    return classification_zoo.portable_layer(layer)


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
    steps = [classification_zoo.ZOO_READ_STEP]
    if settings["crop_to_disc"]:
        steps.append(f"Crop to the bright retina disc (rows and columns where more than "
                     f"{preprocessing.MINIMUM_DISC_SHARE:.0%} of the pixels are brighter than "
                     f"{preprocessing.DISC_THRESHOLD:.0%} of the 99th-percentile brightness), padded with black to a "
                     f"square.")
    steps.append(classification_zoo.zoo_resize_step(settings["image_size"]))
    if settings["colour_normalisation"]:
        sigma = max(1.0, settings["image_size"] / 2 * preprocessing.SIGMA_PER_RADIUS)  # local_colour_normalisation's
        steps.append(f"Local colour normalisation (Graham 2015): clip(4 * image - 4 * GaussianBlur(image, sigma) "
                     f"+ 128) with sigma {sigma:g} px (the disc radius / 30), as 8-bit.")
    steps.append(classification_zoo.ZOO_DTYPE_STEP)
    outside = ("\n\nThe crop and the colour normalisation are not part of the model: the package's test input is an "
               "image after them (as `helpers.grading.preprocessing.load_preprocessed` gives it)."
               if settings["crop_to_disc"] or settings["colour_normalisation"] else "")
    return shared_zoo.numbered_list(steps) + outside


def zoo_validation_text(metrics: dict | None, test_images: str) -> str:
    """Markdown: the QC numbers of ``qc/metrics.json`` (scikit-learn) and where they were measured."""
    if not metrics:
        return classification_zoo.zoo_validation_text(None, test_images)
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
    output is the head's raw output for it from the run's own model (our own prediction code); the weights are its
    portable copy (``portable_layer``). The run's own ``.keras`` is only read.

    Raises:
        ModelError: the run holds no exported grader, or none of its images is found.
    """
    from helpers import config as config_module

    config = config_module.load_config(GradingConfig, run.config_path)
    model, settings = predict.load_grader(run)
    loading = predict.config_for_loading(settings)
    paths = classification_zoo.zoo_test_images(run, config.images_dir, test_images)
    outputs, paths, _ = grading_train.predict_outputs(model, paths, loading, progress=False)
    chosen = classification_zoo.zoo_test_choice(outputs, paths)
    image_path, outputs = paths[chosen], outputs[chosen:chosen + 1]
    grades, scores = ordinal.decode(settings["head"], outputs, settings["num_grades"], settings["thresholds"])
    output_id, channels, output_description = zoo_outputs(settings)
    metrics = classification_zoo.read_qc_metrics(run)
    description = shared_zoo.description_text(description, f"Grades an image on an ordinal scale of "
                                              f"{settings['num_grades']} grades (0..{settings['num_grades'] - 1}) "
                                              f"with a {settings['head']} head.")
    documentation = shared_zoo.documentation(
        f"{run.root.name}: a DL4Cells ordinal grader", description,
        [("Inputs and outputs", classification_zoo.zoo_io_text(settings["image_size"], channels)
          + f"\n\n{output_description}"),
         ("Preprocessing", zoo_preprocessing_text(settings)),
         ("Training data and training", classification_zoo.zoo_training_text(config, run, "grade")),
         ("Validation", zoo_validation_text(metrics, test_images)),
         ("Limitations", GRADING_LIMITATIONS),
         ("Use it in Python", classification_zoo.zoo_loading_text(classification_model.MODEL_FILE_NAME)),
         ("Licence", classification_zoo.zoo_licence_text(config, licence))])
    loss = {"softmax": "categorical cross-entropy", "cumulative": "CORAL cumulative binary cross-entropy",
            "regression": "squared error to the grade"}[settings["head"]]
    common = classification_zoo.zoo_common_fields(run, config, shared_zoo.portable_model(model, portable_layer),
                                                  authors, licence, loss)
    common["training"]["training_preprocessing"] = zoo_preprocessing_text(settings)
    if settings["head"] == "cumulative":
        common["citations"].append(shared_zoo.Citation(CORAL_CITATION[0], doi=CORAL_CITATION[1]))
    if settings["colour_normalisation"]:
        common["citations"].append(shared_zoo.Citation(GRAHAM_CITATION[0], url=GRAHAM_CITATION[1]))
    content = shared_zoo.PackageContent(
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
                      "settings": shared_zoo.public_settings(config_module.config_to_dict(config))},
        **common)
    return shared_zoo.write_package(content, shared_zoo.package_path(run.root, run.root.name))
