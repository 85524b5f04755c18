"""Sharded TFRecords in the tf.Example format Model Garden's ``TfExampleDecoder`` reads.

One record per image, with the keys ``official.vision.dataloaders.tf_example_decoder`` parses:
``image/encoded`` (PNG, or JPEG), ``image/height``, ``image/width``, ``image/source_id`` (the
image's 1-based position in the set, as text; Model Garden's evaluation parser needs a number),
``image/filename`` and, per object, ``image/object/bbox/{xmin,ymin,xmax,ymax}`` (0..1 of the
width/height), ``image/object/class/label`` (1..N in ``class_names`` order; 0 is background),
``image/object/class/text``, ``image/object/is_crowd`` (0) and ``image/object/area`` (pixels).

Pixels come from ``helpers.images.read_image`` (so 16-bit and TIFF images are normalised
exactly as at prediction time), optionally through ``preprocess.remove_background_otsu``,
and are re-encoded. Boxes are the dataset doctor's ``usable_objects`` (zero-area boxes dropped,
out-of-image boxes clipped), never the raw file.

With a pixel scale (``helpers.detection.tiling.PixelScale``, what training always passes), a record
is one **window** of an image, not the image: the image is decoded once, resized by the scale and
cut into overlapping windows (``tiling.training_windows``); boxes cut by a window edge are kept
when at least half of them is visible, and are otherwise written with class id ``IGNORE_LABEL``
(-2); ``helpers.detection.train.ignore_cut_objects`` gives the anchors matched to them no class and
no box weight in the training step (neither object nor background). A window smaller than the network input in both directions (a small image) is padded
bottom/right to the input size with the ImageNet mean colour, so that Model Garden's parser keeps
it at the scale (it resizes every record to fit the input). ``RecordSet.windows`` says where each
record lies in its image, so validation maps detections back and merges them as prediction does.

A set is written once into the run's ``records/`` folder under ``<name>-<digest>`` and reused
while its manifest (file names, sizes and modification times, the boxes, the class list and
the preprocessing) is unchanged; any change gives a new digest and a new set beside the old
one. Nothing is deleted. Images are streamed one at a time, never all held in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from helpers import errors
from helpers import progress as progress_module

MANIFEST_VERSION = 2
# Class id of ignore regions (objects mostly outside a window): neither object nor background in training.
IGNORE_LABEL = -2  # Model Garden's anchor labeller already uses -1 for background anchors
IGNORE_NAME = "(cut by the window edge: ignored)"
# Padding colour of small windows: the ImageNet mean, which Model Garden's normalisation maps to ~0,
# the value its own padding has.
PADDING_COLOUR = (124, 116, 104)
IMAGES_PER_SHARD = 256


@dataclasses.dataclass
class RecordSet:
    """One written (or reused) set of TFRecord shards.

    Attributes:
        name: ``<name>-<digest>``, the common prefix of its files.
        files: the shard files, in order.
        manifest_path: the JSON manifest written after the last shard.
        stems: image stems by record position; ``stems[source_id - 1]`` is the stem of a record's image.
        filenames: image file names by record position, like ``stems``.
        number_of_objects: boxes written, all images together.
        reused: True when an identical earlier set was found and nothing was written.
        windows: per record, where it lies in its image: ``filename``, ``x``, ``y``, ``width``,
            ``height`` (input pixels of the resized image), ``x_scale``, ``y_scale`` (exact factors),
            ``image_width``, ``image_height`` (the image's own pixels), ``window`` and ``overlap`` (the
            grid it belongs to); empty for a set written
            without a pixel scale (one record per image, resized whole by Model Garden's parser).
    """

    name: str
    files: list[pathlib.Path]
    manifest_path: pathlib.Path
    stems: list[str]
    filenames: list[str]
    number_of_objects: int
    reused: bool = False
    windows: list[dict] = dataclasses.field(default_factory=list)

    @property
    def pattern(self) -> str:
        """File pattern for Model Garden's ``DataConfig.input_path``."""
        return str(self.files[0].parent / f"{self.name}-*-of-*.tfrecord")

    @property
    def number_of_images(self) -> int:
        return len(self.stems)


def _manifest(items: Sequence, usable_objects: Callable, class_names: Sequence[str],
              preprocessing: dict) -> dict:
    """Everything the records' content depends on (small: no pixels, one line per image)."""
    entries = []
    for item in items:
        stat = pathlib.Path(item.image_path).stat()
        boxes = [[obj.name, round(float(obj.xmin), 3), round(float(obj.ymin), 3), round(float(obj.xmax), 3),
                  round(float(obj.ymax), 3)] for obj in usable_objects(item)]
        entries.append({"stem": item.stem, "image": pathlib.Path(item.image_path).name, "size": stat.st_size,
                        "mtime_ns": stat.st_mtime_ns, "boxes": boxes})
    return {"version": MANIFEST_VERSION, "classes": list(class_names), "preprocessing": preprocessing,
            "images": entries}


def _digest(manifest: dict) -> str:
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
    """uint8 [H, W, 3] RGB -> PNG or JPEG (quality 95) bytes."""
    import cv2

    extension, parameters = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]) if image_format == "png" else (
        ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), parameters)
    if not ok:
        raise errors.DatasetError(f"cannot encode an image of shape {pixels.shape} as {image_format}.")
    return encoded.tobytes()


