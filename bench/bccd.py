"""BCCD helpers shared by the detection benchmarks (stdlib only: the YOLO venv imports it too).

BCCD (``../shared/data/bccd``) is PASCAL VOC: ``Annotations/``, ``JPEGImages/`` and
``ImageSets/Main/{train,val,trainval,test}.txt`` (stems, one per line).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_BCCD = REPOSITORY_ROOT.parent / "shared" / "data" / "bccd"
PROJECT_PYTHON = REPOSITORY_ROOT / ".venv" / "bin" / "python"


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
