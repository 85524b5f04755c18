"""Grad-CAM for graders: which parts of an image raised the grade the model gave it.

A grader has no single class probability to explain, and its three heads output different things
(``helpers.grading.model``). The score explained here is the same for all three: the **expected
grade** E[grade], in grades,

* ``regression``: the output itself (the grade as a real number, before the decision thresholds);
* ``cumulative``: sum_k P(grade > k) over the K-1 outputs, which equals E[grade] when they are
  ordered, as CORAL's shared weight vector makes them;
* ``softmax``: sum_k k·P(grade = k).

So red areas in the map are those whose features pushed the grade **up** (towards more severe
disease); an image whose features all lower the grade gets an empty (all-zero) map. The heat map
itself comes from ``helpers.classification.gradcam.gradcam_map`` (gradients of this score on the
last feature map, averaged per channel).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import keras
import numpy as np

from helpers.classification import gradcam as classification_gradcam
from helpers.classification import plots
from helpers.grading import train as grading_train
from helpers.grading import predict as predict_module

CAPTION = "Grad-CAM of the expected grade (red = raised it)"


def expected_grade(head: str, outputs):
    """E[grade] float [batch] from a head's outputs float [batch, K | K-1 | 1] (tensors or arrays; module docstring)."""
    if head == "regression":
        return outputs[:, 0]
    if head == "cumulative":
        return keras.ops.sum(outputs, axis=-1)
    grades = keras.ops.arange(outputs.shape[-1], dtype="float32")
    return keras.ops.sum(keras.ops.cast(outputs, "float32") * grades, axis=-1)


def gradcam_heatmap(model, image: np.ndarray, head: str) -> tuple[np.ndarray, float]:
    """(heat map float32 [h, w] in 0..1 at feature-map resolution, expected grade) of one image.

    Args:
        model: a grader from ``grading_model.build_grading_model`` (or reloaded).
        image: uint8 or float [S, S, 3] RGB 0..255, preprocessed as the model was trained.
        head: the model's head ("regression", "cumulative" or "softmax").
    """
    heatmap, outputs = classification_gradcam.gradcam_map(model, image, lambda batch: expected_grade(head, batch))
    return heatmap, float(keras.ops.convert_to_numpy(expected_grade(head, outputs[None]))[0])


@dataclasses.dataclass
class ExplainedImage:
    """One QC image as the browser shows it.

    Attributes:
        key: the image's file name (as in qc/labels.csv).
        true_grade, predicted_grade: int grades 0..K-1.
        score: the predicted grade's score (0..1).
        expected: the expected grade the Grad-CAM explains (grades; module docstring).
        image: uint8 [S, S, 3] as the network sees it (cropped, resized, colour-normalised).
        heatmap: float32 [h, w] in 0..1 at feature-map resolution.
    """

    key: str
    true_grade: int
    predicted_grade: int
    score: float
    expected: float
    image: np.ndarray
    heatmap: np.ndarray


def explain(result: Any, key: str) -> ExplainedImage:
    """The image ``key`` of a QC result (``quality.QualityResult``) with its grades and Grad-CAM."""
    settings = result.settings
    size = int(settings["image_size"])
    image = grading_train.image_loader(predict_module.config_for_loading(settings))(result.items[key].path, size)
    heatmap, expected = gradcam_heatmap(result.model, image, settings["head"])
    predicted = int(result.grades[key])
    return ExplainedImage(key, int(result.items[key].label), predicted, float(result.scores[key][predicted]),
                          expected, image, heatmap)


def gradcam_figure(result: Any, key: str, output_path: str | pathlib.Path) -> pathlib.Path:
    """Save a PNG: the image as the network saw it | its Grad-CAM overlay (captioned ``CAPTION``)."""
    explained = explain(result, key)
    return plots.side_by_side(
        [explained.image, classification_gradcam.overlay(explained.image, explained.heatmap)],
        [f"true grade {explained.true_grade}, predicted {explained.predicted_grade}",
         f"{CAPTION}: {explained.expected:.2f}"], pathlib.Path(output_path))
