"""Overlay images of a detector's boxes: drawn with OpenCV, labels with the DejaVu font so any class name shows.

The files boxes become (CSV, VOC, COCO) are in ``helpers.prediction_formats``; class colours in
``helpers.figures.class_colours``. This module never imports TensorFlow.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from helpers import errors, figures, images
from helpers.prediction_formats import Detection


def _box_fields(box: Any) -> tuple[str, float | None, tuple[float, float, float, float]]:
    """(class name, score or None, (xmin, ymin, xmax, ymax)) of a Detection or a VocObject."""
    name = box.class_name if isinstance(box, Detection) else box.name
    return name, getattr(box, "score", None), (box.xmin, box.ymin, box.xmax, box.ymax)


def _label_font(size: int):
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels: it has glyphs for non-English class names."""
    import matplotlib.font_manager
    from PIL import ImageFont

    return ImageFont.truetype(matplotlib.font_manager.findfont("DejaVu Sans"), size)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] copy of a gray [H, W] or RGB(A) [H, W, 3|4] uint8 image."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8).copy()


def _rectangles_overlap(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> bool:
    """Whether two (left, top, right, bottom) pixel rectangles share any area."""
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def _overlap_area(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> int:
    """Shared area in pixels² of two (left, top, right, bottom) rectangles."""
    return (max(0, min(first[2], second[2]) - max(first[0], second[0]))
            * max(0, min(first[3], second[3]) - max(first[1], second[1])))


def place_labels(boxes: Sequence[tuple[float, float, float, float]], label_sizes: Sequence[tuple[int, int]],
                 image_width: int, image_height: int) -> list[tuple[int, int, int, int]]:
    """Where each box's label goes, so that no label covers an earlier one.

    A label sits just above its box's top-left corner (moved left or down to stay inside the image).
    When it would overlap a label placed before it, it moves down in steps of its own height, into
    the box, until it is free; if no place down to the box's bottom is free, it takes the one that
    overlaps least. Earlier labels (the higher scores: detections come best first) keep the best spots.

    Args:
        boxes: (xmin, ymin, xmax, ymax) pixels, one per label, in drawing order.
        label_sizes: (width, height) pixels of each label's background rectangle.
        image_width, image_height: the image's size in pixels.

    Returns:
        (left, top, right, bottom) int pixels of each label, in the order given.
    """
    placed: list[tuple[int, int, int, int]] = []
    for (xmin, ymin, _, ymax), (width, height) in zip(boxes, label_sizes):
        left = max(0, min(int(round(xmin)), image_width - width))
        top = int(round(ymin)) - height
        lowest = max(top, min(int(round(ymax)), image_height) - height)
        candidates = []
        while True:
            clipped = max(0, min(top, image_height - height))
            candidates.append((left, clipped, left + width, clipped + height))
            if top >= lowest:
                break
            top = min(top + height, lowest)
        free = [rectangle for rectangle in candidates
                if not any(_rectangles_overlap(rectangle, other) for other in placed)]
        placed.append(free[0] if free else min(
            candidates, key=lambda rectangle: sum(_overlap_area(rectangle, other) for other in placed)))
    return placed


def draw_boxes(image_rgb_uint8: np.ndarray, detections_or_voc_objects: Sequence[Any],
               colours: Mapping[str, tuple] | None = None) -> np.ndarray:
    """A copy of the image with each box drawn and labelled "class" or "class 0.87".

    Args:
        image_rgb_uint8: uint8 [H, W, 3] RGB (gray [H, W] is accepted); not modified.
        detections_or_voc_objects: ``Detection`` or ``helpers.voc.VocObject`` items, pixels.
        colours: class name -> RGB 0..255; missing classes get ``class_colours`` of the sorted names.

    Returns:
        uint8 [H, W, 3] RGB.
    """
    import cv2
    from PIL import Image, ImageDraw

    canvas = _as_rgb(image_rgb_uint8)
    boxes = [_box_fields(box) for box in detections_or_voc_objects]
    palette = figures.class_colours(sorted({name for name, _, _ in boxes}))
    palette.update(colours or {})
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for name, _, (xmin, ymin, xmax, ymax) in boxes:
        cv2.rectangle(canvas, (int(round(xmin)), int(round(ymin))), (int(round(xmax)), int(round(ymax))),
                      tuple(int(channel) for channel in palette[name]), thickness)
    picture = Image.fromarray(canvas)
    drawer, font = ImageDraw.Draw(picture), _label_font(max(10, round(max(canvas.shape[:2]) / 50)))
    texts = [name if score is None else f"{name} {score:.2f}" for name, score, _ in boxes]
    extents = [drawer.textbbox((0, 0), text, font=font) for text in texts]
    # 2 px of background around the text on every side
    sizes = [(right - left + 4, bottom - top + 4) for left, top, right, bottom in extents]
    places = place_labels([corners for _, _, corners in boxes], sizes, canvas.shape[1], canvas.shape[0])
    for (name, _, _), text, (left, top, _, _), (x, y, x_end, y_end) in zip(boxes, texts, extents, places):
        drawer.rectangle((x, y, x_end - 1, y_end - 1), fill=tuple(palette[name]))  # PIL includes the end pixel
        drawer.text((x + 2 - left, y + 2 - top), text, font=font, fill=(255, 255, 255))
    return np.asarray(picture)


def _encode(image_rgb: np.ndarray, path: pathlib.Path) -> pathlib.Path:
    """Write an RGB image to ``path`` (format from the suffix; .png when unknown), non-ASCII paths included."""
    import cv2

    suffix = path.suffix.lower() if path.suffix.lower() in images.IMAGE_EXTENSIONS else ".png"
    encoded, data = cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise errors.DatasetError(f"{path}: OpenCV could not encode the overlay as {suffix}. Use a .png path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path


def save_overlay(image_rgb_uint8: np.ndarray, detections: Sequence[Any], path: str | pathlib.Path,
                 colours: Mapping[str, tuple] | None = None) -> pathlib.Path:
    """Save the image with ``draw_boxes`` applied to ``path`` (PNG, or JPEG/TIFF/BMP by suffix); the path."""
    return _encode(draw_boxes(image_rgb_uint8, detections, colours), pathlib.Path(path))


def side_by_side(image_rgb_uint8: np.ndarray, detections: Sequence[Any], ground_truth_objects: Sequence[Any],
                 path: str | pathlib.Path) -> pathlib.Path:
    """Save a 3-panel PNG: image | prediction | annotation, with box counts in the titles.

    Args:
        image_rgb_uint8: uint8 [H, W, 3] RGB.
        detections: predicted boxes (``Detection``), already filtered by the caller's score threshold.
        ground_truth_objects: annotated boxes (``helpers.voc.VocObject``).
        path: the PNG to write.

    Returns:
        ``path`` as a Path. One colour per class in both panels.
    """
    colours = figures.class_colours(sorted({_box_fields(box)[0] for box in list(detections) + list(ground_truth_objects)}))
    height, width = np.asarray(image_rgb_uint8).shape[:2]
    panel_width = 5.0
    figure = figures.new_figure(3 * panel_width, panel_width * height / max(width, 1) + 0.6)
    panels = [(_as_rgb(image_rgb_uint8), f"image ({width} x {height} px)"),
              (draw_boxes(image_rgb_uint8, detections, colours), f"prediction: {len(detections)} boxes"),
              (draw_boxes(image_rgb_uint8, ground_truth_objects, colours),
               f"annotation: {len(ground_truth_objects)} boxes")]
    for index, (pixels, title) in enumerate(panels):
        axes = figure.add_subplot(1, 3, index + 1)
        axes.imshow(pixels)
        axes.set_title(title)
        axes.set_axis_off()
    return figures.save_figure(figure, path)
