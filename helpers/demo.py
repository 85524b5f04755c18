"""``python -m helpers.demo``: run the detection notebook end to end on synthetic demo data.

This is the README's demo command (``make demo``). It works offline: it generates a small
synthetic dataset (plainly marked as such), executes ``notebooks/detection_retinanet.ipynb``
with papermill on the ``quick`` preset for ``DEMO_EPOCHS`` epochs, and prints the QC mAP on
held-out synthetic images and, last, where every output is (run folder, both PDF reports, QC
folder, predictions.csv, counts.csv, executed notebook). TensorFlow's C++ log and the kernel's
debugger warning are kept out of the log (``helpers/quiet.py``, ``execute_notebook``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any

from helpers import errors
from helpers.detection import demo_data

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
DETECTION_NOTEBOOK = REPOSITORY_ROOT / "notebooks" / "detection_retinanet.ipynb"
# 40 epochs of the quick preset: QC mAP50 0.997 in 286 s, then 0.947 in 250 s (7 of 40 epochs validated) on
# the 6 held-out images, idle 2-core machine (docs/benchmarks.md §9c); 30 gave 0.933 once and 0.755 once (too
# close to the 0.8 floor); the 2 epochs of the quick preset alone leave a model that finds nothing (mAP50 0.000).
DEMO_EPOCHS = 40


def detection_parameters(data_dir: pathlib.Path, model_path: pathlib.Path, model_name: str = "demo_retinanet",
                         test_images: str = "", test_annotations: str = "", **overrides: Any) -> dict[str, Any]:
    """Papermill parameters that point the detection notebook at a VOC dataset, quick preset.

    Args:
        data_dir: folder holding ``images/`` and ``annotations/``.
        model_path: parent folder of the run folder.
        test_images, test_annotations: held-out QC folders ("" = use the validation split).
        **overrides: any other parameter of the notebook's ``parameters`` cell.
    """
    parameters = {
        "Training_images": str(data_dir / "images"),
        "Training_annotations": str(data_dir / "annotations"),
        "Test_images": test_images,
        "Test_annotations": test_annotations,
        "Prediction_images": "",
        "model_path": str(model_path),
        "model_name": model_name,
        "preset": "quick",
        "number_of_epochs": None,
    }
    parameters.update(overrides)
    return parameters


def execute_notebook(notebook: pathlib.Path, output_notebook: pathlib.Path, parameters: dict[str, Any],
                     timeout_seconds: int = 1800) -> pathlib.Path:
    """Execute ``notebook`` with papermill into ``output_notebook``; returns the output path."""
    import papermill  # local: only the demo and the tests need it

    # The kernel inherits this environment. Without it, ipykernel's debugger (pydevd) prints a "frozen modules"
    # warning on every kernel start into the demo's log; TF_CPP_MIN_LOG_LEVEL is set by helpers/quiet.py.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    output_notebook.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(output_notebook), parameters=parameters,
                               kernel_name="python3", cwd=str(REPOSITORY_ROOT),
                               execution_timeout=timeout_seconds, progress_bar=False)
    return output_notebook


# The sections of each way through a notebook (section 0 of every notebook names them): sections 1 and 2
# (installation, Drive, example dataset) and then what the user wants; every cell runs after 1–2 alone.
NOTEBOOK_PATHS = {"train": ("1", "2", "3", "4", "5", "6"), "evaluate": ("1", "2", "5"), "predict": ("1", "2", "6"),
                  "evaluate and predict": ("1", "2", "5", "6")}


def cell_section(cell: Any) -> str | None:
    """The top-level section number of a code cell's ``#@title`` (``"#@title 6.2 Rank ..."`` -> ``"6"``), or None."""
    first_line = cell.source.split("\n", 1)[0]
    if cell.cell_type != "code" or not first_line.startswith("#@title "):
        return None
    return first_line.split()[1].split(".")[0]


def notebook_for_path(notebook: pathlib.Path, path: str, output_notebook: pathlib.Path) -> pathlib.Path:
    """Write the code cells of ``notebook`` that belong to ``NOTEBOOK_PATHS[path]`` (by their ``#@title`` section
    numbers, in notebook order, the ``parameters`` tag kept) to ``output_notebook``; returns its path.

    This is what a user running only those sections executes, so a cell that needs a skipped one fails here.
    """
    import nbformat  # local: only the tests and the demo need it

    sections = NOTEBOOK_PATHS[path]
    document = nbformat.read(str(notebook), as_version=4)
    document.cells = [cell for cell in document.cells if cell_section(cell) in sections]
    output_notebook.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(document, str(output_notebook))
    return output_notebook


