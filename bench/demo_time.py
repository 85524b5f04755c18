"""Benchmark: does ``make demo`` end with a model that learned, and how long does it take?

Runs ``python -m helpers.demo`` (what ``make demo`` runs after installation) in a fresh subprocess
on a new output folder, so the figure includes TensorFlow's start-up, the papermill kernel, the
data check, training, export, QC and prediction. Reports the wall time, the CPU time of the
children, the machine's load average before and after (the figure is only comparable on an idle
machine), and the QC mAP50 / mAP50-95 on the demo's 6 held-out synthetic images.

    .venv/bin/python bench/demo_time.py                  # the demo as shipped (helpers.demo.DEMO_EPOCHS)
    .venv/bin/python bench/demo_time.py --epochs 20 30   # one row per epoch count, run one after the other
Writes ``bench/output/demo_time/<time>.json`` and prints a Markdown table. Target (issue 13):
mAP50 >= 0.8 in at most 6 minutes on the 2-core machine.
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
import tempfile
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))


def run_demo(epochs: int | None, scratch: pathlib.Path) -> dict:
    """Run the demo once into a new folder under ``scratch``; its wall/CPU seconds, load and QC metrics."""
    from helpers import demo

    output = pathlib.Path(tempfile.mkdtemp(prefix="demo-", dir=scratch))
    command = [sys.executable, "-m", "helpers.demo", "--output", str(output)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {"epochs": epochs if epochs is not None else demo.DEMO_EPOCHS, "wall_seconds": round(wall, 1),
           "cpu_seconds": round((cpu_after.ru_utime + cpu_after.ru_stime)
                                - (cpu_before.ru_utime + cpu_before.ru_stime), 1),
           "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
           "returncode": finished.returncode, "output": str(output)}
    if finished.returncode:
        row["stderr_tail"] = finished.stderr[-2000:]
        return row
    metrics = demo.latest_qc_metrics(output / "models" / "demo_retinanet")
    row.update({"qc_images": metrics["number_of_images"], "map50": round(metrics["map50"], 3),
                "map50_95": round(metrics["map50_95"], 3)})
    return row


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = ["| epochs | wall s | CPU s | load before/after | QC mAP50 | QC mAP50-95 |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['epochs']} | {row['wall_seconds']} | {row['cpu_seconds']} | "
                     f"{row['load_average_before']}/{row['load_average_after']} | {row.get('map50', 'failed')} | "
                     f"{row.get('map50_95', 'failed')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="*", default=[None],
                        help="epoch counts to run, one demo each (default: the demo as shipped)")
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="where the demo output folders go")
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output"))
    arguments = parser.parse_args(argv)
    rows = [run_demo(epochs, pathlib.Path(arguments.scratch)) for epochs in arguments.epochs]
    result = {"benchmark": "demo_time", "python": platform.python_version(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    folder = pathlib.Path(arguments.output) / "demo_time"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(markdown(rows))
    print(f"Written: {path}")
    return 1 if any(row["returncode"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
