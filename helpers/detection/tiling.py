"""The pixel scale of a detector and the windows large images are cut into.

A RetinaNet finds objects whose size, in the pixels the network sees, its anchors can match:
32 px (level 3) up to about 800 px (level 7). What matters is therefore not the image size but
the **pixel scale**: network-input pixels per image pixel. Every image, in training, validation,
QC and prediction, is presented at the run's one scale:

* the image is resized by ``scale`` (1.0 = its own pixels, 0.5 = shrunk by half);
* a resized image larger than the ``window`` (the config's ``image_size``) is cut into
  overlapping windows of ``window`` x ``window`` pixels; the last window of a row or column is
  aligned with the image border, so every window but those of a smaller image is full-sized;
* the overlap is at least the largest annotated object (plus a small margin), so every object
  lies whole inside at least one window;
* detections are mapped back to the image's own pixels; each window keeps the detections whose
  centre lies in its *core* (the part of the image closer to it than to its neighbours), which
  drops the pieces of objects cut by its edges and the second copy of objects seen whole by two
  windows (``owned_by_window``); then class-wise suppression at the run's NMS IoU threshold
  (TensorFlow's ``non_max_suppression``) joins what two cores share at their border.

``choose_scale`` picks the scale from the annotated boxes (``auto``): the scale that fits the
typical image into one window (what training did before tiles), enlarged when the smallest
class would otherwise be too small for the smallest anchor. ``object_sizes`` and
``size_advice`` are what the data check prints.

Windows of an image are read through an ``ImageSource``: an array already in memory, or a
TIFF read region by region (``tifffile``'s zarr store, or a memory map of an uncompressed
file), so that a 10,000 x 10,000 px image is predicted without holding it whole.

Everything here is NumPy/OpenCV; only ``merge_detections`` imports TensorFlow (lazily).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Iterator, Mapping, Sequence

import numpy as np

# Model Garden's RetinaNet anchors: anchor_size 4 x stride 8 at level 3 = 32 px, up to
# 4 x 128 x 2**(2/3) = 813 px at level 7 (num_scales 3, aspect ratios 0.5, 1, 2).
SMALLEST_ANCHOR_PIXELS = 32
LARGEST_ANCHOR_PIXELS = 813
# A square box inside the 32-px anchor overlaps it at IoU >= 0.5 (Model Garden's match threshold)
# from 32 / sqrt(2) = 22.6 px up. A class whose typical size (the square root of width x height) is
# below this at the chosen scale gets at most its one forced anchor per box: measured, BCCD's
# platelets at 16 px (image_size 256) were never found (docs/benchmarks.md §9b).
MIN_OBJECT_PIXELS = SMALLEST_ANCHOR_PIXELS / math.sqrt(2)
# auto never enlarges images more than this (the cost grows with its square).
MAX_AUTO_SCALE = 2.0
# Windows overlap by at least this many input pixels (context for objects near a seam).
MIN_OVERLAP_PIXELS = 32
# Margin added on both sides of the largest object when sizing the overlap (input pixels): boxes are
# predicted a little larger or smaller than the object.
SEAM_MARGIN_PIXELS = 3
# Training: a box cut by a window edge is kept when at least this share of its area is inside the
# window; a smaller visible part becomes an ignore region (neither object nor background).
KEEP_VISIBLE_SHARE = 0.5
# Training: windows without any object are kept at most at this ratio to windows with objects
# (chosen with the split seed), so that background is seen without drowning the objects.
EMPTY_WINDOWS_PER_WINDOW_WITH_OBJECTS = 0.25
# What auto means in the config field.
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class PixelScale:
    """How a model sees images.

    Attributes:
        scale: network-input pixels per image pixel (1.0 = native resolution).
        window: side of the square network input in pixels (the config's ``image_size``).
        overlap: overlap of neighbouring windows in input pixels at prediction: the largest
            annotated object plus seam margins, so every object lies whole in some window.
        training_overlap: overlap of the training windows: the median of the objects' longer
            sides plus margins (at least ``MIN_OVERLAP_PIXELS``, at most ``overlap``). Larger objects
            may be cut in every window that holds them; each part is kept where half of the object is
            visible and is an ignore region otherwise. It keeps the training cost close to the pixels
            of the resized images (windows are the costly part: every one is a full network input).
        reason: one plain sentence saying why (printed by the data check and in both PDFs).
        chosen_by: ``"auto"`` or ``"user"``.
    """

    scale: float
    window: int
    overlap: int
    reason: str = ""
    chosen_by: str = AUTO
    training_overlap: int = 0

    def __post_init__(self):
        if not self.training_overlap:
            object.__setattr__(self, "training_overlap", self.overlap)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "PixelScale":
        return cls(scale=float(values["scale"]), window=int(values["window"]), overlap=int(values["overlap"]),
                   reason=str(values.get("reason", "")), chosen_by=str(values.get("chosen_by", AUTO)),
                   training_overlap=int(values.get("training_overlap", 0)))

    def windows_for(self, width: int, height: int, object_size_ratio: float = 1.0, training: bool = False) -> int:
        """How many windows an image of ``width`` x ``height`` px is cut into (for prediction, or training)."""
        scaled_height, scaled_width = scaled_shape(height, width, self.scale / object_size_ratio)
        overlap = self.training_overlap if training else self.overlap
        return len(window_starts(scaled_width, self.window, overlap)) * len(
            window_starts(scaled_height, self.window, overlap))

    def sentence(self) -> str:
        """'Images are cut into 384-px windows at scale 0.6 ...' for notebooks and reports."""
        return (f"Images are presented at pixel scale {self.scale:g} (network pixels per image pixel) in "
                f"{self.window}×{self.window}-px windows overlapping by {self.overlap} px ({self.chosen_by}): "
                f"{self.reason}")


def parse_scale(value: str | float) -> float | None:
    """The config's ``pixel_scale`` text as a number, or None for ``auto``.

    Raises:
        ValueError: neither ``auto`` nor a number (``helpers.detection.config`` turns it into a ConfigError).
    """
    text = str(value).strip().lower().replace(",", ".")
    if text in ("", AUTO):
        return None
    return float(text)


def typical_size(widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """The size of a box as anchors see it: sqrt(width x height), pixels; float [N]."""
    return np.sqrt(np.maximum(np.asarray(widths, float), 0) * np.maximum(np.asarray(heights, float), 0))


def _round_scale(scale: float, up: bool = False) -> float:
    """Three significant digits, so that printed and recorded scales agree (rounded up with ``up``,
    so that a scale chosen to reach a size still reaches it)."""
    rounded = float(f"{scale:.3g}")
    if up and rounded < scale:
        digits = 2 - int(math.floor(math.log10(scale)))
        rounded = math.ceil(scale * 10**digits) / 10**digits
    return rounded


def choose_scale(box_sizes: Mapping[str, np.ndarray], image_sizes: np.ndarray, window: int,
                 requested: float | None = None) -> PixelScale:
    """The pixel scale, window overlap and the reason for them.

    Args:
        box_sizes: class name -> float [N, 2] box (width, height) in image pixels (usable boxes).
        image_sizes: float [M, 2] image (width, height) in pixels.
        window: the network's input side S (``image_size``).
        requested: a scale the user typed (wins), or None for ``auto``.

    Returns:
        ``PixelScale``. With ``auto``: the scale that fits the median image into one window,
        raised so that every class's median box is at least ``MIN_OBJECT_PIXELS`` (at most
        ``MAX_AUTO_SCALE``), and lowered again where the largest box would not fit one window
        (never below the one-window scale).
    """
    image_sizes = np.asarray(image_sizes, dtype=float).reshape(-1, 2)
    longest = float(np.median(image_sizes.max(axis=1))) if len(image_sizes) else float(window)
    whole = window / max(longest, 1.0)
    medians = {name: float(np.median(typical_size(sizes[:, 0], sizes[:, 1])))
               for name, sizes in box_sizes.items() if len(sizes)}
    all_sizes = [np.asarray(sizes, float).reshape(-1, 2) for sizes in box_sizes.values() if len(sizes)]
    largest_side = float(max((sizes.max() for sizes in all_sizes), default=0.0))
    if requested is not None:
        scale, chosen_by = float(requested), "user"
        reason = f"the scale typed in pixel_scale."
    elif not medians:
        scale, chosen_by = _round_scale(whole), AUTO
        reason = f"no boxes to measure, so the median image ({longest:.0f} px) fits one window."
    else:
        smallest_class = min(medians, key=medians.get)
        needed = MIN_OBJECT_PIXELS / max(medians[smallest_class], 1e-6)
        scale = max(whole, needed)
        if scale > whole and largest_side > 0:
            # Tiles are used: the largest object must still fit inside one window. (Small objects win
            # over large ones beyond that: a class below the smallest anchor is never found at all,
            # while an object larger than the overlap is still reported, see merge_detections.)
            scale = max(whole, min(scale, (window - 2 * SEAM_MARGIN_PIXELS) / largest_side))
        scale = _round_scale(min(scale, max(MAX_AUTO_SCALE, whole)), up=scale > whole)
        chosen_by = AUTO
        at_scale = medians[smallest_class] * scale
        if scale <= _round_scale(whole) + 1e-9:
            reason = (f"the median image ({longest:.0f} px) fits one window, and the smallest class "
                      f"({smallest_class}, median {medians[smallest_class]:.0f} px) is then {at_scale:.0f} px wide.")
        else:
            reason = (f"the smallest class ({smallest_class}, median {medians[smallest_class]:.0f} px) must be at "
                      f"least {MIN_OBJECT_PIXELS:.0f} px for the smallest anchor ({SMALLEST_ANCHOR_PIXELS} px); it is "
                      f"{at_scale:.0f} px at this scale (shrinking the whole {longest:.0f}-px image into one window "
                      f"would make it {medians[smallest_class] * whole:.0f} px).")
    overlap = overlap_for(largest_side * scale, window)
    longer_sides = np.concatenate([sizes.max(axis=1) for sizes in all_sizes]) if all_sizes else np.zeros(1)
    training_overlap = min(overlap, overlap_for(float(np.median(longer_sides)) * scale, window))
    return PixelScale(scale=scale, window=int(window), overlap=overlap, reason=reason, chosen_by=chosen_by,
                      training_overlap=training_overlap)


def overlap_for(largest_object_input_pixels: float, window: int) -> int:
    """Window overlap in input pixels: the largest object plus a seam margin on both sides,
    at least ``MIN_OVERLAP_PIXELS``, at most half a window, rounded up to a multiple of 8."""
    wanted = max(MIN_OVERLAP_PIXELS, largest_object_input_pixels + 2 * SEAM_MARGIN_PIXELS)
    return int(min(window // 2, 8 * math.ceil(wanted / 8)))


def object_sizes(box_sizes: Mapping[str, np.ndarray], scale: float) -> dict[str, dict[str, float]]:
    """Per class, box size as the network sees it: sqrt(w x h) x scale, input pixels.

    Returns:
        class -> {"boxes", "median", "p5", "p95"} (pixels), classes in the order given.
    """
    table = {}
    for name, sizes in box_sizes.items():
        sizes = np.asarray(sizes, float).reshape(-1, 2)
        if not len(sizes):
            continue
        values = typical_size(sizes[:, 0], sizes[:, 1]) * scale
        table[name] = {"boxes": int(len(values)), "median": float(np.median(values)),
                       "p5": float(np.percentile(values, 5)), "p95": float(np.percentile(values, 95))}
    return table


def size_advice(sizes: Mapping[str, Mapping[str, float]], pixel_scale: PixelScale) -> list[str]:
    """One plain line per class that the anchors cannot match at this scale (empty when all fit).

    Args:
        sizes: ``object_sizes`` at ``pixel_scale.scale``.
        pixel_scale: the scale in use.
    """
    lines = []
    for name, values in sizes.items():
        median = values["median"]
        if median < MIN_OBJECT_PIXELS - 0.05:
            wanted = _round_scale(pixel_scale.scale * MIN_OBJECT_PIXELS / max(median, 1e-6))
            lines.append(f"{name} are {median:.0f} px wide at pixel scale {pixel_scale.scale:g} (window "
                         f"{pixel_scale.window}): the smallest anchor is {SMALLEST_ANCHOR_PIXELS} px, so the model "
                         f"cannot match them. Set pixel_scale to {wanted:g} or more (or leave it on 'auto'), "
                         f"so that they are at least {MIN_OBJECT_PIXELS:.0f} px.")
        elif values["p95"] > LARGEST_ANCHOR_PIXELS:
            wanted = _round_scale(pixel_scale.scale * LARGEST_ANCHOR_PIXELS / values["p95"])
            lines.append(f"{name} are up to {values['p95']:.0f} px wide at pixel scale {pixel_scale.scale:g}: larger "
                         f"than the largest anchor ({LARGEST_ANCHOR_PIXELS} px). Set pixel_scale to {wanted:g} or less.")
        elif values["p95"] > pixel_scale.overlap - 2 * SEAM_MARGIN_PIXELS and values["p95"] <= pixel_scale.window:
            lines.append(f"{name} are up to {values['p95']:.0f} px wide at pixel scale {pixel_scale.scale:g}, more than "
                         f"the {pixel_scale.overlap}-px overlap of the {pixel_scale.window}-px windows: an object cut "
                         f"by a seam may be reported in two parts. Raise image_size to keep them whole.")
        elif values["p95"] > pixel_scale.window - 2 * SEAM_MARGIN_PIXELS:
            lines.append(f"{name} are up to {values['p95']:.0f} px wide at pixel scale {pixel_scale.scale:g}, wider "
                         f"than the {pixel_scale.window}-px window. Lower pixel_scale or raise image_size.")
    return lines


# ----- windows ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Window:
    """One window, in the pixels of the image resized by the scale (input pixels).

    Attributes:
        x, y: top-left corner.
        width, height: size (``window`` except in a dimension where the whole image is smaller).
    """

    x: int
    y: int
    width: int
    height: int


def scaled_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of an image resized by ``scale``, at least 1 px each."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start positions of windows along one axis of ``length`` px (the last aligned to the end).

    Neighbouring windows overlap by at least ``overlap`` px; one window when ``length <= window``.
    """
    if length <= window:
        return [0]
    step = max(1, window - overlap)
    count = math.ceil((length - window) / step) + 1
    return sorted({min(index * step, length - window) for index in range(count)})


