"""Augmentation multiplication: write augmented copies of training images with their boxes.

``multiply_dataset(items, output_dir, factor, seed, usable_objects)`` writes, for every
training image, ``factor - 1`` copies (more for images with rare classes, see below) as
``output_dir/images/<stem>_aug<k>.png`` plus ``output_dir/annotations/<stem>_aug<k>.xml``
(PASCAL VOC). The source folders are only read; ``output_dir`` must lie outside them (it is
the run folder's ``augmented/``).

Each copy gets its own random transform, drawn from a numpy Generator seeded by
``(seed, stem, k)``: the same seed gives the same bytes on every call, and a copy does not
change when other images are added. A transform is, in this order:

1. geometry (boxes follow exactly): horizontal flip (p 0.5), vertical flip (p 0.5), a
   multiple of 90° (k = 0..3, uniform; width and height swap for odd k), then with p 0.5 a
   small rotation (uniform ±15°) and with p 0.5 a scale of 0.8–1.2 about the centre with a
   random shift that keeps the crop inside the image (scale > 1) or the image inside the
   canvas (scale < 1). Flips and 90° turns move pixels exactly (numpy); the small rotation and
   scale are one ``cv2.warpAffine`` (bilinear), the uncovered border filled with the image's
   median colour (a background-like value, not mirrored cells that would have no box).
2. intensity: contrast 0.8–1.2 about the image mean (p 0.5), brightness ±25 grey levels
   (p 0.5), gamma 0.8–1.25 (p 0.5), Gaussian blur sigma 0.5–1.5 px (p 0.25), Gaussian noise
   sigma 2–8 grey levels (p 0.25).

Boxes: coordinates are continuous pixel edges (as in ``helpers.voc``). The four corners of
each box are mapped through the geometric transform and the new box is their bounding box.
For flips, 90° turns and scaling this is exact; for a small rotation it is the smallest
upright box containing the rotated box (so it is slightly larger than a rotated round cell).
A box reaching outside the new image is clipped to it (``clip_policy="clip"``, counted as
clipped, written with ``<truncated>1``) or dropped (``clip_policy="drop"``). A box whose
visible part is below 40 % of its transformed area, or less than 1 px wide or high, is dropped
and counted. Nothing is lost silently: ``AugmentationResult`` counts it all and
``manifest.json`` lists every copy with its transform and counts.

Rare classes: with ``rare_class_boost > 0``, an image containing a rare class gets
``max(1, round(rare_class_boost * (factor - 1)))`` extra copies. A class is rare when its
number of boxes in the given training images is below half that of the most common class
(half the maximum rather than the median: with one common and two rare classes, as in BCCD,
the median would call one of the two rare classes common). Rare classes then make up a
larger share of the boxes a detector sees, which counters collapse to the majority class.

Resuming: ``output_dir/manifest.json`` records the parameters and a fingerprint of the source
boxes. Called again with the same parameters after a complete run, the copies are reused
without rewriting (``result.reused``); with other parameters, or when ``output_dir`` holds
other files, a ``ConfigError`` asks for a new ``model_name`` (nothing is deleted).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from helpers import errors, figures, images, voc
from helpers import progress as progress_module
from helpers.detection import dataset as detection_dataset

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CLIP_POLICIES = ("clip", "drop")
MINIMUM_VISIBLE_FRACTION = 0.4
MINIMUM_SIDE_PIXELS = 1.0
MAXIMUM_FACTOR = 8
MAXIMUM_RARE_CLASS_BOOST = 4.0
RARE_CLASS_SHARE_OF_MOST_COMMON = 0.5
PREVIEW_EXAMPLES = 8
COORDINATE_DECIMALS = 2
# Sampling ranges (see the module docstring).
SMALL_ANGLE_DEGREES = 15.0
SCALE_RANGE = (0.8, 1.2)
CONTRAST_RANGE = (0.8, 1.2)
BRIGHTNESS_GREY_LEVELS = 25.0
GAMMA_RANGE = (0.8, 1.25)
BLUR_SIGMA_RANGE = (0.5, 1.5)
NOISE_SIGMA_RANGE = (2.0, 8.0)


@dataclasses.dataclass(frozen=True)
class Transform:
    """One sampled augmentation (identity by default).

    Attributes:
        horizontal_flip, vertical_flip: mirror left-right / top-bottom (applied first).
        quarter_turns: 0..3 counterclockwise 90° turns (as ``numpy.rot90``), after the flips.
        angle_degrees: counterclockwise small-angle rotation about the centre, after the turns.
        scale: zoom about the centre (> 1 crops, < 1 shrinks onto a filled canvas).
        shift_x, shift_y: pixels the zoomed/rotated image is moved by.
        contrast: factor about the image mean (1 = unchanged).
        brightness: grey levels added (0..255 scale).
        gamma: exponent on intensities scaled to 0..1 (1 = unchanged).
        blur_sigma: Gaussian blur sigma in pixels (0 = none).
        noise_sigma: Gaussian noise sigma in grey levels (0 = none).
        noise_seed: seed of the noise pattern.
    """

    horizontal_flip: bool = False
    vertical_flip: bool = False
    quarter_turns: int = 0
    angle_degrees: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) in pixels of the transformed image: swapped for an odd number of quarter turns."""
        return (height, width) if self.quarter_turns % 2 else (width, height)

    def describe(self) -> str:
        """Plain words, e.g. 'horizontal flip, 90° x1, rotate 7.2°, scale 1.10, blur'."""
        parts = [name for name, used in (("horizontal flip", self.horizontal_flip),
                                         ("vertical flip", self.vertical_flip)) if used]
        if self.quarter_turns % 4:
            parts.append(f"turn {90 * (self.quarter_turns % 4)}°")
        if self.angle_degrees:
            parts.append(f"rotate {self.angle_degrees:.1f}°")
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:.2f}")
        for name, changed in (("contrast", self.contrast != 1.0), ("brightness", self.brightness != 0.0),
                              ("gamma", self.gamma != 1.0), ("blur", self.blur_sigma > 0),
                              ("noise", self.noise_sigma > 0)):
            if changed:
                parts.append(name)
        return ", ".join(parts) or "no change"


