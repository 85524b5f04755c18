"""Benchmark: images per second of prediction as a Dask job (``helpers.prediction_jobs``), 0, 1 and 2 workers.

One exported classifier (``--backbone`` at ``--image-size`` px, random weights: speed does not depend on them)
predicts the same ``--images`` images in each setting, side by side in one run:

* ``in process`` (``workers=0``, what a notebook does): no Dask;
* ``1 worker`` / ``2 workers``: a ``distributed.LocalCluster`` of that many processes (one Dask thread each,
  ``cores / workers`` TensorFlow threads each, as ``run_job`` starts them).

Each setting's model is loaded first (every worker once, ``client.run(loaded_model)``) and the cluster start and
that load are timed apart, so ``images/s`` is the steady throughput of a job (reading, resizing, the model,
one JSON file per image, the final merge). ``peak RSS`` is each process's ``ru_maxrss`` after its job (the
in-process row: this benchmark's own process, which also holds the image list and the client).

    .venv/bin/python bench/prediction_jobs.py                 # 355 white-cell crops, MobileNetV3-Small at 224 px
    .venv/bin/python bench/prediction_jobs.py --smoke         # seconds-long check on 24 synthetic images
    .venv/bin/python bench/prediction_jobs.py --detection-run RUN_FOLDER   # also a trained detector, 40 BCCD images
Writes ``bench/output/prediction_jobs/<time>.json`` and prints a Markdown table. Images: ``--data`` (default
../shared/data/wbc_bccd_crops/BCCD_cropped, predicted recursively); when absent, synthetic demo images.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from helpers import prediction_jobs, runs  # noqa: E402

DEFAULT_DATA = REPOSITORY_ROOT.parent / "shared" / "data" / "wbc_bccd_crops" / "BCCD_cropped"
DETECTION_IMAGES = REPOSITORY_ROOT.parent / "shared" / "data" / "bccd" / "JPEGImages"
OUTPUT = REPOSITORY_ROOT / "bench" / "output" / "prediction_jobs"


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exported_classifier(folder: pathlib.Path, backbone: str, image_size: int) -> runs.RunFolder:
    """A run folder with an exported random-weight classifier of 3 classes."""
    from helpers import config as config_module
    from helpers.classification import model as model_module
    from helpers.classification import predict
    from helpers.classification.config import ClassificationConfig

    config = config_module.config_from_form(ClassificationConfig, "quick", images_dir=str(folder),
                                            model_path=str(folder / "models"), model_name="bench",
                                            image_size=image_size, backbone=backbone)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    classes = ["a", "b", "c"]
    predict.export_model(model_module.build_classifier(backbone, len(classes), image_size), classes, run)
    return run


def load_model_once(predictor) -> None:
    """Load the predictor's model in this process (``client.run`` on every worker; nothing is sent back)."""
    prediction_jobs.loaded_model(predictor)


def time_setting(make_predictor, images: str, output: pathlib.Path, workers: int, limit: int | None) -> dict:
    """One row: start (cluster + model loads) seconds, job seconds, images/s, peak RSS MiB per process.

    ``make_predictor(output)`` gives the task's predictor (detection's writes into the job's output folder).
    """
    import distributed

    predictor = make_predictor(output)
    started = time.perf_counter()
    if workers == 0:
        prediction_jobs.loaded_model(predictor)
        start_seconds = time.perf_counter() - started
        result, seconds = _timed_job(predictor, images, output, "", limit)
        memory = [peak_rss_mib()]
    else:
        with prediction_jobs.local_cluster(workers) as cluster, distributed.Client(cluster) as client:
            client.run(load_model_once, predictor)
            start_seconds = time.perf_counter() - started
            result, seconds = _timed_job(predictor, images, output, cluster.scheduler_address, limit)
            memory = sorted(client.run(peak_rss_mib).values())
    return {"workers": workers, "images": result.images, "start_seconds": round(start_seconds, 1),
            "job_seconds": round(seconds, 2), "images_per_second": round(result.images / seconds, 1),
            "peak_rss_mib_per_process": [round(value) for value in memory]}


def _timed_job(predictor, images: str, output: pathlib.Path, scheduler: str, limit: int | None):
    started = time.perf_counter()
    result = prediction_jobs.run_job(predictor, images, output, scheduler=scheduler, progress=False, stop_after=limit)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of images (subfolders included)")
    parser.add_argument("--backbone", default="mobilenetv3small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--limit", type=int, default=None, help="predict at most this many images per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--smoke", action="store_true", help="24 synthetic 64-px images at 64 px")
    parser.add_argument("--detection-run", default="", help="also a trained detection run folder on --detection-images")
    parser.add_argument("--detection-images", default=str(DETECTION_IMAGES))
    parser.add_argument("--detection-limit", type=int, default=40, help="detection images per setting")
    arguments = parser.parse_args()
    from helpers.classification import demo_data, workflow

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        data, source = pathlib.Path(arguments.data), "real"
        if arguments.smoke or not data.is_dir():
            data, source = demo_data.make_classification_demo(scratch / "synthetic", 8, 64), "synthetic"
            arguments.image_size = 64 if arguments.smoke else arguments.image_size
        run = exported_classifier(scratch, arguments.backbone, arguments.image_size)
        rows = [time_setting(lambda output: workflow.prediction_job(str(run.root)), str(data),
                             scratch / f"out_{workers}", workers, arguments.limit) for workers in arguments.workers]
        detection_rows = detection_settings(arguments, scratch) if arguments.detection_run else []
    record = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(), "cpus": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "images": f"{source}: {data}", "backbone": arguments.backbone,
              "image_size": arguments.image_size, "chunk_size": 16, "rows": rows,
              "detection": {"run": arguments.detection_run, "images": arguments.detection_images, "rows": detection_rows}}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(record, indent=1))
    print(f"{arguments.backbone} at {arguments.image_size} px, {source} images, {os.cpu_count()} CPUs, "
          f"load average at end {os.getloadavg()[0]:.2f}")
    print_table(rows)
    if detection_rows:
        print(f"detection: {arguments.detection_run} on {arguments.detection_images}")
        print_table(detection_rows)


def detection_settings(arguments: argparse.Namespace, scratch: pathlib.Path) -> list[dict]:
    """The same settings for a trained detector (every result file written, as ``dl4cells detection predict``)."""
    from helpers.detection import workflow as detection_workflow

    def make_predictor(output: pathlib.Path):
        return detection_workflow.prediction_job(arguments.detection_run, str(output), arguments.detection_images)

    return [time_setting(make_predictor, arguments.detection_images, scratch / f"detection_{workers}", workers,
                         arguments.detection_limit) for workers in arguments.workers]


def print_table(rows: list[dict]) -> None:
    print("| setting | images | start s (cluster + model loads) | job s | images/s | peak RSS MiB per process |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        setting = "in process" if row["workers"] == 0 else f"{row['workers']} worker(s)"
        print(f"| {setting} | {row['images']} | {row['start_seconds']} | {row['job_seconds']} | "
              f"{row['images_per_second']} | {', '.join(map(str, row['peak_rss_mib_per_process']))} |")


if __name__ == "__main__":
    main()
