"""A classifier as a BioImage Model Zoo package (section 5.3): its documentation, test tensors and portable weights.

``model_zoo_package`` gathers what ``helpers.model_zoo`` (the task-independent package writer and validator)
needs from a run folder: one real image and our own prediction for it as the test tensors, the QC numbers and
figures of ``<run>/qc/``, the training details of ``config.json``, and the model itself as a *portable copy*
(``portable_layer``): layers only DL4Cells defines are replaced by standard Keras layers that compute the same,
so Keras alone, bioimageio.core and bioimage.io's automatic test load the package. The grader's package
(``helpers.grading.model_zoo``) reuses these parts.
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Sequence

import numpy as np

from helpers import errors, runs
from helpers import model_zoo as shared_zoo
from helpers.classification import backbones, pipeline, predict
from helpers.classification import model as model_module

QC_FIGURES = ("confusion_matrix.png", "roc_curves.png")  # what a package attaches from <run>/qc/

# The paper of each keras.applications family (by constructor prefix) and the software every package cites.
BACKBONE_PAPERS = {
    "EfficientNetV2": ("Tan M, Le QV. EfficientNetV2: Smaller Models and Faster Training. ICML 2021.",
                       "10.48550/arXiv.2104.00298"),
    "EfficientNet": ("Tan M, Le QV. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. "
                     "ICML 2019.", "10.48550/arXiv.1905.11946"),
    "MobileNetV3": ("Howard A et al. Searching for MobileNetV3. ICCV 2019.", "10.48550/arXiv.1905.02244"),
    "ResNet": ("He K, Zhang X, Ren S, Sun J. Deep Residual Learning for Image Recognition. CVPR 2016.",
               "10.1109/CVPR.2016.90"),
}
ZERO_COST_CITATION = ("von Chamier L et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
                      "Nat Commun 12, 2276 (2021).", "10.1038/s41467-021-22518-0")


ZOO_TEST_CANDIDATES = 8  # images tried for the package's test tensors (shared_zoo.testable: a positive output)


def zoo_test_images(run: runs.RunFolder, images_dir: str, test_images: str = "") -> list[pathlib.Path]:
    """Real images of the run for the package's test tensors: the first ones QC scored, then validation and training.

    Args:
        images_dir: the run's training images folder (``config.images_dir``).
        test_images: the test folder QC used ("" = QC used the validation split under ``images_dir``).

    Returns:
        Up to ``ZOO_TEST_CANDIDATES`` existing files, in that order of preference.

    Raises:
        ModelError: no image of the run can be found (folders moved or not mounted).
    """
    from helpers import split as split_module

    candidates = []
    labels_csv = run.qc / "labels.csv"
    if labels_csv.is_file():
        with labels_csv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[:ZOO_TEST_CANDIDATES]
        candidates += [pathlib.Path(test_images or images_dir) / row["filename"] for row in rows]
    if run.split_path.is_file():
        split = split_module.load_split(run.split_path)
        keys = split.validation[:ZOO_TEST_CANDIDATES] + split.train[:ZOO_TEST_CANDIDATES]
        candidates += [pathlib.Path(images_dir) / key for key in keys]
    found = list(dict.fromkeys(path for path in candidates if path.is_file()))[:ZOO_TEST_CANDIDATES]
    if not found:
        looked = ", ".join(map(str, candidates[:2])) or "no QC labels or split.json"
        raise errors.ModelError(f"{run.root}: none of its images was found ({looked}). Connect the Drive that holds "
                                f"Training_images / Test_images, then run this cell again.")
    return found


def zoo_test_choice(outputs: np.ndarray, paths: Sequence[pathlib.Path]) -> int:
    """Index of the first image whose output bioimageio.spec accepts as a test output (``shared_zoo.testable``).

    Raises:
        ModelError: no candidate has an output of at least 1e-4 (e.g. a regression head that says 0 or less).
    """
    for index, row in enumerate(np.asarray(outputs)):
        if shared_zoo.testable(row):
            return index
    if not paths:
        raise errors.ModelError("Test_images: none of the run's images could be read for the package's test input. "
                                "Give Test_images with readable images, then run this cell again.")
    raise errors.ModelError(f"{paths[0].parent}: for {len(paths)} images the model's outputs are 0 or below; a "
                            f"BioImage Model Zoo test output needs a value of at least 1e-4. Train the model further, "
                            f"or give Test_images with other images, then run this cell again.")


def zoo_citations(backbone_constructor: str) -> list:
    """The backbone's paper, Keras, ZeroCostDL4Mic and DL4Cells (with its repository when the metadata names it)."""
    paper = next(value for prefix, value in BACKBONE_PAPERS.items() if backbone_constructor.startswith(prefix))
    citations = [shared_zoo.Citation(paper[0], doi=paper[1]),
                 shared_zoo.Citation("Chollet F et al. Keras 3 (keras.applications).", url="https://keras.io"),
                 shared_zoo.Citation(ZERO_COST_CITATION[0], doi=ZERO_COST_CITATION[1])]
    url = shared_zoo.project_url()
    if url:
        citations.append(shared_zoo.Citation("DL4Cells: form-driven deep-learning notebooks for cell and medical "
                                            "images (the notebooks and helpers that trained this model).", url=url))
    return citations