@dataclasses.dataclass
class BoxFit:
    """Transformed boxes fitted to the new image.

    Attributes:
        boxes: float64 [K, 4] pixels (xmin, ymin, xmax, ymax) of the kept boxes, inside the image.
        kept: int [K] index of each kept box in the input.
        clipped: bool [K] the kept box was cut at the image border.
        dropped: number of boxes dropped (outside, too little visible, degenerate, or policy "drop").
    """

    boxes: np.ndarray
    kept: np.ndarray
    clipped: np.ndarray
    dropped: int


@dataclasses.dataclass
class AugmentationResult:
    """What ``multiply_dataset`` wrote (or found already written).

    Attributes:
        output_dir: the folder holding images/, annotations/ and manifest.json.
        originals: training images given.
        copies_written: augmented images in ``output_dir`` (written now or reused).
        boxes_written: boxes in the augmented annotations.
        boxes_clipped: boxes cut at the new image border (kept, ``<truncated>1``).
        boxes_dropped: boxes left out of a copy (outside, less than 40 % visible, or degenerate).
        copies_per_class: {class: augmented images containing at least one box of it}.
        examples: (original stem, augmented stem) pairs for the preview.
        reused: True when the copies were already there from an identical earlier call.
        parameters: what the copies depend on (as recorded in manifest.json).
        boxes_per_class: {class: boxes written}.
        rare_classes: classes that got extra copies (empty when the boost is 0).
        example_sources: {original stem: (image path, usable boxes)} of the examples.
    """

    output_dir: pathlib.Path
    originals: int
    copies_written: int
    boxes_written: int
    boxes_clipped: int
    boxes_dropped: int
    copies_per_class: dict[str, int]
    examples: list[tuple[str, str]]
    reused: bool
    parameters: dict[str, Any]
    boxes_per_class: dict[str, int] = dataclasses.field(default_factory=dict)
    rare_classes: list[str] = dataclasses.field(default_factory=list)
    example_sources: dict[str, tuple[pathlib.Path, list[voc.VocObject]]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)

    def summary(self) -> str:
        """A few plain-language lines: copies, boxes clipped and dropped, copies per class."""
        factor = self.parameters.get("factor", 1)
        if not self.copies_written:
            return (f"No augmented copies (augmentation factor {factor}): the {self.originals} training images "
                    "are used as they are.")
        lines = [f"Augmentation (seed {self.parameters.get('seed')}): {self.copies_written} augmented copies of "
                 f"{self.originals} training images ({factor - 1} per image"
                 + (", more for images with a rare class" if self.rare_classes else "") + f"), in {self.output_dir}."]
        if self.rare_classes:
            lines.append(f"Rare classes (fewer than half the boxes of the most common class), given extra copies "
                         f"(boost {self.parameters.get('rare_class_boost')}): {', '.join(self.rare_classes)}.")
        lines.append(f"Boxes: {self.boxes_written} written, {self.boxes_clipped} of them clipped at the new image "
                     f"border; {self.boxes_dropped} dropped (left the image, or less than 40 % still visible).")
        per_class = ", ".join(f"{name} {count}" for name, count in self.copies_per_class.items()) or "none"
        lines.append(f"Augmented copies showing each class: {per_class}.")
        if self.reused:
            lines.append("These copies were already there from an earlier run with the same settings and were reused.")
        return "\n".join(lines)


