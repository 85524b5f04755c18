"""Progress bars for long work (reading a dataset, writing copies, predicting a folder).

One function, so every bar looks and behaves alike: ``tqdm.auto`` (a widget in Jupyter/Colab,
text on stderr elsewhere), and a disabled bar costs nothing.
"""

from __future__ import annotations

from typing import Iterable


def bar(iterable: Iterable, label: str, unit: str = "image", enabled: bool = True, total: int | None = None,
        leave: bool = True) -> Iterable:
    """``iterable`` wrapped in a progress bar when ``enabled``, else ``iterable`` itself.

    Args:
        iterable: what is iterated over.
        label: the bar's description, e.g. "Predicting".
        unit: what one step is, e.g. "image", "pair".
        enabled: False returns ``iterable`` unchanged (tqdm is not imported).
        total: number of steps when ``iterable`` has no ``len`` (None = ``len(iterable)`` if it has one).
        leave: keep the finished bar on screen.
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=label, unit=unit, leave=leave)
