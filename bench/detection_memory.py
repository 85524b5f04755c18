"""Benchmark: peak resident memory of detection training and prediction on 100 vs 1,000 images.

The images come from BCCD by augmentation multiplication (``helpers.detection.augmentation``): 100 = the first
100 stems of ``trainval.txt`` as they are; 1,000 = the first 125 stems ×8 (originals + 875
augmented copies, written once under ``bench/output/detection_memory/data``). Each measurement
runs in its own child process (so one cannot inherit another's memory):

* ``train``: the whole run path for one epoch over every image (doctor items → TFRecords →
  Model Garden parser → our loop, checkpoint, validation on 20 images);
* ``predict``: ``predict_folder`` (CSV, VOC, COCO JSON, overlays) over every image with the
  model exported by the 100-image training.

Peak resident memory is the kernel's high-water mark (``VmHWM``); a sampler thread also records
the resident size every 0.5 s, so the JSON shows whether memory climbs with the images processed.
Goal: the peak does not grow with the number of images.

    .venv/bin/python bench/detection_memory.py                 # 256 px, batch 8 (~15 min on 2 cores)
    .venv/bin/python bench/detection_memory.py --smoke         # 6 vs 12 images, 128 px
Writes ``bench/output/detection_memory/<time>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from bccd import DEFAULT_BCCD, stems  # noqa: E402

OUTPUT = REPOSITORY_ROOT / "bench" / "output" / "detection_memory"


def resident_megabytes(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its high-water mark (``VmHWM``), in MiB (Linux)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class MemorySampler:
    """Samples the resident memory every ``interval`` seconds in a daemon thread: [(seconds, MiB)]."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.perf_counter() - self._started, 1), round(resident_megabytes(), 1)))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        """Stop sampling; at most 60 evenly spaced samples (the JSON stays readable)."""
        self._stop.set()
        self._thread.join()
        step = max(1, len(self.samples) // 60)
        return self.samples[::step]


def make_datasets(bccd: pathlib.Path, data: pathlib.Path, small: int, large_sources: int, factor: int) -> dict:
    """Stems of the two datasets: {"small": [(images_dir, annotations_dir, stem)...], "large": [...]}."""
    from helpers.detection import augmentation
    from helpers.detection import dataset as detection_dataset

    dataset = detection_dataset.load_detection_dataset(bccd / "JPEGImages", bccd / "Annotations", progress=False)
    by_stem = {item.stem: item for item in dataset.items}
    order = [stem for stem in stems(bccd, "trainval") if stem in by_stem]
    sources = [by_stem[stem] for stem in order[:large_sources]]
    result = augmentation.multiply_dataset(sources, data / "augmented", factor, seed=0,
                                      usable_objects=dataset.usable_objects, progress=False)
    copies = detection_dataset.load_detection_dataset(result.output_dir / "images", result.output_dir / "annotations",
                                           progress=False)
    original = (str(bccd / "JPEGImages"), str(bccd / "Annotations"))
    augmented = (str(copies.images_dir), str(copies.annotations_dir))
    return {"small": [(*original, stem) for stem in order[:small]],
            "large": [(*original, item.stem) for item in sources] + [(*augmented, item.stem) for item in copies.items]}


def child_train(listing: list, work: pathlib.Path, image_size: int, batch_size: int) -> dict:
    """One epoch over every listed image through ``train_detector``; memory figures and seconds."""
    from helpers import config as config_module
    from helpers import runs
    from helpers.detection import dataset as detection_dataset
    from helpers.detection import export, train
    from helpers.detection.config import DetectionConfig

    sampler = MemorySampler()
    folders = sorted({(images, annotations) for images, annotations, _ in listing})
    items, usable = [], {}
    for images, annotations in folders:
        dataset = detection_dataset.load_detection_dataset(images, annotations, progress=False)
        wanted = {stem for i, a, stem in listing if (i, a) == (images, annotations)}
        for item in dataset.items:
            if item.stem in wanted:
                items.append(item)
                usable[item.stem] = dataset.usable_objects(item)
    classes = sorted({obj.name for boxes in usable.values() for obj in boxes})
    config = config_module.config_from_form(
        DetectionConfig, "default", images_dir=folders[0][0], annotations_dir=folders[0][1], model_path=str(work),
        model_name="run", backbone="spinenet49_mobile", pretrained="none", image_size=image_size, epochs=1,
        batch_size=batch_size, steps_per_epoch=0)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(classes)
    after_setup = resident_megabytes()
    started = time.perf_counter()
    result = train.train_detector(config, run, items, items[:20], classes, lambda item: usable[item.stem])
    seconds = time.perf_counter() - started
    export.export_saved_model(result.model, config, classes, run.exported_model, pixel_scale=result.pixel_scale)
    return {"images": len(items), "seconds": round(seconds, 1), "rss_after_imports_mib": round(after_setup, 1),
            "peak_rss_mib": round(resident_megabytes("VmHWM"), 1), "samples": sampler.stop(), "run": str(run.root)}


def child_predict(listing: list, work: pathlib.Path, run_root: str) -> dict:
    """``predict_folder`` over every listed image (linked into one folder); memory figures and seconds."""
    from helpers.detection import predict

    sampler = MemorySampler()
    source = work / "images"
    source.mkdir(parents=True)
    for images, _, stem in listing:
        original = next(pathlib.Path(images).glob(f"{stem}.*"))
        (source / original.name).symlink_to(original)
    after_setup = resident_megabytes()
    started = time.perf_counter()
    result = predict.predict_folder(run_root, source, work / "predictions", progress=False)
    seconds = time.perf_counter() - started
    return {"images": result.images, "seconds": round(seconds, 1), "rss_after_imports_mib": round(after_setup, 1),
            "peak_rss_mib": round(resident_megabytes("VmHWM"), 1), "samples": sampler.stop()}


def run_child(phase: str, size_name: str, listing_path: pathlib.Path, work: pathlib.Path, arguments,
              run_root: str = "") -> dict:
    """Run one measurement in a fresh Python process; its JSON result."""
    result_path = work / f"{phase}-{size_name}.json"
    command = [sys.executable, __file__, "--child", phase, "--listing", str(listing_path), "--work",
               str(work / f"{phase}-{size_name}"), "--result", str(result_path), "--image-size",
               str(arguments.image_size), "--batch-size", str(arguments.batch_size), "--run-root", run_root]
    subprocess.run(command, check=True)
    return json.loads(result_path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=pathlib.Path, default=DEFAULT_BCCD)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="6 vs 12 images at 128 px")
    parser.add_argument("--child", choices=["train", "predict"], help=argparse.SUPPRESS)
    parser.add_argument("--listing", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-root", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        listing = json.loads(arguments.listing.read_text(encoding="utf-8"))
        measured = (child_train(listing, arguments.work, arguments.image_size, arguments.batch_size)
                    if arguments.child == "train" else child_predict(listing, arguments.work, arguments.run_root))
        arguments.result.write_text(json.dumps(measured), encoding="utf-8")
        return 0
    if not arguments.bccd.is_dir():
        print(f"{arguments.bccd}: BCCD not found; pass --bccd", file=sys.stderr)
        return 2
    if arguments.smoke:
        arguments.image_size, arguments.batch_size = 128, 2
    small, sources, factor = (6, 3, 4) if arguments.smoke else (100, 125, 8)
    work = OUTPUT / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    datasets = make_datasets(arguments.bccd, OUTPUT / ("data-smoke" if arguments.smoke else "data"), small, sources,
                             factor)
    rows = {}
    for size_name, listing in datasets.items():
        listing_path = work / f"{size_name}.json"
        listing_path.write_text(json.dumps(listing), encoding="utf-8")
        rows[f"train-{size_name}"] = run_child("train", size_name, listing_path, work, arguments)
    run_root = rows["train-small"]["run"]
    for size_name in datasets:
        rows[f"predict-{size_name}"] = run_child("predict", size_name, work / f"{size_name}.json", work, arguments,
                                                 run_root)
    result = {"benchmark": "detection_memory", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "image_size": arguments.image_size, "batch_size": arguments.batch_size,
              "rows": rows}
    (work.parent / f"{work.name}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print("| phase | images | seconds | RSS after setup (MiB) | peak RSS (MiB) |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name.split('-')[0]} | {row['images']} | {row['seconds']} | {row['rss_after_imports_mib']} | "
              f"{row['peak_rss_mib']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
