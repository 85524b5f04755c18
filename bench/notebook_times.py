"""Benchmark: wall time of each notebook executed under papermill on the ``quick`` preset (CI's budget).

Runs each notebook's own test file (``tests/test_<task>_notebook.py``) in a fresh pytest, one after
the other, so the figure is what CI pays: the papermill execution (the module fixture's setup,
on the small real subsets those tests link from ``../shared/data``) plus, for detection, the nbval
re-run of the executed notebook. Reports pytest's per-phase durations and each file's total wall.

    .venv/bin/python bench/notebook_times.py                       # all three (~10 min on 2 cores)
    .venv/bin/python bench/notebook_times.py --notebooks grading
Writes ``bench/output/notebook_times/<time>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
# "312.45s setup    tests/test_detection_notebook.py::test_x" in pytest's --durations listing.
DURATION_LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(\S+)")


def time_notebook_tests(task: str) -> dict:
    """Run ``tests/test_<task>_notebook.py``; wall seconds, pytest's durations, and its outcome line."""
    test_file = f"tests/test_{task}_notebook.py"
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "--durations=0", "-p",
                               "no:cacheprovider"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    durations = [{"seconds": float(match.group(1)), "phase": match.group(2), "test": match.group(3).split("::")[-1]}
                 for match in map(DURATION_LINE.match, finished.stdout.splitlines()) if match]
    outcome = next((line for line in reversed(finished.stdout.splitlines()) if " in " in line), "")
    papermill = max((row["seconds"] for row in durations if row["phase"] == "setup"), default=None)
    nbval = sum(row["seconds"] for row in durations if "nbval" in row["test"] and row["phase"] == "call")
    return {"notebook": task, "wall_seconds": round(wall, 1), "papermill_seconds": papermill,
            "nbval_seconds": round(nbval, 1) or None, "outcome": outcome.strip("= "), "returncode": finished.returncode,
            "durations": durations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", default=["detection", "classification", "grading"],
                        choices=["detection", "classification", "grading"])
    parser.add_argument("--output", type=pathlib.Path,
                        default=REPOSITORY_ROOT / "bench" / "output" / "notebook_times")
    arguments = parser.parse_args(argv)
    rows = []
    for task in arguments.notebooks:
        rows.append(time_notebook_tests(task))
        print(json.dumps({key: rows[-1][key] for key in ("notebook", "wall_seconds", "papermill_seconds",
                                                         "nbval_seconds", "outcome")}), flush=True)
    result = {"benchmark": "notebook_times", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(), "rows": rows}
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2),
                                                                              encoding="utf-8")
    print("| notebook | papermill (s) | nbval re-run (s) | test file wall (s) | outcome |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['notebook']} | {row['papermill_seconds']} | {row['nbval_seconds'] or '—'} | "
              f"{row['wall_seconds']} | {row['outcome']} |")
    return 0 if all(row["returncode"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
