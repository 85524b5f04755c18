"""Figures for plots saved as PNG: one factory and one save, shared by every task and by QC.

Figures are made with ``matplotlib.figure.Figure`` (not pyplot): no global backend is changed,
nothing pops up in a notebook, nothing is left open after saving, and it is safe in threads.
"""

from __future__ import annotations

import pathlib
from typing import Iterable

# Colours beyond the 20 of matplotlib's tab20 are spread around the hue circle by the golden ratio.
GOLDEN_RATIO_CONJUGATE = 0.618033988749895


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


def class_colours(class_names: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """A distinct RGB colour (0..255) per class, fixed by the position of the class in ``class_names``.

    The first 10 (or 20) classes get matplotlib's tab10 (tab20) colours, the palette of the
    dataset doctor's plots, so a class keeps its colour across plots when the same (sorted)
    class list is given; further classes are spread around the hue circle.
    """
    import colorsys

    import matplotlib

    names = list(dict.fromkeys(class_names))
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    colours = {}
    for index, name in enumerate(names):
        if index < palette.N:
            rgb = palette(index)[:3]
        else:
            rgb = colorsys.hsv_to_rgb((index * GOLDEN_RATIO_CONJUGATE) % 1.0, 0.75, 0.95)
        colours[name] = tuple(int(round(channel * 255)) for channel in rgb)
    return colours