def _example(pixels: np.ndarray, source_id: int, filename: str, objects: Sequence, class_ids: dict[str, int],
             image_format: str) -> tf.train.Example:
    """The Model Garden tf.Example of one image; boxes normalised to its width and height."""
    from official.vision.data import tfrecord_lib

    height, width = pixels.shape[:2]
    boxes = np.array([[obj.xmin, obj.ymin, obj.xmax, obj.ymax] for obj in objects], dtype=np.float64).reshape(-1, 4)
    boxes = np.clip(boxes / [width, height, width, height], 0.0, 1.0)
    areas = (boxes[:, 2] - boxes[:, 0]) * width * (boxes[:, 3] - boxes[:, 1]) * height
    feature = tfrecord_lib.convert_to_feature
    features = {
        "image/encoded": feature(_encode(pixels, image_format), "bytes"),
        "image/format": feature(image_format.encode(), "bytes"),
        "image/height": feature(int(height), "int64"),
        "image/width": feature(int(width), "int64"),
        "image/source_id": feature(str(source_id).encode(), "bytes"),
        "image/filename": feature(filename.encode("utf-8"), "bytes"),
        "image/object/bbox/xmin": feature(boxes[:, 0].tolist(), "float_list"),
        "image/object/bbox/ymin": feature(boxes[:, 1].tolist(), "float_list"),
        "image/object/bbox/xmax": feature(boxes[:, 2].tolist(), "float_list"),
        "image/object/bbox/ymax": feature(boxes[:, 3].tolist(), "float_list"),
        "image/object/class/label": feature([class_ids[obj.name] for obj in objects], "int64_list"),
        "image/object/class/text": feature([obj.name.encode("utf-8") for obj in objects], "bytes_list"),
        "image/object/is_crowd": feature([0] * len(objects), "int64_list"),
        "image/object/area": feature(areas.tolist(), "float_list"),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))


def _shard_paths(folder: pathlib.Path, name: str, count: int) -> list[pathlib.Path]:
    return [folder / f"{name}-{index:05d}-of-{count:05d}.tfrecord" for index in range(count)]


def _load_pixels(item, remove_background: bool) -> np.ndarray:
    from helpers import images
    from helpers.detection import preprocess

    pixels = images.read_image(item.image_path)
    return preprocess.remove_background_otsu(pixels) if remove_background else pixels


def _check_classes(item, objects: Sequence, class_ids: dict[str, int], class_names: Sequence[str]) -> None:
    unknown = sorted({obj.name for obj in objects} - set(class_ids))
    if unknown:
        raise errors.DatasetError(f"{item.annotation_path}: class {unknown[0]!r} is not in the class list "
                                  f"{list(class_names)}. Check the class names of this annotation.")


class _WindowObject:
    """A box of a window (window pixels), shaped like ``voc.VocObject`` for ``_example``."""

    def __init__(self, name: str, box):
        self.name = name
        self.xmin, self.ymin, self.xmax, self.ymax = (float(value) for value in box)


