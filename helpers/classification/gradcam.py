"""Grad-CAM (Selvaraju et al. 2017): which parts of an image drove the classifier's decision.

The gradient of the chosen class's score with respect to the last feature map (the input of
``head_pooling``) is averaged per channel; the channels, weighted by it, are summed and rectified
into a coarse heat map, which is resized to the image and laid over it.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from helpers.classification import model as model_module
from helpers.classification import pipeline, plots


def gradcam_map(model: keras.Model, image: np.ndarray, target: Callable) -> tuple[np.ndarray, np.ndarray]:
    """The Grad-CAM heat map of any score computed from the model's output (a class, or a grade: ``helpers.grading``).

    Args:
        model: a model with a ``head_pooling`` layer (``model.build_classifier``, ``grading.model``).
        image: uint8 or float [S, S, 3] RGB 0..255 at the model's input size.
        target: ``outputs [1, ...] -> score [1]`` on tensors: the score to explain (red = raised it).

    Returns:
        (heat map float32 [h, w] in 0..1 at feature-map resolution, the model's outputs float32 [...] for the image).
    """
    explainer = keras.Model(model.inputs, [model_module.feature_map_tensor(model), model.output])
    batch = tf.convert_to_tensor(np.asarray(image, dtype=np.float32)[None])
    with tf.GradientTape() as tape:
        features, outputs = explainer(batch, training=False)
        score = target(outputs)
    gradients = tape.gradient(score, features)
    channel_weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(0, 1, 2))
    heatmap = tf.nn.relu(tf.reduce_sum(tf.cast(features[0], tf.float32) * channel_weights, axis=-1)).numpy()
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else heatmap).astype(np.float32), np.asarray(outputs[0], dtype=np.float32)


def gradcam_heatmap(model: keras.Model, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int, float]:
    """The Grad-CAM heat map of one image for a class's probability.

    Args:
        model: a classifier from ``model.build_classifier`` (or reloaded from ``.keras``).
        image: uint8 or float [S, S, 3] RGB 0..255 at the model's input size.
        class_index: the class to explain; None = the predicted class.

    Returns:
        (heat map float32 [h, w] in 0..1 at feature-map resolution, class index explained, its probability).
    """
    def class_probability(probabilities):
        chosen = tf.argmax(probabilities, axis=-1) if class_index is None else tf.constant([int(class_index)])
        return tf.gather(probabilities, chosen, axis=1, batch_dims=1)

    heatmap, probabilities = gradcam_map(model, image, class_probability)
    chosen = int(np.argmax(probabilities)) if class_index is None else int(class_index)
    return heatmap, chosen, float(probabilities[chosen])


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """uint8 [S, S, 3]: the image with the heat map (resized to it, 'jet' colours) blended on top."""
    import cv2

    resized = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(255 * np.clip(resized, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    return np.clip((1 - opacity) * image.astype(np.float32) + opacity * coloured, 0, 255).astype(np.uint8)


def gradcam_figure(model: keras.Model, image_path: str | pathlib.Path, class_names: Sequence[str],
                   output_path: str | pathlib.Path, true_label: str | None = None,
                   class_index: int | None = None) -> pathlib.Path:
    """Save a PNG: the image as the model saw it | its Grad-CAM overlay, titled with the class explained.

    Args:
        model: the classifier; its input size S is read from the model.
        image_path: the image file.
        class_names: names in model output order.
        output_path: the PNG to write.
        true_label: shown in the title when known.
        class_index: the class to explain; None = the predicted one.
    """
    image = pipeline.load_resized(image_path, int(model.input.shape[1]))
    heatmap, chosen, probability = gradcam_heatmap(model, image, class_index)
    truth = f"true: {true_label}" if true_label else pathlib.Path(image_path).name
    return plots.side_by_side([image, overlay(image, heatmap)],
                              [truth, f"Grad-CAM for {class_names[chosen]} ({probability:.2f})"],
                              pathlib.Path(output_path))
