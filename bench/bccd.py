"""BCCD helpers shared by the detection benchmarks (stdlib only: the YOLO venv imports it too).

BCCD (``../shared/data/bccd``) is PASCAL VOC: ``Annotations/``, ``JPEGImages/`` and
``ImageSets/Main/{train,val,trainval,test}.txt`` (stems, one per line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
from typing import Callable

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_BCCD = REPOSITORY_ROOT.parent / "shared" / "data" / "bccd"
# The project environment runs the QC command (the YOLO venv lacks the helpers); DL4CELLS_PYTHON names another.
PROJECT_PYTHON = pathlib.Path(os.environ.get("DL4CELLS_PYTHON") or REPOSITORY_ROOT / ".venv" / "bin" / "python")


def stems(bccd: pathlib.Path, split: str) -> list[str]:
    """Image stems listed in ``ImageSets/Main/<split>.txt``, in file order."""
    return (bccd / "ImageSets" / "Main" / f"{split}.txt").read_text(encoding="utf-8").split()


def link_split(bccd: pathlib.Path, split_stems: list[str], destination: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Folders ``destination/images`` and ``destination/annotations`` of symbolic links to one split.

    Links, not copies: the data folder is never written and the scorer sees exactly this split
    (an image with no detection still counts its ground-truth boxes as missed).
    """
    images, annotations = destination / "images", destination / "annotations"
    for folder in (images, annotations):
        folder.mkdir(parents=True, exist_ok=True)
    for stem in split_stems:
        for folder, source in ((images, bccd / "JPEGImages" / f"{stem}.jpg"),
                               (annotations, bccd / "Annotations" / f"{stem}.xml")):
            link = folder / source.name
            if not link.exists():
                link.symlink_to(source)
    return images, annotations


def make_mosaics(images_dir: pathlib.Path, annotations_dir: pathlib.Path, split_stems: list[str], grid: int,
                 destination: pathlib.Path, extension: str = ".jpg", prefix: str = "mosaic") -> tuple[pathlib.Path, pathlib.Path, list[str]]:
    """Paste every ``grid`` x ``grid`` consecutive images of a split into one large field of view.

    Every object keeps its pixel size (nothing is resized): a larger field of view, as a camera
    with more pixels would give. Images are placed on a grid of the largest image's size (black
    where an image is smaller); boxes are shifted with their image. A last group with fewer than
    grid² images is filled from the start of the split, so every image appears at least once.

    Returns:
        (images folder, VOC annotations folder, mosaic stems) under ``destination``.
    """
    import numpy as np

    from helpers import images, voc

    out_images, out_annotations = destination / "images", destination / "annotations"
    out_images.mkdir(parents=True, exist_ok=True)
    out_annotations.mkdir(parents=True, exist_ok=True)
    per_mosaic = grid * grid
    count = -(-len(split_stems) // per_mosaic)
    annotations = {stem: voc.read_voc(annotations_dir / f"{stem}.xml") for stem in split_stems}
    cell_width = max(int(annotation.width) for annotation in annotations.values())
    cell_height = max(int(annotation.height) for annotation in annotations.values())
    mosaic_stems = []
    for number in range(count):
        members = [split_stems[(number * per_mosaic + index) % len(split_stems)] for index in range(per_mosaic)]
        canvas = np.zeros((grid * cell_height, grid * cell_width, 3), dtype=np.uint8)
        objects = []
        for index, stem in enumerate(members):
            row, column = divmod(index, grid)
            pixels = images.read_image(images_dir / f"{stem}{extension}")
            top, left = row * cell_height, column * cell_width
            canvas[top:top + pixels.shape[0], left:left + pixels.shape[1]] = pixels
            for obj in annotations[stem].objects:
                objects.append(dataclasses.replace(obj, xmin=obj.xmin + left, xmax=obj.xmax + left,
                                                   ymin=obj.ymin + top, ymax=obj.ymax + top))
        stem = f"{prefix}{grid}x{grid}_{number:03d}"
        images.write_image(out_images / f"{stem}.png", canvas)
        voc.write_voc(voc.VocAnnotation(filename=f"{stem}.png", width=canvas.shape[1], height=canvas.shape[0], depth=3,
                                        objects=objects), out_annotations / f"{stem}.xml")
        mosaic_stems.append(stem)
    return out_images, out_annotations, mosaic_stems


def score_with_qc(predictions_csv: pathlib.Path, annotations: pathlib.Path, images: pathlib.Path,
                  python: pathlib.Path = PROJECT_PYTHON) -> dict:
    """The QC command's JSON (``python -m helpers.qc detection --json``) for one predictions CSV.

    Both detectors of a comparison go through this same command, so pycocotools sees both alike.
    """
    command = [str(python), "-m", "helpers.qc", "detection", "--ground-truth", str(annotations),
               "--predictions", str(predictions_csv), "--images", str(images), "--json"]
    finished = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr)
        raise RuntimeError(f"QC command failed ({finished.returncode}): {' '.join(command)}")
    return json.loads(finished.stdout)


def summary(qc: dict) -> dict:
    """mAP50, mAP50-95 and per-class AP50 / AP50-95 from the QC command's JSON."""
    return {"map50": qc["map50"], "map50_95": qc["map50_95"],
            "per_class": {name: {"ap50": values["ap50"], "ap50_95": values["ap50_95"]}
                          for name, values in qc["per_class"].items()}}


def parse_overrides(texts: list[str]) -> dict:
    """Model Garden overrides from ``PATH=VALUE`` strings, as the nested dict ``ExperimentConfig.override`` takes.

    ``["task.train_data.parser.aug_scale_min=0.5", "task.model.anchor.aspect_ratios=[0.8, 1.0, 1.25]"]``
    -> ``{"task": {"train_data": {"parser": {"aug_scale_min": 0.5}}, "model": {"anchor": {...}}}}``.
    VALUE is read as JSON (numbers, lists, true/false); anything else stays a string.
    """
    nested: dict = {}
    for text in texts:
        path, separator, value_text = text.partition("=")
        if not separator or not path.strip():
            raise SystemExit(f"--override {text!r}: expected PATH=VALUE, e.g. task.train_data.parser.aug_scale_min=0.5")
        try:
            value = json.loads(value_text)
        except json.JSONDecodeError:
            value = value_text
        keys = path.strip().split(".")
        node = nested
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return nested


@contextlib.contextmanager
def edited_experiments(edit: Callable[[object, object], None]):
    """Benchmarks only: call ``edit(config, experiment)`` on every experiment ``build_experiment`` makes in the block.

    Wraps ``helpers.detection.model.build_experiment`` (looked up at call time by the training loop,
    ``build_model`` and the export); the helpers' code is not changed.
    """
    from helpers.detection import model as model_module

    original = model_module.build_experiment

    def build_experiment(config, *args, **kwargs):
        experiment = original(config, *args, **kwargs)
        edit(config, experiment)
        return experiment

    model_module.build_experiment = build_experiment
    try:
        yield
    finally:
        model_module.build_experiment = original


def experiment_overrides(overrides: dict):
    """Ablations: ``overrides`` (from ``parse_overrides``) applied strictly to every experiment in the block
    (a misspelt key raises KeyError). An empty dict changes nothing."""
    if not overrides:
        return contextlib.nullcontext()
    return edited_experiments(lambda _config, experiment: experiment.override(overrides, is_strict=True))
