"""What the notebook execution tests read back from a run folder: PDF text and the QC command's JSON."""

import json
import pathlib
import re
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


# What must never reach a user's cell output unasked: a Python traceback printed by a library (not an error the
# cell raised), an absl ERROR or TensorFlow INFO record, or a TensorFlow C++ log line in either of its two formats
# ("2026-12-07 01:57:09.302203: I external/..." and absl's "E0000 00:00:1733... cuda_dnn.cc:8310] ...").
NOISE_PATTERN = re.compile(r"Traceback \(most recent call last\)|^ERROR:absl:|^INFO:(?:absl|tensorflow):|"
                           r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ ",
                           re.MULTILINE)


def unexpected_tracebacks(executed_notebook: pathlib.Path) -> list[str]:
    """Every stream output of the executed notebook that carries a traceback, absl error or TensorFlow C++ log line.

    Each entry is ``"cell <index> <stdout|stderr>: <first matching line>"``. Error outputs (an exception a cell
    raised, shown to the user on purpose) are not counted.
    """
    notebook = json.loads(executed_notebook.read_text(encoding="utf-8"))
    found = []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) if output.get("output_type") == "stream" else ""
            match = NOISE_PATTERN.search(text)
            if match:
                line = text[match.start():].splitlines()[0]
                found.append(f"cell {index} {output['name']}: {line[:200]}")
    return found
