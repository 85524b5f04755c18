"""Training curves redrawn after every epoch, for every task's training loop.

``LivePlotCallback`` rebuilds ``plots/training_curves.png`` from the run's ``history.csv``
(``helpers.history.plot_history``) and shows it in one notebook output that is updated in place.
It is a plain object with ``on_epoch_end(epoch, logs)``: the detection loop calls it directly,
the Keras loops of classification and grading wrap it in a ``keras.callbacks.Callback``.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from helpers import display, history, runs


class LivePlotCallback:
    """Redraw ``plots/training_curves.png`` from history.csv after every epoch and show it.

    Args:
        run: the run folder (its ``history_path`` is read, its ``plots/`` written).
        panels: ``(title, (column, ...))`` per panel, as ``helpers.history.plot_history`` takes them.
    """

    def __init__(self, run: runs.RunFolder, panels: Sequence):
        self.run, self.panels = run, tuple(panels)
        self.output = display.UpdatingImage()

    @property
    def path(self) -> pathlib.Path:
        return self.run.plots / "training_curves.png"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.run.plots.mkdir(parents=True, exist_ok=True)
        self.output.show(history.plot_history(self.run.history_path, self.path, self.panels))
