"""What the notebook execution tests read back from a run folder: PDF text and the QC command's JSON."""

import json
import pathlib
import subprocess
import sys

from tests.conftest import REPOSITORY_ROOT


def pdf_text(path: pathlib.Path) -> str:
    """The text of every page of the PDF at ``path``, pages joined by newlines."""
    import pypdf

    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)


def qc_command_metrics(task: str, qc_folder: pathlib.Path, *options: str) -> tuple[dict, dict]:
    """(``python -m helpers.qc <task> ... --json`` on the run's qc/ CSVs, the notebook's qc/metrics.json)."""
    completed = subprocess.run(
        [sys.executable, "-m", "helpers.qc", task, "--labels", str(qc_folder / "labels.csv"),
         "--predictions", str(qc_folder / "predictions.csv"), *options, "--json"],
        cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout), json.loads((qc_folder / "metrics.json").read_text(encoding="utf-8"))


def nbval_lax(executed_notebook: pathlib.Path) -> subprocess.CompletedProcess:
    """Run the executed notebook again under ``pytest --nbval-lax`` in this environment (cells must not fail)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(executed_notebook)],
                          cwd=executed_notebook.parent, capture_output=True, text=True)