# ---------------------------------------------------------------- sampling and applying transforms


def sample_transform(rng: np.random.Generator) -> Transform:
    """Draw one transform (probabilities and ranges in the module docstring).

    Every draw is made whether or not it is used, so a Generator advances the same way each time.
    """
    flips = rng.random(2) < 0.5
    quarter_turns = int(rng.integers(0, 4))
    use_angle, use_scale = rng.random(2) < 0.5
    angle = float(rng.uniform(-SMALL_ANGLE_DEGREES, SMALL_ANGLE_DEGREES))
    scale = float(rng.uniform(*SCALE_RANGE))
    shift_fractions = rng.uniform(-1.0, 1.0, size=2)
    use_contrast, use_brightness, use_gamma = rng.random(3) < 0.5
    contrast = float(rng.uniform(*CONTRAST_RANGE))
    brightness = float(rng.uniform(-BRIGHTNESS_GREY_LEVELS, BRIGHTNESS_GREY_LEVELS))
    gamma = float(math.exp(rng.uniform(math.log(GAMMA_RANGE[0]), math.log(GAMMA_RANGE[1]))))
    use_blur, use_noise = rng.random(2) < 0.25
    blur_sigma = float(rng.uniform(*BLUR_SIGMA_RANGE))
    noise_sigma = float(rng.uniform(*NOISE_SIGMA_RANGE))
    noise_seed = int(rng.integers(0, 2**31 - 1))
    scale = scale if use_scale else 1.0
    # The shift is a fraction of the slack |scale - 1| * size / 2, applied in transform_image_and_boxes.
    return Transform(horizontal_flip=bool(flips[0]), vertical_flip=bool(flips[1]), quarter_turns=quarter_turns,
                     angle_degrees=angle if use_angle else 0.0, scale=scale,
                     shift_x=float(shift_fractions[0]) if use_scale else 0.0,
                     shift_y=float(shift_fractions[1]) if use_scale else 0.0,
                     contrast=contrast if use_contrast else 1.0, brightness=brightness if use_brightness else 0.0,
                     gamma=gamma if use_gamma else 1.0, blur_sigma=blur_sigma if use_blur else 0.0,
                     noise_sigma=noise_sigma if use_noise else 0.0, noise_seed=noise_seed)


def geometry_matrix(transform: Transform, width: int, height: int) -> np.ndarray:
    """The whole geometric transform as a 3x3 matrix on continuous pixel-edge coordinates.

    A point (x, y) of the input (0 <= x <= width, 0 <= y <= height) goes to
    ``matrix @ (x, y, 1)`` in the output. ``shift_x``/``shift_y`` are fractions (-1..1) of the
    slack ``|scale - 1| * size / 2`` of the image after the quarter turns.
    """
    matrix = np.eye(3)
    if transform.horizontal_flip:
        matrix = np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]]) @ matrix
    if transform.vertical_flip:
        matrix = np.array([[1.0, 0, 0], [0, -1, height], [0, 0, 1]]) @ matrix
    turned_width, turned_height = width, height
    for _ in range(transform.quarter_turns % 4):
        # numpy.rot90: the right column becomes the top row, so (x, y) -> (y, width - x).
        matrix = np.array([[0.0, 1, 0], [-1, 0, turned_width], [0, 0, 1]]) @ matrix
        turned_width, turned_height = turned_height, turned_width
    return _warp_matrix(transform, turned_width, turned_height) @ matrix


