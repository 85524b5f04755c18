"""Run a trained RetinaNet on images and get boxes in the original image's pixels.

Images are prepared exactly as Model Garden's RetinaNet evaluation parser prepares them
(``official.vision.dataloaders.retinanet_input.Parser._parse_eval_data``): normalised with the
ImageNet mean and standard deviation, resized keeping the aspect ratio so the longer side is
``image_size``, and padded at the bottom/right to ``image_size`` x ``image_size``. The model
returns boxes ``(ymin, xmin, ymax, xmax)`` in the pixels of that resized image; ``detect``
undoes the resize with ``image_info`` and returns ``(xmin, ymin, xmax, ymax)`` in the pixels of
the image as read from disk.
"""

from __future__ import annotations

import pathlib
import weakref
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

# One compiled prediction function per model (compiling per call would cost seconds each time).
_PREDICT_FUNCTIONS: "weakref.WeakKeyDictionary[tf_keras.Model, object]" = weakref.WeakKeyDictionary()
# Model Garden's RetinaNet levels go up to 7, so the padded size is a multiple of 2**7.
MAX_LEVEL_STRIDE = 2**7


def preprocess(image_rgb_uint8: np.ndarray, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Prepare one image for the model as Model Garden's evaluation parser does.

    Args:
        image_rgb_uint8: uint8 [H, W, 3] RGB pixels (``helpers.images.read_image``).
        image_size: the model's square input size S in pixels (a multiple of 128).

    Returns:
        image: float32 [S, S, 3], normalised ((x / 255 - mean) / std), zero-padded bottom/right.
        image_info: float32 [4, 2] rows ``[original_h, original_w]``, ``[scaled_h, scaled_w]``,
            ``[y_scale, x_scale]``, ``[y_offset, x_offset]`` (``resize_and_crop_image``'s format).
    """
    from official.vision.ops import preprocess_ops

    image = tf.convert_to_tensor(image_rgb_uint8, dtype=tf.uint8)
    image = preprocess_ops.normalize_image(image)
    padded_size = preprocess_ops.compute_padded_size([image_size, image_size], MAX_LEVEL_STRIDE)
    image, image_info = preprocess_ops.resize_and_crop_image(
        image, [image_size, image_size], padded_size=padded_size, aug_scale_min=1.0, aug_scale_max=1.0)
    return tf.ensure_shape(tf.cast(image, tf.float32), [image_size, image_size, 3]), tf.cast(image_info, tf.float32)


def _predict_function(model: tf_keras.Model):
    """A compiled ``model(images, image_shape, training=False)`` for this model (cached)."""
    function = _PREDICT_FUNCTIONS.get(model)
    if function is None:
        @tf.function(reduce_retracing=True)
        def function(images, image_shape):
            outputs = model(tf.cast(images, model.compute_dtype), image_shape=image_shape, training=False)
            return tf.nest.map_structure(lambda tensor: tf.cast(tensor, tf.float32), outputs)

        _PREDICT_FUNCTIONS[model] = function
    return function


def run_model(model: tf_keras.Model, images_batch, image_infos) -> dict:
    """The model's raw and post-processed outputs for a batch (float32 tensors).

    Args:
        model: a RetinaNet from ``helpers.detection.model``.
        images_batch: float32 [B, S, S, 3] from ``preprocess``.
        image_infos: float32 [B, 4, 2] from ``preprocess``.

    Returns:
        Model Garden's output dict: ``detection_boxes`` [B, K, 4] (ymin, xmin, ymax, xmax) in
        resized-image pixels, ``detection_scores`` [B, K], ``detection_classes`` [B, K] (1..N),
        ``num_detections`` [B], plus the raw ``cls_outputs``/``box_outputs`` per level.
    """
    image_infos = tf.convert_to_tensor(image_infos, tf.float32)
    return _predict_function(model)(tf.convert_to_tensor(images_batch), image_infos[:, 1, :])


def to_detections(outputs: dict, image_infos, class_names: Sequence[str], score_threshold: float,
                  filenames: Sequence[str] | None = None) -> list[list]:
    """Convert Model Garden outputs of a batch into ``Detection`` lists in original pixels.

    Args:
        outputs: ``run_model``'s dict (tensors or arrays).
        image_infos: float32 [B, 4, 2] from ``preprocess``.
        class_names: names of ids 1..N, in ``label_map.json`` order.
        score_threshold: detections with a lower score are dropped.
        filenames: image file names for the ``Detection.filename`` field ("" when None).

    Returns:
        One list per image of ``helpers.prediction_formats.Detection``, highest score first.
    """
    from helpers import prediction_formats

    image_infos = np.asarray(image_infos, dtype=np.float32)
    boxes = np.asarray(outputs["detection_boxes"], dtype=np.float32)
    scores = np.asarray(outputs["detection_scores"], dtype=np.float32)
    classes = np.asarray(outputs["detection_classes"]).astype(np.int64)
    counts = np.asarray(outputs["num_detections"]).astype(np.int64)
    results = []
    for index, info in enumerate(image_infos):
        original_height, original_width = info[0]
        scale = np.tile(info[2], 2)  # (y_scale, x_scale, y_scale, x_scale)
        offset = np.tile(info[3], 2)
        pixels = (boxes[index, : counts[index]] + offset) / scale
        pixels = np.clip(pixels, 0.0, [original_height, original_width, original_height, original_width])
        name = filenames[index] if filenames is not None else ""
        image_detections = []
        for (ymin, xmin, ymax, xmax), score, class_id in zip(pixels, scores[index], classes[index]):
            if score < score_threshold or not 1 <= class_id <= len(class_names):
                continue  # id 0 is the background; ids beyond N cannot come from our model
            image_detections.append(prediction_formats.Detection(
                filename=name, class_name=class_names[class_id - 1], score=float(score),
                xmin=float(xmin), ymin=float(ymin), xmax=float(xmax), ymax=float(ymax)))
        results.append(sorted(image_detections, key=lambda detection: -detection.score))
    return results


def detect(model: tf_keras.Model, images_batch, image_infos, class_names: Sequence[str], score_threshold: float,
           filenames: Sequence[str] | None = None) -> list[list]:
    """Detect objects in a preprocessed batch.

    Args:
        model: a RetinaNet from ``helpers.detection.model`` with trained weights.
        images_batch: float32 [B, S, S, 3] from ``preprocess``.
        image_infos: float32 [B, 4, 2] from ``preprocess``.
        class_names: names of ids 1..N, in ``label_map.json`` order.
        score_threshold: lowest score kept (0..1).
        filenames: optional file names written into each ``Detection``.

    Returns:
        One list per image of ``Detection`` with boxes (xmin, ymin, xmax, ymax) in the original
        image's pixels, highest score first.
    """
    outputs = run_model(model, images_batch, image_infos)
    return to_detections(outputs, image_infos, class_names, score_threshold, filenames)


def preprocess_and_detect(model: tf_keras.Model, image_paths: Sequence[str | pathlib.Path], image_size: int,
                          class_names: Sequence[str], score_threshold: float, batch_size: int = 4,
                          remove_background: bool = False) -> list[list]:
    """Read image files, detect objects and return one ``Detection`` list per file.

    Args:
        model: a trained RetinaNet from ``helpers.detection.model``.
        image_paths: image files (any format ``helpers.images.read_image`` reads).
        image_size: the model's input size S (the run's ``config.image_size``).
        class_names: names of ids 1..N, in ``label_map.json`` order.
        score_threshold: lowest score kept (0..1).
        batch_size: images per model call (memory vs speed).
        remove_background: apply ``preprocess.remove_background_otsu`` first, as in training
            when the run's ``config.remove_background`` was on.

    Returns:
        Per path, in order, detections with ``filename`` = the file's name and boxes in its pixels.
    """
    from helpers import images as images_module
    from helpers.detection import preprocess as preprocess_module
    from helpers.detection import tiling

    results = []
    for paths in tiling.iterate_batches(list(image_paths), max(1, batch_size)):
        prepared = []
        for path in paths:
            pixels = images_module.read_image(path)
            if remove_background:
                pixels = preprocess_module.remove_background_otsu(pixels)
            prepared.append(preprocess(pixels, image_size))
        images_batch = tf.stack([image for image, _ in prepared])
        image_infos = tf.stack([info for _, info in prepared])
        results.extend(detect(model, images_batch, image_infos, class_names, score_threshold,
                              filenames=[pathlib.Path(path).name for path in paths]))
    return results
