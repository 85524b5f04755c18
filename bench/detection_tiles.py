"""Benchmark: a trained detector on larger fields of view (pixel scale and windows, issue 20).

Two measurements, each on an existing run folder (its ``exported_model/``):

``mosaic``: the run's test images pasted N x N into larger fields (every object keeps its pixel
size; ``bccd.make_mosaics``), predicted (a) in windows at the model's pixel scale, what section 6
does now, and (b) shrunk whole into one window, what every model did before pixel scales
(``object_size_ratio`` = scale / (window / field width)); plus the single images. All three are
scored by the QC command (``python -m helpers.qc detection --json``).

    .venv/bin/python bench/detection_tiles.py mosaic --run RUN --images DIR --annotations DIR --grid 3

``memory``: one 8-bit RGB BigTIFF per side length (2,000, 5,000, 10,000 px; synthetic cells tiled
over it), each predicted in a fresh process, read region by region (``tiling.open_image``) and,
for contrast, decoded whole; peak resident memory (ru_maxrss) and seconds per image.

    .venv/bin/python bench/detection_tiles.py memory --run RUN --sizes 2000 5000 10000

Results: ``bench/output/detection_tiles/<time>/result.json`` (and printed).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from bccd import PROJECT_PYTHON, make_mosaics, score_with_qc, summary  # noqa: E402


def _mosaic(arguments, output: pathlib.Path) -> dict:
    from helpers import images
    from helpers.detection import export, predict

    run = pathlib.Path(arguments.run)
    detector = export.load_exported_model(run / "exported_model")
    scale = detector.pixel_scale
    source_images, source_annotations = pathlib.Path(arguments.images), pathlib.Path(arguments.annotations)
    stems = sorted(path.stem for path in images.list_images(source_images))
    extension = images.list_images(source_images)[0].suffix
    mosaic_images, mosaic_annotations, mosaic_stems = make_mosaics(source_images, source_annotations, stems,
                                                                   arguments.grid, output / "mosaics", extension)
    field_width = images.image_size(mosaic_images / f"{mosaic_stems[0]}.png")[0]
    rows = {}
    for name, folder, annotations, ratio in (
            ("single_images", source_images, source_annotations, 1.0),
            ("mosaic_windows", mosaic_images, mosaic_annotations, 1.0),
            ("mosaic_shrunk_whole", mosaic_images, mosaic_annotations, scale.scale / (scale.window / field_width))):
        started = time.perf_counter()
        prediction = predict.predict_folder(run, folder, output / name, progress=False, score_threshold=0.05,
                                            object_size_ratio=ratio)
        seconds = time.perf_counter() - started
        scored = summary(score_with_qc(prediction.csv_path, annotations, folder))
        rows[name] = {"images": prediction.images, "object_size_ratio": round(ratio, 4),
                      "pixel_scale_used": round(scale.scale / ratio, 4), "seconds": round(seconds, 1), **scored}
        print(name, json.dumps(rows[name]), flush=True)
    return {"run": str(run), "grid": arguments.grid, "field_width": field_width, "pixel_scale": scale.to_dict(),
            "rows": rows}


def _write_field(path: pathlib.Path, side: int) -> None:
    """An 8-bit RGB BigTIFF of side x side px: synthetic demo cells repeated over it (written in strips)."""
    import numpy as np
    import tifffile

    from helpers import images
    from helpers.detection import demo_data

    demo = demo_data.make_detection_demo(path.parent / "cells", number_of_images=4)
    tiles = [images.read_image(file) for file in sorted((demo / "images").glob("*.png"))]
    tile_height, tile_width = tiles[0].shape[:2]

    def rows():
        for top in range(0, side, tile_height):
            strip = np.concatenate([tiles[(top // tile_height + index) % len(tiles)]
                                    for index in range(-(-side // tile_width))], axis=1)[:, :side]
            yield strip[:min(tile_height, side - top)]

    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(np.concatenate(list(rows()), axis=0) if side <= 5000 else _concatenated(rows(), side),
                     photometric="rgb")


def _concatenated(strips, side: int):
    """The strips as one memory-mapped array (a 10,000 px field is 300 MB; the writer needs one array)."""
    import numpy as np

    array = np.lib.format.open_memmap(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"field_{side}.npy"), mode="w+",
                                      dtype=np.uint8, shape=(side, side, 3))
    top = 0
    for strip in strips:
        array[top:top + strip.shape[0]] = strip
        top += strip.shape[0]
    return array


# ru_maxrss counts the pages of a memory-mapped file that were read (file-backed, which the OS can drop at
# any time), so the child also samples RssAnon (memory only this process holds) every 50 ms.
CHILD = """
import json, resource, sys, threading, time
sys.path.insert(0, {root!r})
from helpers.detection import export, tiling
peak = {{"anon_kb": 0}}
def sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak["anon_kb"] = max(peak["anon_kb"], int(line.split()[1]))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
detector = export.load_exported_model({model!r})
time.sleep(0.2)
baseline = peak["anon_kb"]
started = time.perf_counter()
source = tiling.open_image({path!r}, min_pixels_for_regions={threshold})
found = detector.detect(source)
seconds = time.perf_counter() - started
time.sleep(0.2)
print(json.dumps({{"seconds": seconds, "detections": len(found), "reader": type(source).__name__,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anonymous_mb_after_model_load": baseline / 1024, "peak_anonymous_mb": peak["anon_kb"] / 1024}}))
"""


def _memory(arguments, output: pathlib.Path) -> dict:
    run = pathlib.Path(arguments.run)
    rows = []
    for side in arguments.sizes:
        path = output / f"field_{side}.tif"
        _write_field(path, side)
        for mode, threshold in (("regions", 1), ("decoded_whole", 10**12)):
            code = CHILD.format(root=str(REPOSITORY_ROOT), model=str(run / "exported_model"), path=str(path),
                                threshold=threshold)
            finished = subprocess.run([str(PROJECT_PYTHON), "-c", code], capture_output=True, text=True, check=False,
                                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if finished.returncode != 0:
                sys.stderr.write(finished.stderr[-3000:])
                raise RuntimeError(f"prediction of {path} failed")
            row = {"side": side, "mode": mode, "file_mb": round(path.stat().st_size / 2**20, 1),
                   **json.loads(finished.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
        path.unlink()
    return {"run": str(run), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mosaic = commands.add_parser("mosaic", help="test images pasted N x N: windows vs shrunk whole")
    mosaic.add_argument("--run", required=True, help="a run folder with exported_model/")
    mosaic.add_argument("--images", required=True)
    mosaic.add_argument("--annotations", required=True, help="VOC folder of the images")
    mosaic.add_argument("--grid", type=int, default=3)
    memory = commands.add_parser("memory", help="peak memory and seconds for one large TIFF per size")
    memory.add_argument("--run", required=True)
    memory.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output"))
    arguments = parser.parse_args(argv)
    output = pathlib.Path(arguments.output) / "detection_tiles" / f"{arguments.command}-{time.strftime('%Y%m%d-%H%M%S')}"
    output.mkdir(parents=True, exist_ok=True)
    result = _mosaic(arguments, output) if arguments.command == "mosaic" else _memory(arguments, output)
    result.update({"benchmark": f"detection_tiles {arguments.command}", "date": time.strftime("%Y-%m-%d %H:%M"),
                   "machine": platform.platform(), "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                   "peak_rss_mb_parent": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    (output / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(output / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
