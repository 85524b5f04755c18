"""``history.csv``: one row per completed epoch, the record that every training plot is drawn from.

Shared by all tasks. Rows are appended only after the epoch's checkpoint is saved, so the file
and the checkpoints always agree; ``truncate_history`` repairs a file left by a killed process.
"""

from __future__ import annotations

import csv
import math
import os
import pathlib
from typing import Iterable, Mapping, Sequence


def read_history(path: str | pathlib.Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as dicts of floats (``epoch`` as int); [] when the file is absent."""
    path = pathlib.Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            parsed = {key: _number(value) for key, value in row.items()}
            parsed["epoch"] = int(parsed["epoch"])
            rows.append(parsed)
    return rows


def _number(text: str | None) -> float:
    """CSV cell -> float; empty cells are NaN (e.g. a metric not measured that epoch)."""
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def append_history(path: str | pathlib.Path, row: Mapping[str, float], columns: Sequence[str]) -> None:
    """Append one epoch's row (writing the header first for a new file), flushed to disk.

    Args:
        path: the run's ``history.csv``.
        row: values by column name; missing columns are left empty.
        columns: the column order (``epoch`` first).
    """
    path = pathlib.Path(path)
    new_file = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        if new_file:
            writer.writeheader()
        writer.writerow({key: row.get(key, "") for key in columns})
        handle.flush()
        os.fsync(handle.fileno())


def truncate_history(path: str | pathlib.Path, completed_epochs: int, columns: Sequence[str]) -> list[dict[str, float]]:
    """Keep only rows of epochs 1..completed_epochs (first occurrence of each); rewrite atomically.

    Used on resume: a process killed between saving a checkpoint and writing its row, or a row
    of an epoch whose checkpoint never landed, would otherwise leave the file inconsistent.
    """
    path = pathlib.Path(path)
    kept: dict[int, dict[str, float]] = {}
    for row in read_history(path):
        if 1 <= row["epoch"] <= completed_epochs and row["epoch"] not in kept:
            kept[row["epoch"]] = row
    rows = [kept[epoch] for epoch in sorted(kept)]
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if isinstance(row.get(key), float) and math.isnan(row[key]) else row.get(key, ""))
                             for key in columns})
    os.replace(temporary, path)
    return rows


def plot_history(path: str | pathlib.Path, output_path: str | pathlib.Path,
                 panels: Iterable[tuple[str, Sequence[str]]]) -> pathlib.Path:
    """Draw training curves from ``history.csv`` into one PNG, one panel per group of columns.

    Args:
        path: the run's ``history.csv``.
        output_path: PNG to write.
        panels: (panel title, column names) pairs, e.g. ``("Loss", ["train_total_loss", "validation_loss"])``.

    Returns:
        ``output_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = read_history(path)
    panels = list(panels)
    figure, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    epochs = [row["epoch"] for row in rows]
    for axis, (title, columns) in zip(axes[0], panels):
        for column in columns:
            # Epochs without a value (e.g. not validated) are left out, so the line joins the others.
            points = [(epoch, row.get(column, math.nan)) for epoch, row in zip(epochs, rows)]
            points = [(epoch, value) for epoch, value in points if not math.isnan(value)]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=column.replace("_", " "))
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.tight_layout()
    output_path = pathlib.Path(output_path)
    figure.savefig(output_path, dpi=110)
    pyplot.close(figure)
    return output_path
