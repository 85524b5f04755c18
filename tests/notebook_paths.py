"""The evaluate-only and predict-only ways through a notebook (section 0), executed on a run a test trained.

One papermill execution of sections 1–2, 5 and 6 (``helpers.demo.NOTEBOOK_PATHS["evaluate and predict"]``)
proves both ways: neither section 3 nor 4 runs in it, so 5 and 6 each run after sections 1–2 alone.
"""

import json
import pathlib
import time

from helpers import demo


def run_sections_1_2_5_6(notebook: pathlib.Path, parameters: dict, folder: pathlib.Path) -> dict:
    """Execute sections 1, 2, 5 and 6 of ``notebook`` with ``parameters`` (the trained run's) into ``folder``.

    Returns:
        ``{"titles": the #@title line of every code cell that ran, "text": their stream output joined,
        "shown_objects": the repr of every value a cell's last line displayed (a path, a dataclass)}``.
        A cell that raises fails the execution (papermill raises ``PapermillExecutionError``).
    """
    path_notebook = demo.notebook_for_path(notebook, "evaluate and predict", folder / "sections_1_2_5_6.ipynb")
    executed = demo.execute_notebook(path_notebook, folder / "sections_1_2_5_6_executed.ipynb", parameters)
    cells = [cell for cell in json.loads(executed.read_text(encoding="utf-8"))["cells"] if cell["cell_type"] == "code"]
    titles = ["".join(cell["source"]).split("\n", 1)[0] for cell in cells]
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    text = "\n".join("".join(output.get("text", "")) for output in outputs)
    shown_objects = [output["data"].get("text/plain", "") for output in outputs if output["output_type"] == "execute_result"]
    return {"titles": titles, "text": text, "shown_objects": shown_objects}


def sections_run(titles: list[str]) -> set[str]:
    """The top-level section numbers of the cells that ran ("#@title 6.2 Rank ..." -> "6")."""
    return {title.split()[1].split(".")[0] for title in titles if title.startswith("#@title ")}


def check_sections_1_2_5_6(notebook: pathlib.Path, executed: dict, folder: pathlib.Path) -> dict:
    """Run sections 1, 2, 5 and 6 on the run the module's ``executed`` fixture trained and check that 5 wrote a
    new ``metrics.json`` and 6 a new predictions folder with ``predictions.csv``; returns ``run_sections_1_2_5_6``'s
    answer for the module's own checks."""
    run = executed["run"]
    started = time.time()
    predictions_before = set((run / "predictions").iterdir())
    ran = run_sections_1_2_5_6(notebook, executed["parameters"], folder)
    assert sections_run(ran["titles"]) == {"1", "2", "5", "6"}
    assert any(path.stat().st_mtime >= started for path in (run / "qc").rglob("metrics.json")), "5.1 wrote no QC"
    new_predictions = set((run / "predictions").iterdir()) - predictions_before
    assert len(new_predictions) == 1 and (new_predictions.pop() / "predictions.csv").is_file()
    assert "Example_dataset is none" in ran["text"]
    assert ran["shown_objects"] == [], "a cell ends in a value Jupyter displays as Python's repr"
    return ran
