"""Figures for plots saved as PNG: one factory and one save, shared by every task and by QC.

Figures are made with ``matplotlib.figure.Figure`` (not pyplot): no global backend is changed,
nothing pops up in a notebook, nothing is left open after saving, and it is safe in threads.
"""

from __future__ import annotations

import pathlib


def new_figure(width_inches: float, height_inches: float, layout: str | None = "constrained"):
    """A matplotlib Figure of ``width_inches`` x ``height_inches`` at 100 dpi (``layout`` None = manual)."""
    import matplotlib.figure

    return matplotlib.figure.Figure(figsize=(width_inches, height_inches), dpi=100, layout=layout)


def save_figure(figure, path: str | pathlib.Path, **savefig_arguments) -> pathlib.Path:
    """Save ``figure`` as a PNG at ``path`` (parent folder created) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, **savefig_arguments)
    return path
