"""``python -m helpers.demo``: run the detection notebook end to end on synthetic demo data.

This is the README's demo command (``make demo``). It works offline: it generates a small
synthetic dataset (plainly marked as such), executes ``notebooks/detection_retinanet.ipynb``
with papermill on the ``quick`` preset for ``DEMO_EPOCHS`` epochs, and prints where the PDF
reports are and the QC mAP on held-out synthetic images.
"""

from __future__ import annotations

import argparse
import json
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

    output_notebook.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(output_notebook), parameters=parameters,
                               kernel_name="python3", cwd=str(REPOSITORY_ROOT),
                               execution_timeout=timeout_seconds, progress_bar=False)
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
    parameters = detection_parameters(data_dir, output / "models", test_images=str(test_dir / "images"),
                                      test_annotations=str(test_dir / "annotations"),
                                      number_of_epochs=arguments.epochs)
    print(f"Synthetic demo data: {data_dir}\nExecuting {DETECTION_NOTEBOOK.name} (quick preset, "
          f"{arguments.epochs} epochs; a few minutes on a laptop CPU) ...", file=sys.stderr)
    executed = execute_notebook(DETECTION_NOTEBOOK, output / "detection_retinanet_demo.ipynb", parameters)
    run_folder = output / "models" / parameters["model_name"]
    metrics = latest_qc_metrics(run_folder)
    print(f"Executed notebook: {executed} ({time.perf_counter() - started:.0f} s)")
    for report in ("training_report.pdf", "qc_report.pdf"):
        print(f"{report}: {run_folder / report}")
    print(f"QC on {metrics['number_of_images']} held-out synthetic images: mAP50 {metrics['map50']:.3f}, "
          f"mAP50-95 {metrics['map50_95']:.3f}")
    print("These come from SYNTHETIC demo data: they show the pipeline works, not how well it detects real cells.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