def _window_examples(item, objects: Sequence, pixel_scale, remove_background: bool, rng, all_windows: bool):
    """(pixels uint8 [h, w, 3], objects, window dict) of every training window of one item."""
    from helpers.detection import preprocess, tiling

    pixels = _load_pixels(item, False)  # decoded once for all of its windows
    scaled = tiling.ScaledImage(tiling.ArraySource(pixels), pixel_scale.scale)
    boxes = np.array([[obj.xmin, obj.ymin, obj.xmax, obj.ymax] for obj in objects], dtype=np.float64).reshape(-1, 4)
    # Validation windows are those of prediction (scored as prediction scores them); training windows
    # overlap less (PixelScale.training_overlap).
    overlap = pixel_scale.overlap if all_windows else pixel_scale.training_overlap
    windows = tiling.training_windows(scaled, boxes, [obj.name for obj in objects], pixel_scale.window, overlap,
                                      rng=None if all_windows else rng)
    for window in windows:
        area = window.area
        crop = scaled.pixels(area)
        if remove_background:
            crop = preprocess.remove_background_otsu(crop)  # per window, exactly as at prediction
        if crop.shape[0] < pixel_scale.window and crop.shape[1] < pixel_scale.window:
            # Pad the longer side to the input size so that Model Garden's parser does not enlarge it.
            padded_height = pixel_scale.window if crop.shape[0] >= crop.shape[1] else crop.shape[0]
            padded_width = pixel_scale.window if crop.shape[1] > crop.shape[0] else crop.shape[1]
            canvas = np.empty((padded_height, padded_width, 3), dtype=np.uint8)
            canvas[:] = PADDING_COLOUR
            canvas[:crop.shape[0], :crop.shape[1]] = crop
            crop = canvas
        window_objects = [_WindowObject(name, box) for name, box in zip(window.labels, window.boxes)]
        window_objects += [_WindowObject(IGNORE_NAME, box) for box in window.ignore_boxes]
        placement = {"filename": pathlib.Path(item.image_path).name, "x": area.x, "y": area.y, "width": area.width,
                     "height": area.height, "x_scale": scaled.x_scale, "y_scale": scaled.y_scale,
                     "image_width": int(pixels.shape[1]), "image_height": int(pixels.shape[0]),
                     "window": pixel_scale.window, "overlap": overlap}
        yield crop, window_objects, placement


def _write_shards(items: Sequence, usable_objects: Callable, class_names: Sequence[str], paths: list[pathlib.Path],
                  remove_background: bool, image_format: str, progress: bool, pixel_scale=None, seed: int = 0,
                  all_windows: bool = False) -> tuple[int, list[dict]]:
    """Stream every item (or window) into the shards (round robin).

    Returns:
        (boxes written, not counting ignore regions; the windows' placements, [] without a scale).
    """
    class_ids = {name: index + 1 for index, name in enumerate(class_names)}
    class_ids[IGNORE_NAME] = IGNORE_LABEL
    temporary = [path.with_name(path.name + ".partial") for path in paths]
    writers = [tf.io.TFRecordWriter(str(path)) for path in temporary]
    number_of_objects, placements, position = 0, [], 0
    rng = np.random.default_rng(seed)
    try:
        for item in progress_module.bar(items, "Writing TFRecords", enabled=progress):
            objects = [obj for obj in usable_objects(item)]
            _check_classes(item, objects, class_ids, class_names)
            if pixel_scale is None:
                examples = [(_load_pixels(item, remove_background), objects, None)]
            else:
                examples = _window_examples(item, objects, pixel_scale, remove_background, rng, all_windows)
            for pixels, record_objects, placement in examples:
                example = _example(pixels, position + 1, pathlib.Path(item.image_path).name, record_objects,
                                   class_ids, image_format)
                writers[position % len(writers)].write(example.SerializeToString())
                number_of_objects += sum(obj.name != IGNORE_NAME for obj in record_objects)
                if placement is not None:
                    placements.append(placement)
                position += 1
    finally:
        for writer in writers:
            writer.close()
    return number_of_objects, placements


def _shard_count(items: Sequence, pixel_scale) -> int:
    """Shards for a set: one per ``IMAGES_PER_SHARD`` records (windows estimated from the image sizes)."""
    if pixel_scale is None:
        return max(1, math.ceil(len(items) / IMAGES_PER_SHARD))
    from helpers import images

    windows = sum(pixel_scale.windows_for(*images.image_size(item.image_path), training=True) for item in items)
    return max(1, math.ceil(windows / IMAGES_PER_SHARD))