def zoo_training_text(config, run: runs.RunFolder, class_word: str = "class") -> str:
    """Markdown: the training data (folder name, images per split and class) and the settings that made the model."""
    from helpers import history
    from helpers import split as split_module

    lines = [f"- Images: the folder `{pathlib.PurePath(config.images_dir).name}`"
             + (f" with the labels of `{pathlib.PurePath(config.labels_csv).name}`" if config.labels_csv else "")
             + " (the user's own data; not published with this package)."]
    if run.split_path.is_file():
        split = split_module.load_split(run.split_path)
        lines.append(f"- Split (seed {split.seed}, stratified by {split.stratified_by}"
                     f"{', grouped by ' + split.grouped_by if split.grouped_by else ''}): {len(split.train)} training "
                     f"and {len(split.validation)} validation images.")
        for stratum, counts in sorted(split.stratum_counts.items()):
            lines.append(f"  - {class_word} `{stratum}`: {counts.get('train', 0)} training, "
                         f"{counts.get('validation', 0)} validation")
    start = ("ImageNet weights from keras.applications" if config.pretrained == "imagenet" and not config.continue_from
             else "an earlier DL4Cells model" if config.continue_from else "random weights (trained from scratch)")
    epochs = len(history.read_history(run.history_path))
    lines += [f"- Network: {backbones.get_backbone(config.backbone).constructor} started from {start}; "
              f"{epochs} epochs run (the epoch with the best validation score was kept), batch size "
              f"{config.batch_size}, optimiser {config.optimizer}, learning rates {config.learning_rate:g} "
              f"(head) and {config.fine_tune_learning_rate:g} (fine-tuning).",
              f"- Augmentation during training: {config.augmentation}"
              f"{', ' + config.mixing if config.mixing != 'none' else ''}; every setting is in "
              f"`config.dl4cells.settings` of rdf.yaml."]
    return "\n".join(lines)


def zoo_licence_text(config, licence: str) -> str:
    """Markdown: the package's licence and, honestly, the terms of the ImageNet weights the model started from."""
    text = (f"This package is shared under **{shared_zoo.licence_id(licence)}** (chosen by its authors). The "
            f"DL4Cells code that trained it is MIT-licensed; Keras and keras.applications are Apache-2.0.")
    if config.pretrained == "imagenet" or config.continue_from:
        text += (" The network started from keras.applications' ImageNet weights, which Keras publishes with its "
                 "Apache-2.0 licence; they were trained on ImageNet, whose images are licensed for non-commercial "
                 "research and education only. Whether such terms reach weights derived from them is not settled: "
                 "check before commercial use.")
    return text


def caffe_preprocessing_as_convolution(layer):
    """``model.CaffePreprocessing`` as a standard ``keras.layers.Conv2D(3, 1)`` computing the same: RGB→BGR, minus
    the ImageNet BGR means (float [batch, H, W, 3] in and out).

    The 1x1 kernel is the channel permutation (output channel c = input channel 2 - c, times 1; 0 elsewhere) and
    the bias the negated means: every product is exact, so the outputs equal the layer's within float rounding.
    """
    import keras

    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for channel in range(3):
        kernel[0, 0, 2 - channel, channel] = 1.0
    convolution = keras.layers.Conv2D(3, 1, name=layer.name, dtype=layer.dtype_policy)
    convolution.build((None, None, None, 3))
    convolution.set_weights([kernel, -np.asarray(model_module.CaffePreprocessing.MEANS_BGR, np.float32)])
    return convolution


