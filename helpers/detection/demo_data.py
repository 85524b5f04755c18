"""A synthetic detection dataset, generated offline, so the detection notebook runs without internet.

It draws cell-like shapes of three classes on a textured background and
writes PNG images with PASCAL VOC XML. Everything it writes says plainly that it is synthetic:
the class names and file names start with ``synthetic_`` and the dataset folder holds a
``README_SYNTHETIC_DATA.txt``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from helpers import images, synthetic, voc

# class name -> (radius range in pixels, RGB colour of the body, elongation range)
DETECTION_CLASSES = {
    "synthetic_large_cell": ((22, 30), (150, 60, 160), (1.0, 1.2)),
    "synthetic_small_cell": ((9, 13), (200, 90, 90), (1.0, 1.15)),
    "synthetic_rod": ((14, 20), (60, 120, 190), (2.0, 2.6)),
}


def _draw_cell(canvas: np.ndarray, occupied: np.ndarray, rng: np.random.Generator,
               class_name: str) -> voc.VocObject | None:
    """Draw one shape of ``class_name`` at a random free spot; its box, or None if it did not fit.

    Args:
        canvas: float32 [H, W, 3] image, drawn on in place.
        occupied: bool [H, W], True where a shape already is; updated in place. Shapes never
            overlap, so every box shows its whole object.
    """
    import cv2

    (radius_low, radius_high), colour, (stretch_low, stretch_high) = DETECTION_CLASSES[class_name]
    height, width = canvas.shape[:2]
    radius = float(rng.uniform(radius_low, radius_high))
    stretch = float(rng.uniform(stretch_low, stretch_high))
    angle = float(rng.uniform(0, 180))
    axes = (int(round(radius * stretch)), int(round(radius)))
    for _attempt in range(30):
        centre_x = int(rng.integers(axes[0] + 2, width - axes[0] - 2))
        centre_y = int(rng.integers(axes[0] + 2, height - axes[0] - 2))
        mask = np.zeros((height, width), dtype=np.uint8)
        cv2.ellipse(mask, (centre_x, centre_y), axes, angle, 0, 360, 255, -1)
        grown = cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)
        if not (grown & occupied).any():
            break
    else:
        return None
    occupied |= mask.astype(bool)
    shade = np.array(colour, dtype=np.float32) * float(rng.uniform(0.85, 1.1))
    body = mask.astype(bool)
    canvas[body] = 0.25 * canvas[body] + 0.75 * shade
    # A darker nucleus-like core makes the shapes look (a little) like stained cells.
    cv2.ellipse(canvas, (centre_x, centre_y), (max(2, axes[0] // 3), max(2, axes[1] // 3)), angle, 0, 360,
                tuple(float(value) * 0.55 for value in shade), -1)
    rows, columns = np.nonzero(mask)
    return voc.VocObject(name=class_name, xmin=float(columns.min()), ymin=float(rows.min()),
                         xmax=float(columns.max() + 1), ymax=float(rows.max() + 1))


def make_detection_demo(folder: str | pathlib.Path, number_of_images: int = 24, image_size: tuple[int, int] = (320, 256),
                        seed: int = 0, extra_objects: int = 6) -> pathlib.Path:
    """Write a synthetic detection dataset: ``images/*.png`` and ``annotations/*.xml``.

    Args:
        folder: where to write; created if missing. Refuses a folder that already holds other files.
        number_of_images: how many images (each with 3–9 shapes of the three classes).
        image_size: (width, height) in pixels.
        seed: random seed; the same seed gives byte-identical files.
        extra_objects: at most this many shapes beyond one of each class per image (a larger field
            of view holds more: e.g. 30 for 512 x 384 px).

    Returns:
        ``folder``. Re-running with the same arguments on a finished demo folder does nothing.
    """
    folder = pathlib.Path(folder)
    images_dir, annotations_dir = folder / "images", folder / "annotations"
    if synthetic.is_demo_folder(folder) and len(list(annotations_dir.glob("*.xml"))) == number_of_images:
        return folder
    synthetic.claim_demo_folder(folder)
    images_dir.mkdir(parents=True, exist_ok=True)
    annotations_dir.mkdir(parents=True, exist_ok=True)
    width, height = image_size
    class_names = list(DETECTION_CLASSES)
    for index in range(number_of_images):
        rng = np.random.default_rng(seed * 100003 + index)
        canvas = synthetic.background(rng, height, width)
        # Every class appears in most images so that any split keeps all classes.
        names = class_names + list(rng.choice(class_names, size=int(rng.integers(0, extra_objects + 1))))
        occupied = np.zeros((height, width), dtype=bool)
        objects = [_draw_cell(canvas, occupied, rng, name) for name in names]
        stem = f"synthetic_{index:03d}"
        images.write_image(images_dir / f"{stem}.png", canvas.round().astype(np.uint8))
        annotation = voc.VocAnnotation(filename=f"{stem}.png", width=width, height=height, depth=3,
                                       objects=[item for item in objects if item is not None])
        voc.write_voc(annotation, annotations_dir / f"{stem}.xml")
    return folder