def write_records(items: Sequence, usable_objects: Callable, class_names: Sequence[str],
                  folder: str | pathlib.Path, name: str, remove_background: bool = False,
                  image_format: str = "png", progress: bool = True, pixel_scale=None, seed: int = 0,
                  all_windows: bool = False) -> RecordSet:
    """Write (or reuse) the TFRecords of a list of dataset items.

    Args:
        items: ``helpers.detection.dataset.DatasetItem`` objects (``stem``, ``image_path``, ``annotation``).
        usable_objects: ``DetectionDataset.usable_objects``: item -> cleaned ``VocObject`` list.
        class_names: the model's classes; id = position + 1.
        folder: the run's ``records/`` folder.
        name: set name, e.g. ``"train"`` or ``"validation"``.
        remove_background: apply ``preprocess.remove_background_otsu`` to every image (every window).
        image_format: ``"png"`` (lossless) or ``"jpeg"`` (smaller files).
        progress: show a tqdm progress bar.
        pixel_scale: the run's ``tiling.PixelScale``: one record per window at that scale. None: one
            record per image, resized whole to the input by Model Garden's parser.
        seed: chooses the windows without objects that are kept (``tiling.training_windows``).
        all_windows: keep every window (validation: the images are scored whole).

    Returns:
        The ``RecordSet``; ``reused`` tells whether an identical earlier set was found.
    """
    if not items:
        raise errors.DatasetError(f"records: the {name} set has no images. Add annotated images or change "
                                  f"validation_fraction.")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    preprocessing = {"remove_background": bool(remove_background), "image_format": image_format,
                     "background_value": 128 if remove_background else None,
                     "pixel_scale": None if pixel_scale is None else {
                         key: value for key, value in pixel_scale.to_dict().items() if key in ("scale", "window", "overlap", "training_overlap")},
                     "seed": seed, "all_windows": bool(all_windows)}
    manifest = _manifest(items, usable_objects, class_names, preprocessing)
    full_name = f"{name}-{_digest(manifest)}"
    manifest_path = folder / f"{full_name}.json"
    if manifest_path.is_file():
        saved = json.loads(manifest_path.read_text(encoding="utf-8"))
        paths = [folder / file for file in saved["files"]]
        if all(path.is_file() for path in paths):
            return RecordSet(full_name, paths, manifest_path, saved["record_stems"], saved["record_filenames"],
                             saved["number_of_objects"], reused=True, windows=saved.get("windows", []))
    paths = _shard_paths(folder, full_name, _shard_count(items, pixel_scale))
    count, placements = _write_shards(items, usable_objects, class_names, paths, remove_background, image_format,
                                      progress, pixel_scale, seed, all_windows)
    for source, target in zip([path.with_name(path.name + ".partial") for path in paths], paths):
        os.replace(source, target)  # only complete shards carry the final name
    if placements:
        filenames = [placement["filename"] for placement in placements]
        stems = [pathlib.Path(filename).stem for filename in filenames]
    else:
        stems = [item.stem for item in items]
        filenames = [pathlib.Path(item.image_path).name for item in items]
    manifest.update({"number_of_objects": count, "files": [path.name for path in paths], "record_stems": stems,
                     "record_filenames": filenames, "windows": placements})
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return RecordSet(full_name, paths, manifest_path, stems, filenames, count, windows=placements)


def decode_records(path: str | pathlib.Path | Iterable[str | pathlib.Path]) -> list[dict]:
    """Read records back with Model Garden's own decoder (for tests and checks).

    Args:
        path: a shard file, a glob pattern, or several files.

    Returns:
        Per record: ``source_id`` (int), ``filename``, ``height``, ``width``, ``image`` uint8
        [H, W, 3], ``boxes`` float32 [N, 4] pixels (xmin, ymin, xmax, ymax), ``class_ids``
        int [N], ``class_names`` list[str].
    """
    from official.vision.dataloaders import tf_example_decoder

    files = [str(path)] if isinstance(path, (str, pathlib.Path)) else [str(item) for item in path]
    files = sorted(file for pattern in files for file in tf.io.gfile.glob(pattern))
    decoder = tf_example_decoder.TfExampleDecoder()
    results = []
    for serialized in tf.data.TFRecordDataset(files):
        decoded = decoder.decode(serialized)
        parsed = tf.train.Example.FromString(serialized.numpy()).features.feature
        height, width = int(decoded["height"]), int(decoded["width"])
        ymin, xmin, ymax, xmax = np.split(decoded["groundtruth_boxes"].numpy(), 4, axis=1)
        boxes = np.concatenate([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
        results.append({
            "source_id": int(decoded["source_id"].numpy()), "filename": parsed["image/filename"].bytes_list.value[0].decode(),
            "height": height, "width": width, "image": decoded["image"].numpy(), "boxes": boxes.astype(np.float32),
            "class_ids": decoded["groundtruth_classes"].numpy().astype(int),
            "class_names": [text.decode() for text in parsed["image/object/class/text"].bytes_list.value]})
    return sorted(results, key=lambda record: record["source_id"])
