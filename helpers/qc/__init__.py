"""Quality control: detection (pycocotools), classification and grading (scikit-learn).

Run as a command with ``python -m helpers.qc {detection,classification,grading} ... --json``.
No module of this package imports TensorFlow, so predictions of any tool can be checked.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python types, keys as text and non-finite floats as None (recursively)."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def format_value(value: Any) -> str:
    """A metric as text for tables: 3 decimals for floats, 'n/a' for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def text_table(rows: list[list[Any]]) -> str:
    """Rows (the first is the header) as left-aligned columns separated by two spaces."""
    cells = [[format_value(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)


def new_figure(width_inches: float, height_inches: float):
    """A matplotlib Figure (no pyplot state, safe in notebooks and threads), constrained layout, 100 dpi."""
    import matplotlib.figure

    return matplotlib.figure.Figure(figsize=(width_inches, height_inches), dpi=100, layout="constrained")


def save_figure(figure, path: str | pathlib.Path) -> pathlib.Path:
    """Save ``figure`` as a PNG at ``path`` (parent created) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
