"""Export a trained RetinaNet as a SavedModel that anyone can reload without our training code.

The exported folder (``<run>/exported_model/``) holds:

* a TensorFlow SavedModel whose ``serving_default`` signature takes **one image of any size**
  (uint8 [H, W, 3] RGB) and returns, for that image, ``boxes`` float32 [K, 4] as
  (xmin, ymin, xmax, ymax) in the pixels of the image given, ``scores`` float32 [K],
  ``classes`` int32 [K] (1..N) and ``class_names`` string [K]. The resizing, normalisation and
  the mapping back to the original pixels happen inside the graph (Model Garden's own
  preprocessing ops), so the model works from any TensorFlow program:
  ``tf.saved_model.load(folder).signatures["serving_default"](image=...)``;
* ``dl4cells_model.json``: class names, input size, the score threshold chosen at training and
  whether Otsu background removal must be applied first (a NumPy/OpenCV step, kept outside the
  graph so it is exactly the function used for training).

``load_exported_model`` returns an ``ExportedDetector`` whose ``detect`` applies all of that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from helpers import errors
from helpers.detection import inference
from helpers.detection.config import DetectionConfig

METADATA_FILE = "dl4cells_model.json"
FORMAT_VERSION = 1


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


def export_saved_model(model: tf_keras.Model, config: DetectionConfig, class_names: Sequence[str],
                       folder: str | pathlib.Path) -> pathlib.Path:
    """Write the SavedModel and its metadata into ``folder`` (replaced atomically if it exists).

    Args:
        model: the trained RetinaNet (``helpers.detection.model``), best weights loaded.
        config: the run's config (image size, score threshold, background removal).
        class_names: names of ids 1..N (``label_map.json`` order).
        folder: the run's ``exported_model/`` folder.

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
        tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve})
    metadata = {"format_version": FORMAT_VERSION, "class_names": list(class_names), "image_size": config.image_size,
                "score_threshold": config.score_threshold, "remove_background": config.remove_background,
                "backbone": config.backbone}
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
        image_size: the model's square input size in pixels.
        score_threshold: the run's threshold (used when ``detect`` gets none).
        remove_background: whether images are Otsu-blanked before detection (as in training).
    """

    folder: pathlib.Path
    class_names: list[str]
    image_size: int
    score_threshold: float
    remove_background: bool
    _signature: object = dataclasses.field(repr=False, default=None)

    def detect(self, image_rgb_uint8: np.ndarray, score_threshold: float | None = None,
               filename: str = "") -> list:
        """Detect objects in one image.

        Args:
            image_rgb_uint8: uint8 [H, W, 3] RGB (``helpers.images.read_image``).
            score_threshold: lowest score kept; the run's ``score_threshold`` when None.
            filename: written into each ``Detection.filename``.

        Returns:
            ``helpers.detection.outputs.Detection`` list, boxes in the image's pixels, best first.
        """
        from helpers.detection import outputs
        from helpers.detection import preprocess

        threshold = self.score_threshold if score_threshold is None else score_threshold
        pixels = preprocess.remove_background_otsu(image_rgb_uint8) if self.remove_background else image_rgb_uint8
        result = self._signature(image=tf.convert_to_tensor(np.ascontiguousarray(pixels, dtype=np.uint8)))
        detections = []
        for box, score, name in zip(result["boxes"].numpy(), result["scores"].numpy(), result["class_names"].numpy()):
            if score >= threshold:
                detections.append(outputs.Detection(filename=filename, class_name=name.decode("utf-8"),
                                                    score=float(score), xmin=float(box[0]), ymin=float(box[1]),
                                                    xmax=float(box[2]), ymax=float(box[3])))
        return sorted(detections, key=lambda detection: -detection.score)


def load_exported_model(folder: str | pathlib.Path) -> ExportedDetector:
    """Reload an exported model folder (no training code or checkpoint needed).

    Raises:
        ModelError: the folder holds no exported DL4Cells detector.
    """
    folder = pathlib.Path(folder).expanduser()
    metadata_path = folder / METADATA_FILE
    if not (folder / "saved_model.pb").is_file() or not metadata_path.is_file():
        raise errors.ModelError(f"{folder}: no exported detection model here (saved_model.pb and {METADATA_FILE} "
                                f"expected). Give the exported_model folder of a finished training run.")
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    loaded = tf.saved_model.load(str(folder))
    detector = ExportedDetector(folder=folder, class_names=list(metadata["class_names"]),
                                image_size=int(metadata["image_size"]),
                                score_threshold=float(metadata["score_threshold"]),
                                remove_background=bool(metadata["remove_background"]),
                                _signature=loaded.signatures["serving_default"])
    detector._loaded = loaded  # keep the SavedModel's objects alive as long as the signature is used
    return detector
