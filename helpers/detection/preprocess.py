"""Optional image preprocessing applied identically before training and before prediction.

``remove_background_otsu`` blanks the background of images whose objects stand out from a
flat background, e.g. stained blood smears: cells are more saturated (or darker) than the
pale glass around them. Otsu's method picks the threshold that best separates the two
populations of pixel values; the mask is grown by a few pixels so object borders survive,
and everything outside it becomes one constant colour. The detector then cannot learn
anything from background texture, debris or illumination gradients.
"""

from __future__ import annotations

import cv2
import numpy as np

# Colour given to background pixels: mid-grey is close to the ImageNet mean the model
# normalises with, so the blanked area carries almost no signal.
BACKGROUND_VALUE = 128
# Pixels the foreground mask is grown by so faint object borders are kept.
MASK_GROWTH_PIXELS = 3


def foreground_mask(image_rgb_uint8: np.ndarray, channel: str = "saturation") -> np.ndarray:
    """Otsu foreground mask.

    Args:
        image_rgb_uint8: uint8 [H, W, 3] RGB pixels.
        channel: ``"saturation"`` (stained objects on a pale background) or ``"grey"``
            (dark objects on a bright background).

    Returns:
        bool [H, W], True on objects (after growing by ``MASK_GROWTH_PIXELS``).
    """
    if channel == "saturation":
        values = cv2.cvtColor(image_rgb_uint8, cv2.COLOR_RGB2HSV)[:, :, 1]
    elif channel == "grey":
        values = 255 - cv2.cvtColor(image_rgb_uint8, cv2.COLOR_RGB2GRAY)  # dark objects -> high values
    else:
        raise ValueError(f"channel must be 'saturation' or 'grey', not {channel!r}")
    _, mask = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if MASK_GROWTH_PIXELS:
        size = 2 * MASK_GROWTH_PIXELS + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask > 0


def remove_background_otsu(image_rgb_uint8: np.ndarray, channel: str = "saturation") -> np.ndarray:
    """A copy of the image with the background (Otsu) set to ``BACKGROUND_VALUE``.

    Args:
        image_rgb_uint8: uint8 [H, W, 3] RGB pixels.
        channel: see ``foreground_mask``.

    Returns:
        uint8 [H, W, 3]; object pixels unchanged, background pixels = 128 in every channel.
    """
    image = np.ascontiguousarray(image_rgb_uint8, dtype=np.uint8)
    result = image.copy()
    result[~foreground_mask(image, channel)] = BACKGROUND_VALUE
    return result
