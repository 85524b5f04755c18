"""Export a trained RetinaNet as a SavedModel that anyone can reload without our training code.

The exported folder (``<run>/exported_model/``) holds:

* a TensorFlow SavedModel with two signatures:
  - ``detect_windows`` (what DL4Cells uses): ``images`` uint8 [B, S, S, 3] RGB windows already at
    the model's pixel scale, ``valid_sizes`` int32 [B, 2] (height, width of the real pixels in
    each window, the rest is padding) -> ``boxes`` float32 [B, K, 4] (xmin, ymin, xmax, ymax) in
    window pixels, ``scores`` [B, K], ``classes`` int32 [B, K] (1..N; 0 = no detection) and
    ``num_detections`` int32 [B]. Normalisation and padding are those of training (Model
    Garden's ops: padding is zero after normalisation);
  - ``serving_default``: **one image of any size** (uint8 [H, W, 3]) shrunk or enlarged whole
    to the S x S input (what every DL4Cells model did before pixel scales), returning ``boxes``
    [K, 4] in the pixels of the image given, ``scores``, ``classes`` and ``class_names``. It is
    right for images that fit one window at the model's scale, e.g. the images it was trained on;
* ``dl4cells_model.json``: class names, input size, the pixel scale and window overlap
  (``helpers.detection.tiling.PixelScale``), the score and NMS thresholds chosen at training, and
  whether Otsu background removal must be applied first (a NumPy/OpenCV step, kept outside the
  graph so it is exactly the function used for training).

``load_exported_model`` returns an ``ExportedDetector`` whose ``detect`` presents any image at the
model's pixel scale: resized by the scale, cut into overlapping windows when larger than one,
windows detected in batches, boxes mapped back to the image's pixels and merged across seams
(``helpers.detection.tiling``). A model exported before pixel scales (format 1) is used as before,
through ``serving_default``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from helpers import errors
from helpers.detection import inference
from helpers.detection.config import DetectionConfig

METADATA_FILE = "dl4cells_model.json"
FORMAT_VERSION = 2
# Windows per call of detect_windows (memory: about 5 MB of input per 384-px window, plus activations).
WINDOWS_PER_BATCH = 4


class _ServingModule(tf.Module):
    """The SavedModel's root: the RetinaNet plus the pre/post-processing of one image."""

    def __init__(self, model: tf_keras.Model, class_names: Sequence[str], image_size: int):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.class_name_table = tf.constant(["background"] + list(class_names))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve(self, image):
        """uint8 [H, W, 3] -> boxes [K, 4] (xmin, ymin, xmax, ymax) original pixels, scores, classes, names."""
        from official.vision.ops import preprocess_ops

        size = self.image_size
        normalized = preprocess_ops.normalize_image(image)
        padded_size = preprocess_ops.compute_padded_size([size, size], inference.MAX_LEVEL_STRIDE)
        resized, image_info = preprocess_ops.resize_and_crop_image(
            normalized, [size, size], padded_size=padded_size, aug_scale_min=1.0, aug_scale_max=1.0)
        resized = tf.ensure_shape(tf.cast(resized, tf.float32), [size, size, 3])
        outputs = self.model(tf.cast(resized[tf.newaxis], self.model.compute_dtype),
                             image_shape=tf.cast(image_info[tf.newaxis, 1, :], tf.float32), training=False)
        count = tf.cast(outputs["num_detections"][0], tf.int32)
        boxes = tf.cast(outputs["detection_boxes"][0, :count], tf.float32)  # (ymin, xmin, ymax, xmax) resized px
        scale = tf.tile(tf.cast(image_info[2], tf.float32), [2])
        offset = tf.tile(tf.cast(image_info[3], tf.float32), [2])
        original = (boxes + offset) / scale
        height, width = tf.cast(image_info[0, 0], tf.float32), tf.cast(image_info[0, 1], tf.float32)
        original = tf.clip_by_value(original, 0.0, tf.stack([height, width, height, width]))
        classes = tf.cast(outputs["detection_classes"][0, :count], tf.int32)
        return {"boxes": tf.gather(original, [1, 0, 3, 2], axis=1),
                "scores": tf.cast(outputs["detection_scores"][0, :count], tf.float32),
                "classes": classes,
                "class_names": tf.gather(self.class_name_table, classes)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
                                  tf.TensorSpec([None, 2], tf.int32, name="valid_sizes")])
    def detect_windows(self, images, valid_sizes):
        """uint8 [B, S, S, 3] windows at the model's scale -> boxes [B, K, 4] (xmin, ymin, xmax, ymax) window px."""
        from official.vision.ops import preprocess_ops

        size = self.image_size
        normalized = tf.map_fn(preprocess_ops.normalize_image, images, fn_output_signature=tf.float32)
        normalized = tf.ensure_shape(normalized, [None, size, size, 3])
        rows = tf.range(size)[tf.newaxis, :, tf.newaxis]
        columns = tf.range(size)[tf.newaxis, tf.newaxis, :]
        inside = (rows < valid_sizes[:, 0, tf.newaxis, tf.newaxis]) & (columns < valid_sizes[:, 1, tf.newaxis, tf.newaxis])
        # Training pads after normalisation with zeros (Model Garden's resize_and_crop_image).
        normalized = tf.where(inside[..., tf.newaxis], normalized, tf.zeros_like(normalized))
        outputs = self.model(tf.cast(normalized, self.model.compute_dtype),
                             image_shape=tf.cast(valid_sizes, tf.float32), training=False)
        boxes = tf.cast(outputs["detection_boxes"], tf.float32)  # (ymin, xmin, ymax, xmax)
        return {"boxes": tf.gather(boxes, [1, 0, 3, 2], axis=2),
                "scores": tf.cast(outputs["detection_scores"], tf.float32),
                "classes": tf.cast(outputs["detection_classes"], tf.int32),
                "num_detections": tf.cast(outputs["num_detections"], tf.int32)}