def latest_qc_metrics(run_folder: pathlib.Path) -> dict[str, Any]:
    """The newest ``qc/<time>/metrics.json`` of a run folder, as a dict.

    Raises:
        errors.ModelError: the run has no QC result yet.
    """
    candidates = sorted(run_folder.glob("qc/*/metrics.json"))
    if not candidates:
        raise errors.ModelError(f"{run_folder / 'qc'}: no QC result (metrics.json). Run section 5.1 of the "
                                    f"notebook on this run folder first.")
    return json.loads(candidates[-1].read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Generate demo data, run the detection notebook on it, print where the reports are and the QC mAP."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo_output", help="folder for data, run folder and executed notebook")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS,
                        help=f"training epochs (default {DEMO_EPOCHS}: enough for the demo's model to learn)")
    arguments = parser.parse_args(argv)
    output = pathlib.Path(arguments.output).resolve()
    started = time.perf_counter()
    data_dir = demo_data.make_detection_demo(output / "synthetic_detection_data", number_of_images=24)
    test_dir = demo_data.make_detection_demo(output / "synthetic_detection_test", number_of_images=6, seed=1)
    # Section 6 predicts new images (their annotations are not used), so that 6.2 has images it may rank: the
    # test images are never offered for annotation (that would leak them into training).
    new_dir = demo_data.make_detection_demo(output / "synthetic_detection_new", number_of_images=4, seed=2)
    parameters = detection_parameters(data_dir, output / "models", test_images=str(test_dir / "images"),
                                      test_annotations=str(test_dir / "annotations"),
                                      number_of_epochs=arguments.epochs, Prediction_images=str(new_dir / "images"))
    print(f"Synthetic demo data: {data_dir}\nExecuting {DETECTION_NOTEBOOK.name} (quick preset, "
          f"{arguments.epochs} epochs; a few minutes on a laptop CPU) ...", flush=True)
    executed = execute_notebook(DETECTION_NOTEBOOK, output / "detection_retinanet_demo.ipynb", parameters)
    run_folder = output / "models" / parameters["model_name"]
    metrics = latest_qc_metrics(run_folder)
    print(f"Done in {time.perf_counter() - started:.0f} s. QC on {metrics['number_of_images']} held-out synthetic "
          f"images: mAP50 {metrics['map50']:.3f}, mAP50-95 {metrics['map50_95']:.3f}")
    print("These come from SYNTHETIC demo data: they show the pipeline works, not how well it detects real cells.")
    print(f"\nWhere everything is (detection):\n{where_outputs_are(run_folder, executed)}")
    return 0


def _newest(pattern_matches: list[pathlib.Path]) -> pathlib.Path | None:
    """The last of paths whose names sort by time (``20261207-001222``), or None."""
    return sorted(pattern_matches)[-1] if pattern_matches else None


def where_outputs_are(run_folder: pathlib.Path, executed_notebook: pathlib.Path) -> str:
    """One aligned line per output of a detection run that exists: what it is, then its path.

    The run folder, both PDF reports, the newest predictions (``predictions.csv``, ``counts.csv``) and QC
    folders, and the executed notebook; outputs that were not made are left out.
    """
    predictions = _newest(list(run_folder.glob("predictions/*/predictions.csv")))
    qc_folder = _newest([path.parent for path in run_folder.glob("qc/*/metrics.json")])
    candidates = [("run folder", run_folder), ("training report", run_folder / "training_report.pdf"),
                  ("QC report", run_folder / "qc_report.pdf"), ("QC tables and figures", qc_folder),
                  ("predictions", predictions), ("counts per image", predictions and predictions.with_name("counts.csv")),
                  ("executed notebook", executed_notebook)]
    found = [(label, path) for label, path in candidates if path is not None and path.exists()]
    width = max(len(label) for label, _ in found)
    return "\n".join(f"  {label.ljust(width)}  {path}" for label, path in found)


if __name__ == "__main__":
    sys.exit(main())
