"""A synthetic ordinal grading dataset (fundus-like discs), generated offline for tests and demos.

Each image is an orange disc on a black border (like a fundus photograph) with dark red dots
whose number grows with the grade (and pale yellow patches from grade 3 on), so the grade is
learnable and ordered. Two "eyes" per "patient" share a patient ID, and about a third of the
patients have eyes of different grades, as in real DR data. Everything says plainly that it is
synthetic: file names start with ``synthetic_`` and the folder holds ``README_SYNTHETIC_DATA.txt``
(which the reports detect and warn about).
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np

from helpers import images, synthetic

DOTS_PER_GRADE = 4


def draw_fundus(rng: np.random.Generator, size: int, grade: int) -> np.ndarray:
    """uint8 [size, int(size * 1.4), 3]: a fundus-like disc with lesions for ``grade``."""
    import cv2

    height, width = size, int(size * 1.4)
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    centre, radius = (width // 2, height // 2), int(height * 0.48)
    colour = np.array([200, 100, 40], dtype=np.float64) * float(rng.uniform(0.8, 1.1))
    cv2.circle(canvas, centre, radius, tuple(colour.tolist()), -1)
    optic = (centre[0] + int(rng.choice([-1, 1]) * radius * 0.45), centre[1])
    cv2.circle(canvas, optic, max(2, radius // 6), (250, 200, 120), -1)
    for _ in range(DOTS_PER_GRADE * grade):
        angle, distance = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 0.7))
        point = (int(centre[0] + distance * np.cos(angle)), int(centre[1] + distance * np.sin(angle)))
        cv2.circle(canvas, point, max(1, size // 40), (90, 10, 10), -1)
    for _ in range(max(0, grade - 2) * 3):
        angle, distance = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 0.6))
        point = (int(centre[0] + distance * np.cos(angle)), int(centre[1] + distance * np.sin(angle)))
        cv2.circle(canvas, point, max(1, size // 25), (240, 230, 120), -1)
    canvas += rng.normal(0, 4, canvas.shape)
    return np.clip(canvas, 0, 255).round().astype(np.uint8)


def make_grading_demo(folder: str | pathlib.Path, patients_per_grade: int = 6, num_grades: int = 5,
                      image_size: int = 64, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``folder/images/synthetic_PNNN_[L|R].png`` and ``folder/labels.csv`` (filename,grade,patient_id).

    Args:
        folder: where to write; created if missing. Refuses a folder that already holds other files.
        patients_per_grade: patients whose first eye has each grade (two eyes each).
        image_size: image height in pixels (width 1.4×).
        seed: random seed; the same arguments give byte-identical files.

    Returns:
        (images folder, labels CSV).
    """
    folder = pathlib.Path(folder)
    synthetic.claim_demo_folder(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, patient = [], 0
    for grade in range(num_grades):
        for _ in range(patients_per_grade):
            patient += 1
            rng = np.random.default_rng([seed, patient])
            # One patient in three has a second eye one grade apart (eyes are graded separately).
            other = int(np.clip(grade + rng.choice([-1, 1]), 0, num_grades - 1)) if patient % 3 == 0 else grade
            for eye, eye_grade in (("L", grade), ("R", other)):
                name = f"synthetic_P{patient:03d}_{eye}.png"
                images.write_image(folder / "images" / name, draw_fundus(rng, image_size, eye_grade))
                rows.append([name, eye_grade, f"P{patient:03d}"])
    labels = folder / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "grade", "patient_id"])
        writer.writerows(rows)
    return folder / "images", labels
