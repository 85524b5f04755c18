"""Optional fundus preprocessing, applied when an image is loaded (training, QC and prediction alike).

* ``crop_to_disc``: fundus photographs show a bright disc (the retina) on a black border. The
  border is found by thresholding the brightness (pixels brighter than ``DISC_THRESHOLD`` of the
  image's 99th-percentile brightness), the image is cropped to the rows and columns that hold
  at least ``MINIMUM_DISC_SHARE`` of such pixels, and padded with black to a square so that the
  disc stays round when it is resized. An image without a border is returned unchanged.
* ``local_colour_normalisation`` (B. Graham, Kaggle DR competition 2015): 4·image −
  4·GaussianBlur(image) + 128, which subtracts the slowly varying lighting and keeps the small
  structures (microaneurysms, exudates); sigma is the disc radius / 30 as in Graham's recipe.

Both are off for other kinds of images (form fields ``crop_to_disc``, ``colour_normalisation``).
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from helpers import figures, images

DISC_THRESHOLD = 0.1
MINIMUM_DISC_SHARE = 0.02
SIGMA_PER_RADIUS = 1 / 30


def disc_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) pixel bounds (bottom/right exclusive) of the bright disc, or None.

    Args:
        pixels: uint8 [H, W, 3] RGB.
    """
    brightness = pixels.astype(np.float32).mean(axis=2)
    level = np.percentile(brightness, 99)
    if level <= 0:
        return None
    bright = brightness > DISC_THRESHOLD * level
    rows = np.flatnonzero(bright.mean(axis=1) > MINIMUM_DISC_SHARE)
    columns = np.flatnonzero(bright.mean(axis=0) > MINIMUM_DISC_SHARE)
    if len(rows) == 0 or len(columns) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def crop_to_disc(pixels: np.ndarray) -> np.ndarray:
    """uint8 [S, S, 3]: the disc's bounding box padded with black to a square (module docstring)."""
    box = disc_box(pixels)
    if box is None or box == (0, pixels.shape[0], 0, pixels.shape[1]):
        return pixels  # no border found: not a fundus photograph, or already cropped
    top, bottom, left, right = box
    cropped = pixels[top:bottom, left:right]
    height, width = cropped.shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), dtype=pixels.dtype)
    row, column = (side - height) // 2, (side - width) // 2
    square[row:row + height, column:column + width] = cropped
    return square


def local_colour_normalisation(pixels: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """uint8 [H, W, 3]: clip(4·image − 4·GaussianBlur(image, sigma) + 128) (Graham 2015).

    Args:
        pixels: uint8 [H, W, 3] RGB, ideally cropped to the disc.
        sigma: blur in pixels; default the disc radius (half the shorter side) × ``SIGMA_PER_RADIUS``.
    """
    import cv2

    if sigma is None:
        sigma = max(1.0, min(pixels.shape[:2]) / 2 * SIGMA_PER_RADIUS)
    blurred = cv2.GaussianBlur(pixels, (0, 0), sigma)
    return cv2.addWeighted(pixels, 4.0, blurred, -4.0, 128.0)  # saturating, so already clipped to 0..255


def preprocess(pixels: np.ndarray, image_size: int, crop: bool, normalise: bool) -> np.ndarray:
    """uint8 [S, S, 3]: optional crop, resize to S×S (area interpolation when shrinking), optional normalisation."""
    import cv2

    if crop:
        pixels = crop_to_disc(pixels)
    shrinking = pixels.shape[0] > image_size or pixels.shape[1] > image_size
    resized = cv2.resize(pixels, (image_size, image_size),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return local_colour_normalisation(resized) if normalise else resized


def load_preprocessed(path: str | pathlib.Path, image_size: int, crop: bool, normalise: bool) -> np.ndarray:
    """uint8 [S, S, 3]: the image file read as RGB (``helpers.images.read_image``) and preprocessed."""
    return preprocess(images.read_image(path), image_size, crop, normalise)


def preview(paths: Sequence[pathlib.Path], captions: Sequence[str], image_size: int, crop: bool, normalise: bool,
            output_path: pathlib.Path) -> pathlib.Path:
    """Save a figure: per image (one row) the original, after the crop, and as the network sees it.

    Args:
        paths: a few image files; captions: one text per row (e.g. "grade 2").
        image_size: S, the network's input side in pixels.
        output_path: the PNG to write; returned.
    """
    figure = figures.new_figure(9, 3 * len(paths))
    axes = figure.subplots(len(paths), 3, squeeze=False)
    for row, (path, caption) in enumerate(zip(paths, captions)):
        original = images.read_image(path)
        panels = [(original, f"{caption}: original {original.shape[1]}×{original.shape[0]}"),
                  (crop_to_disc(original) if crop else original, "cropped to the disc" if crop else "no crop"),
                  (preprocess(original, image_size, crop, normalise),
                   f"network input {image_size}×{image_size}" + (", colour-normalised" if normalise else ""))]
        for axis, (picture, title) in zip(axes[row], panels):
            axis.imshow(picture)
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    return figures.save_figure(figure, output_path)