def portable_layer(layer):
    """The standard Keras layer that replaces ``layer`` in the package's weights, or None to keep it
    (``shared_zoo.portable_model``): the classifier's only DL4Cells layer is ResNet50's ``CaffePreprocessing``."""
    if isinstance(layer, model_module.CaffePreprocessing):
        return caffe_preprocessing_as_convolution(layer)
    return None


def zoo_loading_text(model_file: str) -> str:
    """Markdown: how to run the package's ``.keras`` file in Python (Keras alone, or bioimageio.core)."""
    return (f"```python\nimport keras\nmodel = keras.saving.load_model(\"{model_file}\", compile=False)\n"
            f"outputs = model.predict(images)  # images: float32 [batch, S, S, 3], RGB 0..255\n```\n"
            "It contains only Keras layers: Keras 3 with the TensorFlow backend loads it alone, and "
            "bioimageio.core's `keras_v3` backend runs it (`bioimageio.core.test_model(<zip>)`).")


ZOO_LIMITATIONS = ("Trained on one lab's images: another stain, microscope, magnification or cell preparation can "
                   "lower its accuracy without warning. It always answers with one of its classes, also for an image "
                   "of none of them. Scores are not calibrated probabilities. Check it on labelled images of your own "
                   "(section 5 of the DL4Cells notebook) before relying on it.")
ZOO_OUT_OF_SCOPE = ("Not for diagnosis or any clinical decision. Not for images of other kinds than those it was "
                    "trained on, nor for images of several objects (use a detector first). Not validated beyond "
                    "the numbers in its documentation.")


def zoo_io_text(image_size: int, names: Sequence[str]) -> str:
    """Markdown: the input tensor and the output channels (in output order)."""
    return (f"- Input `image`: uint8 [batch, {image_size}, {image_size}, 3] (batch, y, x, RGB), values 0..255.\n"
            f"- Output: float32 [batch, {len(names)}], channels in this order: "
            + ", ".join(f"`{name}`" for name in names) + ".")


ZOO_READ_STEP = ("Read the image as 8-bit RGB: 8-bit files as they are (grey repeated to three channels, alpha "
                 "dropped); 16-bit or floating-point files stretched per image so that their 0.1th and 99.9th "
                 "percentiles become 0 and 255 (clipped).")
ZOO_DTYPE_STEP = ("Give the 0..255 values as float32 (`ensure_dtype` in rdf.yaml). No other scaling: the network "
                  "rescales and normalises inside itself (EfficientNet and MobileNetV3 layers; for ResNet50 RGB to "
                  "BGR minus the ImageNet means), so a tool must not scale to 0..1 or standardise.")


def zoo_resize_step(image_size: int) -> str:
    """The resize step of the preprocessing, in words."""
    return (f"Resize to {image_size}x{image_size} pixels (aspect ratio not kept; OpenCV area interpolation when "
            f"shrinking, bilinear when enlarging).")


def zoo_preprocessing_text(image_size: int) -> str:
    """Markdown: what must happen to an image before the model sees it (the steps ``load_resized`` takes)."""
    return shared_zoo.numbered_list([ZOO_READ_STEP, zoo_resize_step(image_size), ZOO_DTYPE_STEP])


def zoo_validation_text(metrics: dict | None, test_images: str) -> str:
    """Markdown: the QC numbers of ``qc/metrics.json`` (scikit-learn), where they were measured, and the figures."""
    if not metrics:
        return ("No quality control was run for this model yet: run section 5.1 of the notebook, then export "
                "again. To validate it on your own data, compare its answers with your labels on images it never saw.")
    where = ("a held-out test folder never used for training" if test_images else
             "the validation images (OPTIMISTIC: they chose the kept epoch; no separate test folder was given)")
    lines = [f"Measured with scikit-learn on {metrics['number_of_images']} images of {where}.", "",
             "| metric | value |", "|---|---|"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr"):
        if metrics.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]:.3f} |")
    lines += ["", "| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for name, row in metrics.get("per_class", {}).items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    lines += ["", "![Confusion matrix](confusion_matrix.png)", "",
              "To validate it on your own data, compare its answers with your labels on images it never saw."]
    return "\n".join(lines)


