"""``python -m helpers.demo``: run the detection notebook end to end on synthetic demo data.

This is the README's demo command (``make demo``). It works offline: it generates a small
synthetic dataset (plainly marked as such), executes ``notebooks/detection_retinanet.ipynb``
with papermill on the ``quick`` preset, and prints where the PDF reports are.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from helpers import demo_data

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
DETECTION_NOTEBOOK = REPOSITORY_ROOT / "notebooks" / "detection_retinanet.ipynb"


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


def main(argv: list[str] | None = None) -> int:
    """Generate demo data, run the detection notebook on it, print where the reports are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo_output", help="folder for data, run folder and executed notebook")
    arguments = parser.parse_args(argv)
    output = pathlib.Path(arguments.output).resolve()
    data_dir = demo_data.make_detection_demo(output / "synthetic_detection_data", number_of_images=24)
    test_dir = demo_data.make_detection_demo(output / "synthetic_detection_test", number_of_images=6, seed=1)
    parameters = detection_parameters(data_dir, output / "models", test_images=str(test_dir / "images"),
                                      test_annotations=str(test_dir / "annotations"))
    print(f"Synthetic demo data: {data_dir}\nExecuting {DETECTION_NOTEBOOK.name} (quick preset) ...", file=sys.stderr)
    executed = execute_notebook(DETECTION_NOTEBOOK, output / "detection_retinanet_demo.ipynb", parameters)
    run_folder = output / "models" / parameters["model_name"]
    print(f"Executed notebook: {executed}")
    for report in ("training_report.pdf", "qc_report.pdf"):
        print(f"{report}: {run_folder / report}")
    print("These come from SYNTHETIC demo data: they show the pipeline works, not how well it detects real cells.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