def export_saved_model(model: tf_keras.Model, config: DetectionConfig, class_names: Sequence[str],
                       folder: str | pathlib.Path, pixel_scale=None) -> pathlib.Path:
    """Write the SavedModel and its metadata into ``folder`` (replaced atomically if it exists).

    Args:
        model: the trained RetinaNet (``helpers.detection.model``), best weights loaded.
        config: the run's config (image size, score threshold, background removal).
        class_names: names of ids 1..N (``label_map.json`` order).
        folder: the run's ``exported_model/`` folder.
        pixel_scale: the run's ``tiling.PixelScale`` (``train.TrainingResult.pixel_scale``); None
            records the one-window scale of ``config.image_size`` (a model without tiles).

    Returns:
        ``folder``.
    """
    folder = pathlib.Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover of an interrupted export, inside the run folder
    module = _ServingModule(model, class_names, config.image_size)
    # Only the serving signature is written, not tf_keras's traced call function of every layer (nothing
    # reloads those: the detector is used through serving_default). SpineNet-49-Mobile at 128 px on a CPU:
    # export 85 s -> 24 s, reload 25 s -> 4 s. tf_keras has no public switch; its range is pinned in pyproject.
    from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

    with keras_saved_model_utils.keras_option_scope(save_traces=False):
        tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve,
                                                              "detect_windows": module.detect_windows})
    metadata = {"format_version": FORMAT_VERSION, "class_names": list(class_names), "image_size": config.image_size,
                "score_threshold": config.score_threshold, "nms_iou_threshold": config.nms_iou_threshold,
                "remove_background": config.remove_background, "backbone": config.backbone,
                "pixel_scale": pixel_scale.to_dict() if pixel_scale is not None else None}
    (staging / METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False, indent=2), encoding="utf-8")
    if folder.exists():
        # The run's previous export (e.g. before more epochs were added) is kept beside, never deleted.
        previous = folder.with_name(folder.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(folder, previous)
    os.replace(staging, folder)
    return folder


@dataclasses.dataclass
class ExportedDetector:
    """A reloaded exported model.

    Attributes:
        folder: the exported model folder.
        class_names: names of ids 1..N.
        image_size: the model's square input size (the window) in pixels.
        score_threshold: the run's threshold (used when ``detect`` gets none).
        remove_background: whether images are Otsu-blanked before detection (as in training).
        pixel_scale: the ``tiling.PixelScale`` the model was trained at; None for a model exported
            before pixel scales (then every image is shrunk whole into one window, as then).
        nms_iou_threshold: IoU above which detections of one class from two windows are one object.
    """

    folder: pathlib.Path
    class_names: list[str]
    image_size: int
    score_threshold: float
    remove_background: bool
    pixel_scale: Any = None
    nms_iou_threshold: float = 0.5
    _signature: object = dataclasses.field(repr=False, default=None)
    _windows_signature: object = dataclasses.field(repr=False, default=None)

    def detect(self, image: "np.ndarray | tiling.ImageSource", score_threshold: float | None = None,
               filename: str = "", object_size_ratio: float = 1.0) -> list:
        """Detect objects in one image of any size, at the model's pixel scale.

        Args:
            image: uint8 [H, W, 3] RGB (``helpers.images.read_image``) or a ``tiling.ImageSource``
                (a large TIFF read region by region).
            score_threshold: lowest score kept; the run's ``score_threshold`` when None.
            filename: written into each ``Detection.filename``.
            object_size_ratio: how much larger objects are in this image than in the training
                images (2 = twice as large, e.g. a 2x higher magnification); the image is then
                resized by scale / ratio.

        Returns:
            ``helpers.prediction_formats.Detection`` list, boxes in the image's own pixels, best first.
        """
        from helpers.detection import tiling

        threshold = self.score_threshold if score_threshold is None else score_threshold
        if object_size_ratio <= 0:
            raise errors.ConfigError(f"Object_size_ratio: {object_size_ratio} must be above 0 (1 = objects as large "
                                     f"as in the training images).")
        source = image if isinstance(image, tiling.ImageSource) else tiling.ArraySource(image)
        if self.pixel_scale is None or self._windows_signature is None:
            pixels = source.read(0, source.height, 0, source.width)
            return self._detect_whole(pixels, threshold, filename)
        part = self.detect_window_range(source, threshold, object_size_ratio)
        return self.merge_window_parts([part], filename)

    def window_count(self, width: int, height: int, object_size_ratio: float = 1.0) -> int:
        """How many windows ``detect`` cuts a ``width`` x ``height`` image into (1 for a model without pixel scale)."""
        if self.pixel_scale is None or self._windows_signature is None:
            return 1
        return self.pixel_scale.windows_for(width, height, object_size_ratio)

    def detect_window_range(self, image: "np.ndarray | tiling.ImageSource", score_threshold: float,
                            object_size_ratio: float = 1.0, first: int = 0, stop: int | None = None) -> dict:
        """The detections of windows ``first``..``stop - 1`` of one image, before the merge across seams.

        A very large image is spread over several workers this way (``helpers.detection.prediction_job``):
        each detects a range of its windows, and ``merge_window_parts`` joins the ranges exactly as
        ``detect`` does for the whole image.

        Returns:
            JSON-ready dict: ``boxes`` [K][4] in the image's own pixels, ``scores`` [K], ``classes`` [K]
            (1..N), ``owned`` [K] (whether the box's centre is in the window's own part, ``tiling.owned_by_window``)
            and ``windows``, the image's window count.
        """
        from helpers.detection import tiling

        source = image if isinstance(image, tiling.ImageSource) else tiling.ArraySource(image)
        scaled = tiling.ScaledImage(source, self.pixel_scale.scale / object_size_ratio)
        areas = scaled.windows(self.pixel_scale.window, self.pixel_scale.overlap)
        boxes, scores, classes, owned = [np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, np.int32)], [np.zeros(0, bool)]
        for batch in tiling.iterate_batches(areas[first:stop], WINDOWS_PER_BATCH):
            found = self._detect_windows([scaled.pixels(area) for area in batch])
            for area, (window_boxes, window_scores, window_classes) in zip(batch, found):
                keep = window_scores >= score_threshold
                window_boxes, window_scores, window_classes = window_boxes[keep], window_scores[keep], window_classes[keep]
                boxes.append(scaled.to_image_pixels(window_boxes, area))
                scores.append(window_scores)
                classes.append(window_classes)
                owned.append(tiling.owned_by_window(window_boxes, area, scaled.width, scaled.height,
                                                    self.pixel_scale.window, self.pixel_scale.overlap))
        return {"boxes": np.concatenate(boxes).tolist(), "scores": np.concatenate(scores).tolist(),
                "classes": np.concatenate(classes).astype(int).tolist(), "owned": np.concatenate(owned).tolist(),
                "windows": len(areas)}

    def merge_window_parts(self, parts: Sequence[dict], filename: str = "") -> list:
        """``Detection`` list of one image, best first, from the ``detect_window_range`` results of all its windows."""
        from helpers.detection import tiling

        boxes = np.asarray([box for part in parts for box in part["boxes"]], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([score for part in parts for score in part["scores"]], dtype=np.float64)
        classes = np.asarray([value for part in parts for value in part["classes"]], dtype=np.int64)
        owned = np.asarray([value for part in parts for value in part["owned"]], dtype=bool)
        if parts and parts[0]["windows"] > 1:
            kept = tiling.merge_detections(boxes, scores, classes, owned, self.nms_iou_threshold)
        else:
            kept = np.argsort(-scores, kind="stable")
        return [self._detection(filename, classes[index], scores[index], boxes[index]) for index in kept]

    def _detect_windows(self, windows: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run ``detect_windows`` on uint8 windows of at most S x S; per window (boxes [K, 4], scores [K], classes [K])."""
        preprocessed = [self._preprocess(window) for window in windows]
        size = self.image_size
        batch = np.zeros((len(windows), size, size, 3), dtype=np.uint8)
        for index, window in enumerate(preprocessed):
            batch[index, :window.shape[0], :window.shape[1]] = window
        valid = np.array([window.shape[:2] for window in preprocessed], dtype=np.int32)
        result = self._windows_signature(images=tf.constant(batch), valid_sizes=tf.constant(valid))
        counts = result["num_detections"].numpy()
        boxes, scores, classes = result["boxes"].numpy(), result["scores"].numpy(), result["classes"].numpy()
        found = []
        for index, count in enumerate(counts):
            real = (classes[index, :count] >= 1) & (classes[index, :count] <= len(self.class_names))
            found.append((boxes[index, :count][real], scores[index, :count][real], classes[index, :count][real]))
        return found

    def _preprocess(self, pixels: np.ndarray) -> np.ndarray:
        from helpers.detection import preprocess

        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        return preprocess.remove_background_otsu(pixels) if self.remove_background else pixels

    def _detection(self, filename: str, class_id: int, score: float, box: np.ndarray):
        from helpers import prediction_formats

        return prediction_formats.Detection(filename=filename, class_name=self.class_names[int(class_id) - 1], score=float(score),
                                 xmin=float(box[0]), ymin=float(box[1]), xmax=float(box[2]), ymax=float(box[3]))

    def _detect_whole(self, pixels: np.ndarray, threshold: float, filename: str) -> list:
        """The format-1 path: the whole image shrunk into one window by ``serving_default``."""
        from helpers import prediction_formats

        result = self._signature(image=tf.convert_to_tensor(self._preprocess(pixels)))
        detections = []
        for box, score, name in zip(result["boxes"].numpy(), result["scores"].numpy(), result["class_names"].numpy()):
            if score >= threshold:
                detections.append(prediction_formats.Detection(filename=filename, class_name=name.decode("utf-8"),
                                                    score=float(score), xmin=float(box[0]), ymin=float(box[1]),
                                                    xmax=float(box[2]), ymax=float(box[3])))
        return sorted(detections, key=lambda detection: -detection.score)


def load_exported_model(folder: str | pathlib.Path) -> ExportedDetector:
    """Reload an exported model folder (no training code or checkpoint needed).

    Raises:
        ModelError: the folder holds no exported DL4Cells detector.
    """
    from helpers.detection import tiling

    folder = pathlib.Path(folder).expanduser()
    metadata_path = folder / METADATA_FILE
    if not (folder / "saved_model.pb").is_file() or not metadata_path.is_file():
        raise errors.ModelError(f"{folder}: no exported detection model here (saved_model.pb and {METADATA_FILE} "
                                f"expected). Give the exported_model folder of a finished training run.")
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    loaded = tf.saved_model.load(str(folder))
    scale = metadata.get("pixel_scale")
    detector = ExportedDetector(folder=folder, class_names=list(metadata["class_names"]),
                                image_size=int(metadata["image_size"]),
                                score_threshold=float(metadata["score_threshold"]),
                                remove_background=bool(metadata["remove_background"]),
                                pixel_scale=tiling.PixelScale.from_dict(scale) if scale else None,
                                nms_iou_threshold=float(metadata.get("nms_iou_threshold", 0.5)),
                                _signature=loaded.signatures["serving_default"],
                                _windows_signature=loaded.signatures.get("detect_windows"))
    detector._loaded = loaded  # keep the SavedModel's objects alive as long as the signature is used
    return detector
