"""The YOLOv8n side of ``bench/detection_vs_yolo.py``: train from the model yaml, predict to our CSV.

Runs inside the benchmark's own virtual environment (``bench/.venv-yolo``, made by
``detection_vs_yolo.py``; torch and ultralytics are never project dependencies). Trains
YOLOv8n from ``yolov8n.yaml`` (no pretrained weights) on a dataset yaml written by
``detection_vs_yolo.py`` for at most ``--budget-seconds`` of wall clock (Ultralytics' ``time``
mode: after the first epoch it re-plans the number of epochs, and the schedule, to fit the
budget), then predicts the test images with ``best.pt`` and writes detections in the CSV format
our QC command reads (``filename,class,score,xmin,ymin,xmax,ymax``, pixels of the original image).

    bench/.venv-yolo/bin/python bench/yolo_bccd.py --data D/dataset.yaml --test-images T \\
        --budget-seconds 1500 --image-size 384 --batch-size 8 --output O
    # the thread table: a fixed number of epochs instead of a budget, at 1 or 2 torch threads
    bench/.venv-yolo/bin/python bench/yolo_bccd.py ... --epochs 3 --threads 1 --output O
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import platform
import sys
import time


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the data-loader workers)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def train(data: pathlib.Path, image_size: int, batch_size: int, budget_seconds: float, threads: int,
          output: pathlib.Path, seed: int, epochs: int = 0) -> tuple[pathlib.Path, float, dict]:
    """Train YOLOv8n from its yaml on the CPU; (best weights, wall seconds, last metrics).

    ``epochs`` > 0 trains exactly that many epochs (the thread table); 0 trains for ``budget_seconds``.
    """
    import torch
    import ultralytics
    from ultralytics.utils import torch_utils

    # Ultralytics trains on the CPU with cpu_count - 1 threads (1 on a 2-core machine); our
    # TensorFlow side uses every core, so YOLO gets the same number (recorded in the result).
    torch_utils.NUM_THREADS = threads
    model = ultralytics.YOLO("yolov8n.yaml")
    started, started_cpu = time.perf_counter(), cpu_seconds()
    schedule = {"epochs": epochs} if epochs > 0 else {"epochs": 1000, "time": budget_seconds / 3600}
    model.train(data=str(data), imgsz=image_size, batch=batch_size, **schedule,
                device="cpu", workers=threads, pretrained=False, amp=False, plots=False, seed=seed,
                project=str(output), name="train", exist_ok=True, verbose=False)
    seconds = time.perf_counter() - started
    metrics = dict(getattr(model.trainer, "metrics", {}) or {})
    metrics["epochs_completed"] = int(model.trainer.epoch) + 1
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["training_cpu_seconds"] = round(cpu_seconds() - started_cpu, 1)
    return pathlib.Path(model.trainer.best), seconds, metrics


def predict(weights: pathlib.Path, test_images: pathlib.Path, image_size: int, csv_path: pathlib.Path,
            score_threshold: float) -> tuple[int, float]:
    """Detections of every image of ``test_images`` into ``csv_path``; (rows written, seconds)."""
    import ultralytics

    model = ultralytics.YOLO(str(weights))
    paths = sorted(path for path in test_images.iterdir() if path.suffix.lower() in {".jpg", ".jpeg", ".png"})
    started = time.perf_counter()
    rows = 0
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "class", "score", "xmin", "ymin", "xmax", "ymax"])
        for path in paths:
            result = model.predict(str(path), imgsz=image_size, conf=score_threshold, max_det=100, device="cpu",
                                   verbose=False)[0]
            for box, score, label in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                         result.boxes.cls.tolist()):
                writer.writerow([path.name, result.names[int(label)], f"{score:.5f}"] + [f"{value:.2f}" for value in box])
                rows += 1
    return rows, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Ultralytics dataset yaml")
    parser.add_argument("--test-images", required=True)
    parser.add_argument("--budget-seconds", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=0, help="train exactly N epochs instead of --budget-seconds")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--score-threshold", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    arguments = parser.parse_args(argv)
    if (arguments.budget_seconds > 0) == (arguments.epochs > 0):
        parser.error("give exactly one of --budget-seconds and --epochs")
    output = pathlib.Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    weights, training_seconds, metrics = train(pathlib.Path(arguments.data), arguments.image_size,
                                               arguments.batch_size, arguments.budget_seconds, arguments.threads,
                                               output, arguments.seed, arguments.epochs)
    csv_path = output / "predictions.csv"
    rows, prediction_seconds = predict(weights, pathlib.Path(arguments.test_images), arguments.image_size, csv_path,
                                       arguments.score_threshold)
    import torch
    import ultralytics

    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "ultralytics": ultralytics.__version__, "arguments": vars(arguments),
              "training_seconds": round(training_seconds, 1), "prediction_seconds": round(prediction_seconds, 1),
              "training_cpu_seconds": metrics["training_cpu_seconds"],
              "training_seconds_per_epoch": round(training_seconds / max(metrics["epochs_completed"], 1), 1),
              "weights": str(weights), "predictions_csv": str(csv_path), "detections": rows,
              "validation_metrics_last": {key: float(value) if isinstance(value, (int, float)) else value
                                          for key, value in metrics.items()}}
    (output / "yolo_result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
