"""Report sections every task's PDFs share: header, machine and versions, config verbatim.

Task modules (e.g. ``helpers.detection.reports``) add their own sections between these.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from helpers import config as config_module
from helpers import environment, report, runs, synthetic

def is_synthetic(folder: str | pathlib.Path) -> bool:
    """True when ``folder`` (or its parent) was written by a demo (``helpers.synthetic``)."""
    folder = pathlib.Path(str(folder))
    return any(synthetic.is_demo_folder(candidate) for candidate in (folder, folder.parent))


def start_report(title: str, run: runs.RunFolder, config: Any, data_folder: str | pathlib.Path) -> report.Report:
    """A report with the title, date, run folder and (if so) a synthetic-data warning."""
    document = report.Report(title, subtitle=f"Run folder: {run.root}")
    document.key_value_table([("Date", time.strftime("%Y-%m-%d %H:%M %Z")), ("Model name", run.root.name),
                              ("Preset", getattr(config, "preset", ""))])
    if is_synthetic(data_folder):
        document.paragraph("WARNING: this run used SYNTHETIC DEMO DATA (generated shapes, not microscopy). "
                           "Its figures show that the pipeline works; they say nothing about real cells.")
    return document


def add_environment(document: report.Report) -> None:
    """Hardware and software versions, so a result can be reproduced."""
    document.heading("Hardware and software")
    gpu = environment.gpu_check()
    rows = [("Accelerator", gpu.message)] + sorted(environment.versions().items())
    document.key_value_table(rows)


def add_config(document: report.Report, config: Any) -> None:
    """The run's settings, verbatim as saved in ``config.yaml``."""
    document.heading("Settings (config.yaml, verbatim)")
    document.preformatted(config_module.config_to_yaml(config))


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 2 min 5 s"``."""
    seconds = int(round(seconds))
    hours, remainder = divmod(seconds, 3600)
    minutes, seconds = divmod(remainder, 60)
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(hours or minutes) + [f"{seconds} s"]
    return " ".join(parts)