def window_grid(scaled_height: int, scaled_width: int, window: int, overlap: int) -> list[Window]:
    """Every window of an image of ``scaled_height`` x ``scaled_width`` input pixels, row by row."""
    return [Window(x, y, min(window, scaled_width), min(window, scaled_height))
            for y in window_starts(scaled_height, window, overlap)
            for x in window_starts(scaled_width, window, overlap)]


class ImageSource:
    """Pixels of one image, read region by region (uint8 RGB, as ``helpers.images.read_image``)."""

    height: int
    width: int

    def read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """uint8 [bottom - top, right - left, 3] of the image's own pixels."""
        raise NotImplementedError


class ArraySource(ImageSource):
    """An image already decoded in memory."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.height, self.width = pixels.shape[:2]

    def read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        return self.pixels[top:bottom, left:right]


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 [H, W, 3] to [height, width, 3]: area averaging when shrinking (no aliasing of
    fine structure), bilinear when enlarging."""
    import cv2

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return np.ascontiguousarray(pixels)
    shrinking = width < pixels.shape[1] or height < pixels.shape[0]
    return cv2.resize(np.ascontiguousarray(pixels), (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclasses.dataclass
class ScaledImage:
    """An image seen at a pixel scale: its windows and the way back to its own pixels.

    Attributes:
        source: where the pixels come from.
        scale: the scale asked for; ``x_scale``/``y_scale`` are the exact factors after rounding
            the resized size to whole pixels.
        height, width: size of the resized image (input pixels).
    """

    source: ImageSource
    scale: float
    height: int = 0
    width: int = 0

    def __post_init__(self):
        self.height, self.width = scaled_shape(self.source.height, self.source.width, self.scale)

    @property
    def x_scale(self) -> float:
        return self.width / self.source.width

    @property
    def y_scale(self) -> float:
        return self.height / self.source.height

    def windows(self, window: int, overlap: int) -> list[Window]:
        return window_grid(self.height, self.width, window, overlap)

    def pixels(self, area: Window) -> np.ndarray:
        """uint8 [area.height, area.width, 3]: the window's input pixels.

        Only the image region under the window (plus one pixel) is read and resized, so memory
        stays that of a window whatever the image size.
        """
        left = _aligned_start(area.x, self.x_scale)
        top = _aligned_start(area.y, self.y_scale)
        right = min(self.source.width, int(math.ceil((area.x + area.width) / self.x_scale)) + 1)
        bottom = min(self.source.height, int(math.ceil((area.y + area.height) / self.y_scale)) + 1)
        region = self.source.read(top, bottom, left, right)
        resized_width = max(1, int(round((right - left) * self.x_scale)))
        resized_height = max(1, int(round((bottom - top) * self.y_scale)))
        resized = resize(region, resized_width, resized_height)
        dx, dy = int(round(area.x - left * self.x_scale)), int(round(area.y - top * self.y_scale))
        crop = resized[max(0, dy):dy + area.height, max(0, dx):dx + area.width]
        if crop.shape[0] != area.height or crop.shape[1] != area.width:  # rounding at the image border
            crop = np.pad(crop, ((0, area.height - crop.shape[0]), (0, area.width - crop.shape[1]), (0, 0)),
                          mode="edge")
        return np.ascontiguousarray(crop)

    def to_image_pixels(self, boxes: np.ndarray, area: Window) -> np.ndarray:
        """float [K, 4] (xmin, ymin, xmax, ymax) window pixels -> the image's own pixels, clipped."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        factor = np.array([self.x_scale, self.y_scale, self.x_scale, self.y_scale])
        shifted = (boxes + [area.x, area.y, area.x, area.y]) / factor
        return np.clip(shifted, 0.0, [self.source.width, self.source.height] * 2)

    def to_input_pixels(self, boxes: np.ndarray, area: Window) -> np.ndarray:
        """float [K, 4] (xmin, ymin, xmax, ymax) image pixels -> pixels of ``area`` (not clipped)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        factor = np.array([self.x_scale, self.y_scale, self.x_scale, self.y_scale])
        return boxes * factor - [area.x, area.y, area.x, area.y]


def _aligned_start(start: int, scale: float) -> int:
    """The image pixel where a window's region starts: at most ``start / scale``, chosen among the few
    pixels before it so that it lands closest to a whole input pixel (exact for scales like 0.5 or
    0.6), so that windows read region by region agree with the whole resized image."""
    last = int(math.floor(start / scale))
    candidates = range(max(0, last - 4), last + 1)
    return min(candidates, key=lambda pixel: (round((start - pixel * scale) % 1.0, 6) % 1.0, -pixel))


def owned_by_window(boxes: np.ndarray, area: Window, scaled_width: int, scaled_height: int, window: int,
                    overlap: int) -> np.ndarray:
    """bool [K]: which window-pixel boxes have their centre in the window's *core*.

    Each window owns the part of the image closer to it than to its neighbours: its core ends
    halfway through the overlap with each neighbour (and at the image border where it has none),
    so the cores tile the image without gaps or overlaps. An object no larger than the overlap whose
    centre lies in a window's core is whole in that window; a piece of an object cut by that
    window's edge has its centre outside the core (the object belongs to the neighbour, which sees it
    whole). Keeping each window's owned detections therefore reports every object once, from the
    window that sees it whole; an object larger than the overlap is reported once, possibly cut.

    Args:
        boxes: float [K, 4] (xmin, ymin, xmax, ymax) in the pixels of ``area``.
        area: the window, in input pixels of the resized image.
        scaled_width, scaled_height: size of the resized image (input pixels).
        window, overlap: the grid's window side and overlap (``window_grid``'s arguments).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 + area.x
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 + area.y
    low_x, high_x = _core(window_starts(scaled_width, window, overlap), area.x, min(window, scaled_width), scaled_width)
    low_y, high_y = _core(window_starts(scaled_height, window, overlap), area.y, min(window, scaled_height), scaled_height)
    return (centre_x >= low_x) & (centre_x < high_x) & (centre_y >= low_y) & (centre_y < high_y)


def _core(starts: list[int], start: int, size: int, length: int) -> tuple[float, float]:
    """[low, high) of the core of the window starting at ``start`` along one axis."""
    index = starts.index(start)
    low = -math.inf if index == 0 else (start + starts[index - 1] + size) / 2
    high = math.inf if index == len(starts) - 1 else (start + size + starts[index + 1]) / 2
    return low, high


def merge_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, owned: np.ndarray,
                     iou_threshold: float) -> np.ndarray:
    """Indices of the detections kept after joining the windows of one image.

    Args:
        boxes: float [K, 4] (xmin, ymin, xmax, ymax) in the image's own pixels.
        scores: float [K].
        classes: int [K] class ids (suppression is class by class).
        owned: bool [K], ``owned_by_window`` of each detection's window.
        iou_threshold: the run's ``nms_iou_threshold``.

    Returns:
        int [J] indices into the inputs, highest score first: the owned detections, suppressed class
        by class with TensorFlow's ``non_max_suppression`` (an object whose centre lies on the border
        of two cores can be owned twice: its two boxes are then one object).
    """
    import tensorflow as tf

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    owned = np.asarray(owned, dtype=bool).reshape(-1)
    kept = []
    for class_id in np.unique(classes[owned]):
        candidates = np.flatnonzero(owned & (classes == class_id))
        ordered = boxes[candidates][:, [1, 0, 3, 2]]  # TensorFlow wants (ymin, xmin, ymax, xmax)
        selected = tf.image.non_max_suppression(ordered, scores[candidates], max_output_size=len(candidates),
                                                iou_threshold=iou_threshold).numpy()
        kept.extend(candidates[selected].tolist())
    kept = np.asarray(kept, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")] if len(kept) else kept


# ----- training windows ----------------------------------------------------------------

@dataclasses.dataclass
class TrainingWindow:
    """One training window of an image and its boxes.

    Attributes:
        area: the window (input pixels of the resized image).
        boxes: float [N, 4] kept boxes, window pixels, clipped to the window.
        labels: the kept boxes' class names.
        ignore_boxes: float [M, 4] regions of objects cut by the window edge and mostly outside it
            (window pixels, clipped): neither an object nor background in training.
    """

    area: Window
    boxes: np.ndarray
    labels: list[str]
    ignore_boxes: np.ndarray


def training_windows(scaled: ScaledImage, boxes: np.ndarray, labels: Sequence[str], window: int, overlap: int,
                     rng: np.random.Generator | None = None) -> list[TrainingWindow]:
    """Cut one annotated image into training windows.

    Args:
        scaled: the image at the run's scale.
        boxes: float [N, 4] (xmin, ymin, xmax, ymax) in the image's own pixels.
        labels: N class names.
        window, overlap: the run's window and overlap (input pixels).
        rng: chooses which windows without objects are kept (all are kept when None).

    Returns:
        The windows to train on: every window holding a kept box, plus windows without objects at
        most ``EMPTY_WINDOWS_PER_WINDOW_WITH_OBJECTS`` per window with objects (at least one when
        the image has no object at all, so that background images still teach background).
    """
    with_objects, empty = [], []
    for area in scaled.windows(window, overlap):
        local = scaled.to_input_pixels(boxes, area)
        full_area = np.clip(local[:, 2] - local[:, 0], 0, None) * np.clip(local[:, 3] - local[:, 1], 0, None)
        clipped = np.clip(local, 0, [area.width, area.height, area.width, area.height])
        visible = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
        share = visible / np.maximum(full_area, 1e-9)
        keep = (visible > 0) & (share >= KEEP_VISIBLE_SHARE)
        ignore = (visible > 0) & ~keep
        item = TrainingWindow(area, clipped[keep].astype(np.float32),
                              [label for label, flag in zip(labels, keep) if flag], clipped[ignore].astype(np.float32))
        (with_objects if keep.any() else empty).append(item)
    if len(with_objects) + len(empty) == 1 or rng is None:
        return with_objects + empty
    allowed = max(1 if not with_objects else 0, int(math.floor(EMPTY_WINDOWS_PER_WINDOW_WITH_OBJECTS * len(with_objects))))
    if len(empty) > allowed:
        chosen = sorted(rng.choice(len(empty), size=allowed, replace=False).tolist())
        empty = [empty[index] for index in chosen]
    return with_objects + empty


# ----- image sources -----------------------------------------------------------------------

class TiffSource(ImageSource):
    """A TIFF read region by region: tifffile's zarr store (tiled or striped, compressed or not)
    when ``zarr`` is installed, else a memory map of an uncompressed file. 8-bit only: other sample
    types need the whole image's percentiles (``helpers.images`` stretches per image), so they are
    decoded whole."""

    def __init__(self, path: pathlib.Path, array):
        self.path, self.array = path, array
        self.height, self.width = int(array.shape[0]), int(array.shape[1])

    def read(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        region = np.asarray(self.array[top:bottom, left:right])
        if region.ndim == 2:
            region = np.repeat(region[:, :, None], 3, axis=2)
        return np.ascontiguousarray(region[:, :, :3])


def _region_reader(path: pathlib.Path):
    """An array-like reading regions of the first page of an 8-bit TIFF, or None."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        if page.dtype != np.uint8 or len(page.shape) not in (2, 3) or (len(page.shape) == 3 and page.shape[2] not in (3, 4)):
            return None
        contiguous = page.is_contiguous
    try:
        import zarr

        store = tifffile.imread(path, aszarr=True, key=0)
        return zarr.open(store, mode="r")
    except ImportError:
        pass  # zarr is optional: an uncompressed file is memory-mapped instead
    if contiguous:
        return tifffile.memmap(path, page=0, mode="r")
    return None


def open_image(path: str | pathlib.Path, min_pixels_for_regions: int = 4096 * 4096) -> ImageSource:
    """An ``ImageSource`` for an image file.

    TIFFs of at least ``min_pixels_for_regions`` pixels are read region by region where their
    layout allows it (see ``TiffSource``); every other image is decoded once by
    ``helpers.images.read_image``.
    """
    from helpers import images

    path = pathlib.Path(path)
    if path.suffix.lower() in images.TIFF_EXTENSIONS:
        width, height = images.image_size(path)
        if width * height >= min_pixels_for_regions:
            import tifffile

            try:
                reader = _region_reader(path)
            except (tifffile.TiffFileError, OSError, ValueError):
                reader = None  # read_image below decodes it, or says plainly why it cannot
            if reader is not None:
                return TiffSource(path, reader)
    return ArraySource(images.read_image(path))


def measure(items: Sequence, usable_objects) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Box and image sizes of annotated items, what ``choose_scale`` needs.

    Args:
        items: ``helpers.detection.dataset.DatasetItem`` objects.
        usable_objects: item -> cleaned boxes (``DetectionDataset.usable_objects``).

    Returns:
        (class -> float [N, 2] box (width, height) px, float [M, 2] image (width, height) px).
    """
    from helpers import images

    sizes: dict[str, list[tuple[float, float]]] = {}
    image_sizes = []
    for item in items:
        width, height = item.annotation.width, item.annotation.height
        if not width or not height:
            width, height = images.image_size(item.image_path)
        image_sizes.append((float(width), float(height)))
        for obj in usable_objects(item):
            sizes.setdefault(obj.name, []).append((obj.xmax - obj.xmin, obj.ymax - obj.ymin))
    return ({name: np.asarray(values, dtype=float).reshape(-1, 2) for name, values in sorted(sizes.items())},
            np.asarray(image_sizes, dtype=float).reshape(-1, 2))


def iterate_batches(items: Sequence, size: int) -> Iterator[Sequence]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]
