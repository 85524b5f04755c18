"""Report sections every task's PDFs share: the answer first, warnings, then glossary and appendix.

Every report has the same order: title, the answer in plain words (a blue box), what to read first
(quick run, synthetic data, too few images, a class the model never saw: an amber box), the
results and figures, a glossary of the terms used, and an appendix with the hardware, software
versions and the settings verbatim. Task modules (e.g. ``helpers.detection.reports``) write the
answer sentences and the results in between.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Sequence

from helpers import config as config_module
from helpers import environment, report, runs, synthetic

def is_synthetic(folder: str | pathlib.Path) -> bool:
    """True when ``folder`` (or its parent) was written by a demo (``helpers.synthetic``)."""
    folder = pathlib.Path(str(folder))
    return any(synthetic.is_demo_folder(candidate) for candidate in (folder, folder.parent))


SMALL_SAMPLE_IMAGES = 20  # below this many scored images, a QC report warns that its figures are unstable
GLOSSARY_TITLE = "Glossary"
APPENDIX_TITLE = "Appendix"


def start_report(title: str, run: runs.RunFolder, config: Any, data_folder: str | pathlib.Path,
                 answer: Sequence[str] = (), warnings: Sequence[str] = ()) -> report.Report:
    """A report that leads with its answer: title, the answer box, warnings, then date and model.

    Args:
        answer: plain sentences, the first one the headline (e.g. "31 of 34 annotated cells found").
        warnings: sentences a reader must see before the figures (small test set, unseen class);
            the quick-run and synthetic-data notices are added here for every task.
    """
    document = report.Report(title, subtitle=f"Run folder: {run.root}")
    document.callout(answer)
    notices = [config_module.quick_run_notice(config)]
    if is_synthetic(data_folder):
        notices.append("This run used SYNTHETIC DEMO DATA (generated shapes, not microscopy). Its figures show that "
                       "the pipeline works; they say nothing about real cells.")
    notices += list(warnings)
    notices = [notice for notice in notices if notice]
    if notices:
        document.callout(["Read this first"] + notices, warning=True)
    document.key_value_table([("Date", time.strftime("%Y-%m-%d %H:%M %Z")), ("Model name", run.root.name),
                              ("Preset", getattr(config, "preset", ""))])
    return document


def sample_size_warning(images: int, what: str = "test images") -> str:
    """A warning sentence when fewer than ``SMALL_SAMPLE_IMAGES`` images were scored ("" otherwise)."""
    if images >= SMALL_SAMPLE_IMAGES:
        return ""
    return (f"Only {images} {what}: these numbers can change a lot with other images. Score at least "
            f"{SMALL_SAMPLE_IMAGES} images (Test_images in form 1.1) before relying on them.")


def accelerator_used(training_hardware: str | None = None) -> str:
    """What the work ran on, in words: "GPU: Tesla T4", "TPU ..." or "CPU (8 cores); no GPU was used".

    Args:
        training_hardware: the sentence training recorded (``strategy.describe_strategy``), which
            names a TPU, several devices or several machines; None for a QC report (this machine's GPU, if any).
    """
    if training_hardware and ("TPU" in training_hardware or "at once" in training_hardware):
        return training_hardware
    gpu = environment.gpu_check()
    if gpu.available and not (training_hardware or "").startswith("Training on the CPU"):
        return f"GPU: {gpu.name}"
    return f"CPU ({os.cpu_count()} cores); no GPU was used"


def add_glossary(document: report.Report, entries: Sequence[tuple[str, str]]) -> None:
    """The terms of the report that need a definition, after the results (term, meaning) rows."""
    if entries:
        document.heading(GLOSSARY_TITLE)
        document.key_value_table(list(entries))


def add_appendix(document: report.Report, config: Any, training_hardware: str | None = None) -> None:
    """The appendix at the end of every report: hardware and software versions, then the settings verbatim."""
    document.heading(f"{APPENDIX_TITLE}: hardware and software")
    rows = [("Accelerator used", accelerator_used(training_hardware))] + sorted(environment.versions().items())
    document.key_value_table(rows)
    document.heading(f"{APPENDIX_TITLE}: settings (config.yaml, verbatim)")
    document.preformatted(config_module.config_to_yaml(config))


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 2 min 5 s"``."""
    seconds = int(round(seconds))
    hours, remainder = divmod(seconds, 3600)
    minutes, seconds = divmod(remainder, 60)
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(hours or minutes) + [f"{seconds} s"]
    return " ".join(parts)
