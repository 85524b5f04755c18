"""Showing pictures and widgets in a notebook: the one place that talks to IPython's display.

Every function does nothing harmful outside IPython/Jupyter (plain ``python``, tests, the
``helpers.qc`` command): pictures are then skipped or their paths printed, as each caller asks.
Importing this module does not import IPython.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterable


def _ipython_display():
    """IPython's ``display`` module when running inside an IPython kernel or shell, else None."""
    try:
        from IPython import display as ipython_display
        from IPython import get_ipython
    except ImportError:
        return None
    return ipython_display if get_ipython() is not None else None


def show_image(path: str | pathlib.Path) -> None:
    """Show a PNG inline when running under IPython; print its path otherwise."""
    ipython_display = _ipython_display()
    if ipython_display is None:
        print(f"Figure: {path}")
        return
    ipython_display.display(ipython_display.Image(filename=str(path)))


def show_images(paths: Iterable[str | pathlib.Path]) -> None:
    """Show PNGs inline when running under IPython; do nothing elsewhere."""
    ipython_display = _ipython_display()
    if ipython_display is None:
        return
    for path in paths:
        ipython_display.display(ipython_display.Image(filename=str(path)))


def show_result(text: str, report_path: str | pathlib.Path | None, paths: Iterable[str | pathlib.Path]) -> None:
    """What a section-5 result shows: its metrics text, where its PDF is, then its PNGs (inline under IPython)."""
    print(text)
    print(f"QC report: {report_path}")
    show_images(paths)


def show_widget(widget: Any) -> Any:
    """Display an ipywidgets widget (or any displayable object) under IPython; returns it."""
    ipython_display = _ipython_display()
    if ipython_display is not None:
        ipython_display.display(widget)
    return widget


class UpdatingImage:
    """One output that shows a PNG and is replaced in place on each ``show`` (not one output per call).

    Used for figures redrawn while a cell runs (the training curves after every epoch).
    Outside IPython ``show`` does nothing.
    """

    def __init__(self):
        self.handle = None

    def show(self, path: str | pathlib.Path) -> None:
        """Display ``path`` the first time, then update that same output with it."""
        ipython_display = _ipython_display()
        if ipython_display is None:
            return
        image = ipython_display.Image(filename=str(path))
        if self.handle is None:
            self.handle = ipython_display.display(image, display_id=True)
        else:
            self.handle.update(image)
