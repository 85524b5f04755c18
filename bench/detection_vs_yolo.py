"""Benchmark: our detection pipeline against Ultralytics YOLOv8n, both from scratch on BCCD, same budget.

1. Ours: ``bench/detection_bccd.py`` (Model Garden RetinaNet through the whole helpers path) on
   ``trainval.txt`` (checkpoint picked on ``val.txt``) for ``--epochs`` epochs; its wall time of
   training becomes the budget of the other side (or ``--ours-result`` reuses a finished run).
2. YOLOv8n from ``yolov8n.yaml`` (no pretrained weights) on the same images, the same boxes (the
   dataset doctor's usable boxes, written as YOLO labels), the same image size and batch, for the
   same wall-clock seconds (``bench/yolo_bccd.py`` in its own virtual environment
   ``bench/.venv-yolo``, created here on first use; torch and ultralytics never enter the project).
3. Both prediction CSVs (score ≥ 0.05, ≤ 100 boxes per image) are scored on ``test.txt`` by the
   same QC command (``python -m helpers.qc detection --json``, pycocotools).

    .venv/bin/python bench/detection_vs_yolo.py --epochs 40 --image-size 384   # §9e: about 36 min per side
    .venv/bin/python bench/detection_vs_yolo.py --ours-result bench/output/detection_bccd-.../result.json
Writes ``bench/output/detection_vs_yolo/<time>/comparison.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from bccd import DEFAULT_BCCD, link_split, score_with_qc, stems, summary  # noqa: E402

YOLO_VENV = REPOSITORY_ROOT / "bench" / ".venv-yolo"
# The versions measured; torch 2.14.1 / torchvision 0.29.1 install from local wheels on the dev machine.
YOLO_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190"]


def ensure_yolo_environment(venv: pathlib.Path = YOLO_VENV) -> pathlib.Path:
    """The Python of the benchmark's own virtual environment, created and filled on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *YOLO_REQUIREMENTS], check=True)
    return python


