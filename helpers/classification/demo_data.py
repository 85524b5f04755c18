"""A synthetic classification dataset (one subfolder per class), generated offline for tests and demos.

Every class is a different kind of drawn "cell" (round, elongated, lobed nucleus) on a textured
background. Everything says plainly that it is synthetic: the classes start with ``synthetic_``
and the folder holds ``README_SYNTHETIC_DATA.txt`` (which the reports detect and warn about).
"""

from __future__ import annotations

import pathlib

import numpy as np

from helpers import images, synthetic

# class name -> (body RGB, nucleus shape: number of lobes, elongation of the body)
CLASSIFICATION_CLASSES = {
    "synthetic_round": ((200, 120, 200), 1, 1.0),
    "synthetic_lobed": ((170, 110, 190), 3, 1.0),
    "synthetic_oval": ((210, 150, 150), 1, 1.7),
}


def _draw(rng: np.random.Generator, size: int, class_name: str) -> np.ndarray:
    """uint8 [size, size, 3]: one cell of ``class_name`` at a random angle and scale."""
    import cv2

    colour, lobes, elongation = CLASSIFICATION_CLASSES[class_name]
    canvas = synthetic.background(rng, size, size)
    centre = (size // 2 + int(rng.integers(-size // 10, size // 10 + 1)),
              size // 2 + int(rng.integers(-size // 10, size // 10 + 1)))
    radius = size * float(rng.uniform(0.22, 0.3))
    angle = float(rng.uniform(0, 180))
    body = np.array(colour, dtype=np.float64) * float(rng.uniform(0.85, 1.1))
    cv2.ellipse(canvas, centre, (int(radius * elongation), int(radius)), angle, 0, 360, tuple(body.tolist()), -1)
    nucleus = tuple((body * 0.45).tolist())
    for lobe in range(lobes):
        offset = 0 if lobes == 1 else radius * 0.4
        lobe_angle = np.deg2rad(angle + 360.0 * lobe / lobes)
        lobe_centre = (int(centre[0] + offset * np.cos(lobe_angle)), int(centre[1] + offset * np.sin(lobe_angle)))
        cv2.circle(canvas, lobe_centre, max(2, int(radius * (0.45 if lobes == 1 else 0.28))), nucleus, -1)
    return np.clip(canvas, 0, 255).round().astype(np.uint8)


def make_classification_demo(folder: str | pathlib.Path, images_per_class: int = 12, image_size: int = 64,
                             seed: int = 0) -> pathlib.Path:
    """Write a synthetic dataset ``folder/<class>/synthetic_<class>_<n>.png`` plus the synthetic-data notice.

    Args:
        folder: where to write; created if missing. Refuses a folder that already holds other files.
        images_per_class: images of each of the three classes.
        image_size: side of the square images in pixels.
        seed: random seed; the same arguments give byte-identical files.

    Returns:
        ``folder`` (use it as the images folder; one subfolder per class).
    """
    folder = pathlib.Path(folder)
    synthetic.claim_demo_folder(folder)
    for class_index, class_name in enumerate(CLASSIFICATION_CLASSES):
        for index in range(images_per_class):
            rng = np.random.default_rng([seed, class_index, index])
            images.write_image(folder / class_name / f"{class_name}_{index:03d}.png", _draw(rng, image_size, class_name))
    return folder