def _warp_matrix(transform: Transform, width: int, height: int) -> np.ndarray:
    """3x3 matrix of the small rotation + scale + shift about the centre of a width x height image."""
    radians = math.radians(transform.angle_degrees)
    # Counterclockwise on screen, where y points down: x' = x cos + y sin, y' = -x sin + y cos.
    cosine, sine = transform.scale * math.cos(radians), transform.scale * math.sin(radians)
    slack = abs(transform.scale - 1.0) / 2.0
    centre_x, centre_y = width / 2.0, height / 2.0
    shift_x, shift_y = transform.shift_x * slack * width, transform.shift_y * slack * height
    return np.array([[cosine, sine, centre_x - cosine * centre_x - sine * centre_y + shift_x],
                     [-sine, cosine, centre_y + sine * centre_x - cosine * centre_y + shift_y],
                     [0.0, 0.0, 1.0]])


def _has_warp(transform: Transform) -> bool:
    return transform.angle_degrees != 0.0 or transform.scale != 1.0


def _apply_geometry(pixels: np.ndarray, transform: Transform) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H', W', 3]: flips and turns exactly, then the warp (bilinear)."""
    import cv2

    if transform.horizontal_flip:
        pixels = pixels[:, ::-1]
    if transform.vertical_flip:
        pixels = pixels[::-1]
    pixels = np.ascontiguousarray(np.rot90(pixels, transform.quarter_turns % 4))
    if not _has_warp(transform):
        return pixels
    height, width = pixels.shape[:2]
    matrix = _warp_matrix(transform, width, height)
    # OpenCV puts pixel centres at integers, our edges at integers: p' = A p + (A (0.5, 0.5) + b - 0.5).
    linear, offset = matrix[:2, :2], matrix[:2, 2]
    pixel_centre_matrix = np.hstack([linear, (linear @ np.array([0.5, 0.5]) + offset - 0.5)[:, None]])
    fill = tuple(float(value) for value in np.median(pixels.reshape(-1, pixels.shape[2]), axis=0))
    return cv2.warpAffine(pixels, pixel_centre_matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _apply_intensity(pixels: np.ndarray, transform: Transform) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3]: contrast, brightness, gamma, blur, noise in that order."""
    import cv2

    values = pixels.astype(np.float32)
    if transform.contrast != 1.0:
        mean = float(values.mean())
        values = (values - mean) * transform.contrast + mean
    if transform.brightness:
        values = values + transform.brightness
    if transform.gamma != 1.0:
        values = 255.0 * np.power(np.clip(values, 0, 255) / 255.0, transform.gamma)
    if transform.blur_sigma > 0:
        values = cv2.GaussianBlur(values, (0, 0), transform.blur_sigma)
    if transform.noise_sigma > 0:
        noise = np.random.default_rng(transform.noise_seed).normal(0.0, transform.noise_sigma, values.shape)
        values = values + noise.astype(np.float32)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def transform_boxes(boxes: np.ndarray, transform: Transform, width: int, height: int) -> np.ndarray:
    """Map boxes through the geometric part of ``transform`` (not clipped).

    Args:
        boxes: float [N, 4] pixels (xmin, ymin, xmax, ymax) in the width x height input.

    Returns:
        float64 [N, 4]: per box, the bounding box of its four transformed corners.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], axis=1)  # [N, 4, 2]
    matrix = geometry_matrix(transform, width, height)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)


def transform_image_and_boxes(pixels: np.ndarray, boxes: np.ndarray,
                              transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``transform`` to an image and its boxes.

    Args:
        pixels: uint8 [H, W, 3] RGB.
        boxes: float [N, 4] pixels (xmin, ymin, xmax, ymax).

    Returns:
        (uint8 [H', W', 3], float64 [N, 4] transformed boxes, NOT clipped: see ``fit_boxes_to_image``).
    """
    height, width = pixels.shape[:2]
    moved = transform_boxes(boxes, transform, width, height)
    return _apply_intensity(_apply_geometry(pixels, transform), transform), moved