def zoo_common_fields(run: runs.RunFolder, config, portable, authors: str, licence: str, loss: str) -> dict:
    """The ``PackageContent`` fields a classifier and a grader share: authors, licence, weights (``portable``, the
    model's portable copy: ``shared_zoo.portable_model``), citations, QC figures, architecture and the training
    details of ``config``."""
    constructor = backbones.get_backbone(config.backbone).constructor
    return dict(
        authors=shared_zoo.authors_from_text(authors), licence=shared_zoo.licence_id(licence),
        model=portable, weights_name=model_module.MODEL_FILE_NAME, citations=zoo_citations(constructor),
        cover_figure=(shared_zoo.existing_files(run.qc, QC_FIGURES[:1]) or [None])[0],
        attachments=shared_zoo.existing_files(run.qc, QC_FIGURES), architecture=constructor,
        training={"training_epochs": float(config.epochs), "training_batch_size": float(config.batch_size),
                  "initial_learning_rate": float(config.learning_rate), "optimizer": config.optimizer,
                  "loss_function": loss, "regularization": f"dropout {config.dropout:g}, augmentation "
                  f"{config.augmentation}, mixing {config.mixing}"})


def read_qc_metrics(run: runs.RunFolder) -> dict | None:
    """The run's ``qc/metrics.json`` (section 5.1), or None before QC."""
    path = run.qc / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def model_zoo_package(run: runs.RunFolder, test_images: str = "", authors: str = "", licence: str = "MIT",
                      description: str = "") -> pathlib.Path:
    """Write and validate the run's BioImage Model Zoo package (``helpers.model_zoo``); returns the zip's path.

    The test tensors are one real image of the run (``zoo_test_images``) resized as ``load_resized`` does
    and the probabilities ``predict.predict_paths`` gives for it with the run's own model; the weights are its
    portable copy (``portable_layer``), which ``shared_zoo.write_package`` checks reproduces them. QC figures and
    numbers come from ``<run>/qc/``. The run's own ``.keras`` is only read.

    Raises:
        ModelError: the run holds no exported classifier, or none of its images is found.
    """
    from helpers import config as config_module
    from helpers.classification.config import ClassificationConfig

    config = config_module.load_config(ClassificationConfig, run.config_path)
    model, classes, image_size = predict.load_run_model(run)
    paths = zoo_test_images(run, config.images_dir, test_images)
    outputs, paths, _ = predict.predict_paths(model, paths, image_size, progress=False)
    chosen = zoo_test_choice(outputs, paths)
    image_path, probabilities = paths[chosen], outputs[chosen:chosen + 1]
    predicted = int(np.argmax(probabilities[0]))
    metrics = read_qc_metrics(run)
    description = shared_zoo.description_text(description, f"Classifies an image of one object (e.g. a cell) into "
                                              f"{len(classes)} classes: {', '.join(classes)}.")
    documentation = shared_zoo.documentation(
        f"{run.root.name}: a DL4Cells image classifier", description,
        [("Inputs and outputs", zoo_io_text(image_size, classes)),
         ("Preprocessing", zoo_preprocessing_text(image_size)),
         ("Training data and training", zoo_training_text(config, run)),
         ("Validation", zoo_validation_text(metrics, test_images)),
         ("Limitations", ZOO_LIMITATIONS),
         ("Use it in Python", zoo_loading_text(model_module.MODEL_FILE_NAME)),
         ("Licence", zoo_licence_text(config, licence))])
    common = zoo_common_fields(run, config, shared_zoo.portable_model(model, portable_layer), authors, licence,
                               "categorical cross-entropy")
    common["training"]["training_preprocessing"] = zoo_preprocessing_text(image_size)
    content = shared_zoo.PackageContent(
        name=f"DL4Cells classifier {run.root.name}", description=description,
        test_input=pipeline.load_resized(image_path, image_size)[np.newaxis], test_output=probabilities[:1],
        output_id="probabilities", output_channels=list(classes),
        input_description=f"RGB image, {image_size}x{image_size} pixels, values 0..255 (8-bit).",
        output_description="Probability of each class (softmax; the channels sum to 1), in class order.",
        documentation=documentation, cover_caption=f"predicted: {classes[predicted]} ({probabilities[0][predicted]:.2f})",
        tags=["classification", "image-classification", "keras", "dl4cells", "2d"], task="classification",
        limits={"limitations": ZOO_LIMITATIONS, "out_of_scope_use": ZOO_OUT_OF_SCOPE},
        extra_config={"classes": list(classes), "quality_control": metrics,
                      "settings": shared_zoo.public_settings(config_module.config_to_dict(config))},
        **common)
    return shared_zoo.write_package(content, shared_zoo.package_path(run.root, run.root.name))