def write_yolo_dataset(bccd: pathlib.Path, destination: pathlib.Path, train_split: str) -> pathlib.Path:
    """An Ultralytics dataset of ``train_split`` (training) and ``val`` (validation); its yaml path.

    Labels are the dataset doctor's usable boxes (zero-area boxes dropped, outside parts clipped),
    exactly the boxes our pipeline trains on, as ``class cx cy w h`` normalised by the image size.
    Classes keep our order (sorted names), so class indices mean the same on both sides.
    """
    from helpers.detection import dataset as detection_dataset

    dataset = detection_dataset.load_detection_dataset(bccd / "JPEGImages", bccd / "Annotations", progress=False)
    by_stem = {item.stem: item for item in dataset.items}
    for split in (train_split, "val"):
        images, labels = destination / "images" / split, destination / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for stem in stems(bccd, split):
            item = by_stem.get(stem)
            if item is None:
                continue
            link = images / item.image_path.name
            if not link.exists():
                link.symlink_to(item.image_path)
            width, height = item.annotation.width, item.annotation.height
            lines = [f"{dataset.classes.index(obj.name)} {(obj.xmin + obj.xmax) / 2 / width:.6f} "
                     f"{(obj.ymin + obj.ymax) / 2 / height:.6f} {(obj.xmax - obj.xmin) / width:.6f} "
                     f"{(obj.ymax - obj.ymin) / height:.6f}" for obj in dataset.usable_objects(item)]
            (labels / f"{stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = "\n".join(f"  {index}: {name}" for index, name in enumerate(dataset.classes))
    yaml_path = destination / "dataset.yaml"
    yaml_path.write_text(f"path: {destination}\ntrain: images/{train_split}\nval: images/val\nnames:\n{names}\n",
                         encoding="utf-8")
    return yaml_path


def run_ours(arguments, output: pathlib.Path) -> pathlib.Path:
    """Run ``bench/detection_bccd.py`` in a child process (its memory is freed before YOLO starts)."""
    command = [sys.executable, str(REPOSITORY_ROOT / "bench" / "detection_bccd.py"), "--bccd", str(arguments.bccd),
               "--train-split", arguments.train_split, "--image-size", str(arguments.image_size),
               "--batch-size", str(arguments.batch_size), "--epochs", str(arguments.epochs),
               "--output", str(output)] + (["--smoke"] if arguments.smoke else [])
    subprocess.run(command, check=True)
    return sorted(output.glob("*/*/result.json"))[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=pathlib.Path, default=DEFAULT_BCCD)
    parser.add_argument("--train-split", default="trainval", choices=["train", "trainval"])
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40, help="our epochs; their wall time is YOLO's budget")
    parser.add_argument("--ours-result", type=pathlib.Path, help="result.json of a finished detection_bccd.py run")
    parser.add_argument("--yolo-threads", type=int, default=2,
                        help="torch threads and data-loader workers of the YOLO side (2 measured best, §9d)")
    parser.add_argument("--output", type=pathlib.Path, default=REPOSITORY_ROOT / "bench" / "output" / "detection_vs_yolo")
    parser.add_argument("--smoke", action="store_true", help="tiny runs of both sides (YOLO gets 30 s)")
    arguments = parser.parse_args(argv)
    if not arguments.bccd.is_dir():
        print(f"{arguments.bccd}: BCCD not found; pass --bccd", file=sys.stderr)
        return 2
    output = arguments.output / time.strftime("%Y%m%d-%H%M%S")
    output.mkdir(parents=True)

    ours_path = arguments.ours_result or run_ours(arguments, output / "ours")
    ours = json.loads(ours_path.read_text(encoding="utf-8"))
    image_size = ours["config"]["image_size"]
    test_stems = stems(arguments.bccd, "test")[:2] if arguments.smoke else stems(arguments.bccd, "test")
    test_images, test_annotations = link_split(arguments.bccd, test_stems, output / "test")

    yolo_python = ensure_yolo_environment()
    dataset_yaml = write_yolo_dataset(arguments.bccd, output / "yolo_dataset", arguments.train_split)
    budget = 30.0 if arguments.smoke else float(ours["training_seconds"])
    subprocess.run([str(yolo_python), str(REPOSITORY_ROOT / "bench" / "yolo_bccd.py"), "--data", str(dataset_yaml),
                    "--test-images", str(test_images), "--budget-seconds", str(budget), "--image-size", str(image_size),
                    "--batch-size", str(ours["config"]["batch_size"]), "--threads", str(arguments.yolo_threads),
                    "--output", str(output / "yolo")], check=True)
    yolo = json.loads((output / "yolo" / "yolo_result.json").read_text(encoding="utf-8"))

    sides = {"ours (RetinaNet " + ours["config"]["backbone"] + ")": (ours, ours["predictions_csv"]),
             "YOLOv8n": (yolo, yolo["predictions_csv"])}
    rows = {}
    for name, (result, csv_path) in sides.items():
        rows[name] = {"training_seconds": result["training_seconds"],
                      "training_cpu_seconds": result.get("training_cpu_seconds"),  # absent in results before 12-01
                      **summary(score_with_qc(pathlib.Path(csv_path), test_annotations, test_images))}
    rows["YOLOv8n"]["epochs"] = yolo["validation_metrics_last"].get("epochs_completed")
    rows[next(iter(rows))]["epochs"] = ours["epochs"]
    comparison = {"benchmark": "detection_vs_yolo", "date": time.strftime("%Y-%m-%d %H:%M"), "image_size": image_size,
                  "batch_size": ours["config"]["batch_size"], "train_split": ours.get("train_split"),
                  "test_images": len(test_stems), "ours_result": str(ours_path), "yolo": yolo, "rows": rows}
    (output / "comparison.json").write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    classes = sorted(next(iter(rows.values()))["per_class"])
    print("| detector | epochs | training s | test mAP50 | test mAP50-95 | " +
          " | ".join(f"AP50 {name}" for name in classes) + " |")
    print("|---" * (5 + len(classes)) + "|")
    for name, row in rows.items():
        print(f"| {name} | {row['epochs']} | {row['training_seconds']:.0f} | {row['map50']:.3f} | {row['map50_95']:.3f} | " +
              " | ".join(f"{row['per_class'][cls]['ap50']:.3f}" for cls in classes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
