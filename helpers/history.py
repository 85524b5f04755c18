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
                 panels: Iterable[tuple], marked_epoch: int | None = None,
                 marked_label: str = "kept epoch") -> pathlib.Path:
    """Draw training curves from ``history.csv`` into one PNG, one panel per group of columns.

    Training columns are lines (a value every epoch); ``validation_*`` columns are points, since
    validation may run every N epochs only. Every panel has axis labels and a legend below it, so
    no label covers a curve.

    Args:
        path: the run's ``history.csv``.
        output_path: PNG to write.
        panels: ``(title, columns)`` or ``(title, columns, y-axis label)``; a column is a name
            (``"train_total_loss"``) or ``(name, legend label, factor)`` to draw ``factor`` × the
            column, e.g. a loss term times the weight it had in the optimised loss.
        marked_epoch: drawn as a vertical line in every panel (the checkpoint kept); None: none.
        marked_label: the legend text of that line.

    Returns:
        ``output_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    rows = read_history(path)
    panels = list(panels)
    figure, axes = pyplot.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    epochs = [row["epoch"] for row in rows]
    for axis, panel in zip(axes[0], panels):
        title, columns = panel[0], panel[1]
        for column in columns:
            name, label, factor = (column, column.replace("_", " "), 1.0) if isinstance(column, str) else column
            # Epochs without a value (e.g. not validated) are left out.
            points = [(epoch, row.get(name, math.nan) * factor) for epoch, row in zip(epochs, rows)]
            points = [(epoch, value) for epoch, value in points if not math.isnan(value)]
            if not points:
                continue
            if name.startswith("validation"):
                axis.plot(*zip(*points), linestyle="none", marker="o", markersize=5, label=label)
            else:
                # A line of one point is invisible (the first epoch of a live curve): draw that point.
                axis.plot(*zip(*points), linewidth=1.6, label=label, marker="o" if len(points) == 1 else None,
                          markersize=4)
        if marked_epoch is not None and axis.lines:
            axis.axvline(marked_epoch, color="black", linestyle="--", linewidth=1, label=f"{marked_label} ({marked_epoch})")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # no "epoch 1.5"
        axis.set_ylabel(panel[2] if len(panel) > 2 else title.lower())
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    figure.tight_layout()
    output_path = pathlib.Path(output_path)
    figure.savefig(output_path, dpi=110, bbox_inches="tight")
    pyplot.close(figure)
    return output_path