def fit_boxes_to_image(boxes: np.ndarray, width: int, height: int, clip_policy: str = "clip") -> BoxFit:
    """Clip (or drop) transformed boxes at the image border; drop those too little visible.

    A box is dropped when its part inside [0, width] x [0, height] is below 40 % of its area,
    less than 1 px wide or high, or (policy "drop") when any of it is outside. The others are
    clipped to the image; ``clipped`` marks those that reached outside by more than 0.01 px.

    Args:
        boxes: float [N, 4] pixels (xmin, ymin, xmax, ymax).
        width, height: the image size in pixels.
        clip_policy: "clip" or "drop".
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inside = np.clip(boxes, 0.0, [width, height, width, height])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sides = np.stack([inside[:, 2] - inside[:, 0], inside[:, 3] - inside[:, 1]], axis=1)
    visible = np.prod(np.clip(sides, 0, None), axis=1)
    reaches_out = np.any(np.abs(inside - boxes) > 0.01, axis=1)
    keep = (sides.min(axis=1) >= MINIMUM_SIDE_PIXELS) & (visible >= MINIMUM_VISIBLE_FRACTION * areas) & (areas > 0)
    if clip_policy == "drop":
        keep &= ~reaches_out
    kept = np.flatnonzero(keep)
    return BoxFit(boxes=inside[kept], kept=kept, clipped=reaches_out[kept], dropped=int(len(boxes) - len(kept)))


# ---------------------------------------------------------------- checks and bookkeeping


def _check_parameters(factor: int, seed: int, rare_class_boost: float, clip_policy: str) -> None:
    """ConfigError naming the field for values outside the documented ranges."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or not 1 <= factor <= MAXIMUM_FACTOR:
        raise errors.ConfigError(f"augmentation_factor: {factor!r} is not a whole number from 1 to {MAXIMUM_FACTOR}. "
                                 "Set it to e.g. 4 (each image plus 3 augmented copies), or 1 for none.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise errors.ConfigError(f"seed: {seed!r} is not a whole number >= 0. Set e.g. 42.")
    if isinstance(rare_class_boost, bool) or not isinstance(rare_class_boost, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(rare_class_boost) <= MAXIMUM_RARE_CLASS_BOOST:
        raise errors.ConfigError(f"rare_class_boost: {rare_class_boost!r} is not a number from 0 to "
                                 f"{MAXIMUM_RARE_CLASS_BOOST:g}. Set 0 to turn it off, or e.g. 1.")
    if clip_policy not in CLIP_POLICIES:
        raise errors.ConfigError(f"clip_policy: {clip_policy!r} is not one of {', '.join(CLIP_POLICIES)}. "
                                 "Use 'clip' to keep the visible part of boxes cut by the border, 'drop' to drop them.")


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    return path == folder or folder in path.parents


def _check_output_dir(items: Sequence[detection_dataset.DatasetItem], output_dir: pathlib.Path) -> None:
    """ConfigError when output_dir is inside a source folder or a source folder is inside output_dir."""
    resolved = output_dir.resolve()
    for folder in sorted({path.resolve().parent for item in items for path in (item.image_path, item.annotation_path)}):
        if _inside(resolved, folder) or _inside(folder, resolved):
            raise errors.ConfigError(f"{output_dir}: the augmented copies would be written into or next to the "
                                     f"training data in {folder}. Choose a model_path outside your data folders.")
    stems = collections.Counter(item.stem for item in items)
    repeated = sorted(stem for stem, count in stems.items() if count > 1)
    if repeated:
        raise errors.DatasetError(f"{', '.join(repeated[:3])}: more than one training image has this name stem, so "
                                  "their copies would overwrite each other. Rename one of them.")


def rare_classes(boxes_per_class: dict[str, int]) -> list[str]:
    """Classes with fewer boxes than half the most common class's, sorted by name."""
    if not boxes_per_class:
        return []
    most = max(boxes_per_class.values())
    return sorted(name for name, count in boxes_per_class.items() if count < RARE_CLASS_SHARE_OF_MOST_COMMON * most)


def _copies_per_image(objects: dict[str, list[voc.VocObject]], factor: int, rare_class_boost: float,
                      rare: list[str]) -> dict[str, int]:
    """{stem: number of copies}: factor - 1, plus the boost's extra copies when the image shows a rare class."""
    base = factor - 1
    extra = max(1, int(math.floor(rare_class_boost * base + 0.5))) if rare_class_boost > 0 and base > 0 else 0
    rare_set = set(rare)
    return {stem: base + (extra if rare_set & {obj.name for obj in boxes} else 0) for stem, boxes in objects.items()}


def _fingerprint(items: Sequence[detection_dataset.DatasetItem], objects: dict[str, list[voc.VocObject]]) -> str:
    """sha256 of every source's stem, image file size, image size and usable boxes: changes when the data does."""
    digest = hashlib.sha256()
    for item in items:
        record = [item.stem, item.image_path.stat().st_size, item.annotation.width, item.annotation.height,
                  [[obj.name, obj.xmin, obj.ymin, obj.xmax, obj.ymax, obj.difficult] for obj in objects[item.stem]]]
        digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def _copy_rng(seed: int, stem: str, copy_number: int) -> np.random.Generator:
    """Generator of one copy, from (seed, stem, copy number): independent of the other images."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(stem.encode("utf-8")), copy_number]))


def _write_json(path: pathlib.Path, record: dict) -> None:
    """Write JSON through a temporary file, so an interrupted write never leaves half a manifest."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _differences(old: dict, new: dict) -> str:
    names = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    # The source lists and fingerprints are too long to show: say in words what changed.
    words = {"source_stems": "the list of training images", "source_fingerprint": "the training images or their boxes"}
    shown = [words.get(name) or f"{name} {old.get(name)!r} -> {new.get(name)!r}" for name in names]
    return "; ".join(shown) or "unknown"


def _read_manifest(output_dir: pathlib.Path, parameters: dict) -> dict | None:
    """The manifest of an identical, complete earlier call whose files all exist; None when output_dir is empty
    or the earlier call was interrupted with the same parameters. ConfigError when it holds something else."""
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return None
    manifest_path = output_dir / MANIFEST_NAME
    choose_new = "Choose a new model_name for a run with these settings (nothing was deleted)."
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise errors.ConfigError(f"{output_dir}: already holds files but no readable {MANIFEST_NAME} from this step. "
                                 f"{choose_new}") from None
    if not isinstance(manifest, dict) or manifest.get("parameters") != parameters:
        old = manifest.get("parameters") if isinstance(manifest, dict) else None
        raise errors.ConfigError(f"{output_dir}: holds augmented copies made with other settings "
                                 f"({_differences(old if isinstance(old, dict) else {}, parameters)}). {choose_new}")
    if not manifest.get("complete"):
        return None
    for copy in manifest.get("copies", []):
        for path in (output_dir / "images" / f"{copy['stem']}.png", output_dir / "annotations" / f"{copy['stem']}.xml"):
            if not path.is_file():
                return None
    return manifest


# ---------------------------------------------------------------- writing copies


def _augment_one(item: detection_dataset.DatasetItem, boxes: list[voc.VocObject], copies: int, seed: int, clip_policy: str,
                 output_dir: pathlib.Path) -> list[dict[str, Any]]:
    """Write the copies of one image; one manifest row per copy (stem, source, transform, counts, classes)."""
    pixels = images.read_image(item.image_path)
    height, width = pixels.shape[:2]
    coordinates = np.array([[obj.xmin, obj.ymin, obj.xmax, obj.ymax] for obj in boxes], dtype=np.float64)
    rows = []
    for copy_number in range(1, copies + 1):
        transform = sample_transform(_copy_rng(seed, item.stem, copy_number))
        new_pixels, moved = transform_image_and_boxes(pixels, coordinates, transform)
        new_width, new_height = transform.output_size(width, height)
        fit = fit_boxes_to_image(moved, new_width, new_height, clip_policy)
        stem = f"{item.stem}_aug{copy_number}"
        objects = [dataclasses.replace(boxes[index], xmin=round(float(box[0]), COORDINATE_DECIMALS),
                                       ymin=round(float(box[1]), COORDINATE_DECIMALS),
                                       xmax=round(float(box[2]), COORDINATE_DECIMALS),
                                       ymax=round(float(box[3]), COORDINATE_DECIMALS),
                                       truncated=bool(boxes[index].truncated or clipped), score=None)
                   for index, box, clipped in zip(fit.kept, fit.boxes, fit.clipped)]
        images.write_image(output_dir / "images" / f"{stem}.png", new_pixels)
        voc.write_voc(voc.VocAnnotation(f"{stem}.png", new_width, new_height, 3, objects),
                      output_dir / "annotations" / f"{stem}.xml")
        rows.append({"stem": stem, "source": item.stem, "transform": dataclasses.asdict(transform),
                     "description": transform.describe(), "boxes": len(objects),
                     "boxes_clipped": int(fit.clipped.sum()), "boxes_dropped": fit.dropped,
                     "classes": collections.Counter(obj.name for obj in objects)})
    return rows


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over all copies, as stored in the manifest."""
    copies_per_class: collections.Counter = collections.Counter()
    boxes_per_class: collections.Counter = collections.Counter()
    for row in rows:
        copies_per_class.update(row["classes"].keys())
        boxes_per_class.update(row["classes"])
    return {"copies_written": len(rows), "boxes_written": sum(row["boxes"] for row in rows),
            "boxes_clipped": sum(row["boxes_clipped"] for row in rows),
            "boxes_dropped": sum(row["boxes_dropped"] for row in rows),
            "copies_per_class": dict(sorted(copies_per_class.items())),
            "boxes_per_class": dict(sorted(boxes_per_class.items()))}


def _examples(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The first copy of up to ``PREVIEW_EXAMPLES`` originals, in stem order."""
    first = {}
    for row in rows:
        first.setdefault(row["source"], row["stem"])
    return [(source, first[source]) for source in sorted(first)[:PREVIEW_EXAMPLES]]


def multiply_dataset(items: Sequence[detection_dataset.DatasetItem], output_dir: str | pathlib.Path, factor: int, seed: int,
                     usable_objects: Callable[[detection_dataset.DatasetItem], list[voc.VocObject]],
                     rare_class_boost: float = 0.0, clip_policy: str = "clip",
                     progress: bool = True) -> AugmentationResult:
    """Write augmented copies of training images and their boxes into ``output_dir``.

    Args:
        items: the training images (e.g. the training split); only read.
        output_dir: the run folder's ``augmented/``; must be empty, hold an earlier call's output, or not exist.
        factor: total multiplication 1..8: ``factor - 1`` copies per image (1 = none, nothing written).
        seed: seed of the transforms (same seed, same bytes).
        usable_objects: the boxes to transform per item (the doctor's policy, e.g. ``dataset.usable_objects``).
        rare_class_boost: 0..4; images with a rare class get ``max(1, round(boost * (factor - 1)))`` extra copies.
        clip_policy: "clip" keeps the visible part of boxes cut by the border, "drop" drops them.
        progress: show a progress bar over the images.

    Returns:
        The counts, examples and parameters (see ``AugmentationResult``).

    Raises:
        ConfigError: a parameter out of range; ``output_dir`` inside or around the source folders; ``output_dir``
            holding other files or copies made with other parameters.
        DatasetError: two items with the same stem, or an unreadable image.
    """
    _check_parameters(factor, seed, rare_class_boost, clip_policy)
    items = sorted(items, key=lambda item: item.stem)
    output_dir = pathlib.Path(output_dir)
    objects = {item.stem: list(usable_objects(item)) for item in items}
    boxes_per_class = collections.Counter(obj.name for boxes in objects.values() for obj in boxes)
    rare = rare_classes(dict(boxes_per_class)) if rare_class_boost > 0 else []
    parameters = {"format_version": FORMAT_VERSION, "factor": int(factor), "seed": int(seed),
                  "rare_class_boost": float(rare_class_boost), "clip_policy": clip_policy,
                  "source_stems": [item.stem for item in items]}
    if factor == 1:
        return AugmentationResult(output_dir, len(items), 0, 0, 0, 0, {}, [], False, parameters)
    _check_output_dir(items, output_dir)
    parameters["source_fingerprint"] = _fingerprint(items, objects)
    manifest = _read_manifest(output_dir, parameters)
    reused = manifest is not None
    if not reused:
        copies = _copies_per_image(objects, factor, rare_class_boost, rare)
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(output_dir / MANIFEST_NAME, {"parameters": parameters, "complete": False})
        bar = progress_module.bar(items, "Writing augmented copies", enabled=progress, leave=False)
        rows = [row for item in bar
                for row in _augment_one(item, objects[item.stem], copies[item.stem], seed, clip_policy, output_dir)]
        manifest = {"parameters": parameters, "complete": True, "rare_classes": rare, **_totals(rows),
                    "examples": _examples(rows), "copies": rows}
        _write_json(output_dir / MANIFEST_NAME, manifest)
    return _result(manifest, output_dir, items, objects, reused)


def _result(manifest: dict[str, Any], output_dir: pathlib.Path, items: Sequence[detection_dataset.DatasetItem],
            objects: dict[str, list[voc.VocObject]], reused: bool) -> AugmentationResult:
    """The result of a complete manifest (written now, or found from an earlier identical call)."""
    examples = [tuple(pair) for pair in manifest["examples"]]
    by_stem = {item.stem: item for item in items}
    return AugmentationResult(
        output_dir=output_dir, originals=len(items), copies_written=manifest["copies_written"],
        boxes_written=manifest["boxes_written"], boxes_clipped=manifest["boxes_clipped"],
        boxes_dropped=manifest["boxes_dropped"], copies_per_class=dict(manifest["copies_per_class"]),
        examples=examples, reused=reused, parameters=manifest["parameters"],
        boxes_per_class=dict(manifest["boxes_per_class"]), rare_classes=list(manifest["rare_classes"]),
        example_sources={source: (by_stem[source].image_path, objects[source]) for source, _ in examples})


# ---------------------------------------------------------------- preview


def _draw(axes, pixels: np.ndarray, boxes: list[voc.VocObject], colours: dict[str, Any], title: str) -> None:
    import matplotlib.patches

    axes.imshow(pixels)
    for obj in boxes:
        colour = colours.get(obj.name, (1.0, 0.0, 0.0))
        # imshow puts pixel centres at integers; box coordinates are pixel edges, hence the half-pixel shift.
        axes.add_patch(matplotlib.patches.Rectangle((obj.xmin - 0.5, obj.ymin - 0.5), obj.xmax - obj.xmin,
                                                    obj.ymax - obj.ymin, fill=False, edgecolor=colour, linewidth=1.2))
    axes.set_title(title, fontsize=8)
    axes.set_axis_off()


def preview_grid(result: AugmentationResult, path: str | pathlib.Path, count: int = 4) -> pathlib.Path:
    """Save a PNG: per row an original with its boxes and one of its augmented copies with the new boxes.

    Args:
        result: what ``multiply_dataset`` returned.
        path: the PNG to write (parent folder created).
        count: rows (examples) to show, at most the number of examples.

    Returns:
        ``path`` as a Path.
    """
    import matplotlib

    examples = [pair for pair in result.examples if pair[0] in result.example_sources][:max(1, count)]
    if not examples:
        figure = figures.new_figure(6, 1.5, layout=None)
        figure.text(0.5, 0.5, "No augmented copies to show (augmentation factor 1).", ha="center", va="center")
    else:
        copies = [voc.read_voc(result.output_dir / "annotations" / f"{copy}.xml") for _, copy in examples]
        names = sorted({obj.name for _, (_, boxes) in result.example_sources.items() for obj in boxes}
                       | {obj.name for annotation in copies for obj in annotation.objects})
        palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
        colours = {name: palette(index % palette.N) for index, name in enumerate(names)}
        figure = figures.new_figure(7, 3.2 * len(examples))
        grid = figure.subplots(len(examples), 2, squeeze=False)
        for row, ((source, copy), annotation) in enumerate(zip(examples, copies)):
            image_path, boxes = result.example_sources[source]
            _draw(grid[row][0], images.read_image(image_path), boxes, colours,
                  f"original {source} ({len(boxes)} boxes)")
            _draw(grid[row][1], images.read_image(result.output_dir / "images" / f"{copy}.png"), annotation.objects,
                  colours, f"copy {copy} ({len(annotation.objects)} boxes)")
    return figures.save_figure(figure, path)
