"""An ipywidgets browser over QC images: the image, its Grad-CAM, true and predicted class and scores."""

from __future__ import annotations

import html
import pathlib
from typing import Any, Callable

import numpy as np

from helpers import display


def describe(result: Any, key: str) -> str:
    """One line per image: true class, predicted class, and the three highest scores."""
    item = result.items[key]
    scores = result.probabilities[key]
    predicted, score = result.predicted(key)
    verdict = "correct" if predicted == item.label else "WRONG"
    top = ", ".join(f"{result.classes[index]} {scores[index]:.2f}" for index in np.argsort(scores)[::-1][:3])
    return f"{key}: true {item.label}, predicted {predicted} ({score:.2f}) – {verdict}. Scores: {top}"


def gradcam_png(result: Any, key: str, path: pathlib.Path) -> pathlib.Path:
    """The browser's figure of one image: the image | Grad-CAM of the predicted class (``gradcam.gradcam_figure``)."""
    from helpers.classification import gradcam

    return gradcam.gradcam_figure(result.model, result.items[key].path, result.classes, path,
                                  true_label=result.items[key].label)


def browse(result: Any, describe_image: Callable = describe, draw: Callable = gradcam_png):
    """A slider (and a 'mistakes only' box) over the QC images; shows and returns the widget (None without ipywidgets).

    The line above the figure is an ``ipywidgets.HTML`` and the figure an ``ipywidgets.Image`` whose
    bytes are replaced on each move, as in detection's browser. No ``Output`` widget: the classic
    Notebook's widget extension (widgetsnbextension 3.6) cannot create its model, so the whole
    browser failed to show there, and papermill/nbclient answers every output captured by one
    with a message on the kernel's shell channel, which hung notebook runs (tests/test_browser.py).
    Nothing here waits on the front end: a move only sets widget values.

    Args:
        result: a QC result with ``items`` {key: item}, ``mistakes`` (dicts with ``key``) and ``run``.
        describe_image: ``(result, key) -> str``, the line above the figure.
        draw: ``(result, key, png path) -> png path``, the figure shown (default: image | Grad-CAM).
    """
    try:
        import ipywidgets
    except ImportError:
        print("ipywidgets is not installed: open the PNG files in the run's qc/ folder instead.")
        return None
    keys = sorted(result.items)
    slider = ipywidgets.IntSlider(min=0, max=max(0, len(keys) - 1), description="image")
    only_mistakes = ipywidgets.Checkbox(description="mistakes only")
    caption = ipywidgets.HTML()
    picture = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%"))

    def shown_keys() -> list[str]:
        return [mistake["key"] for mistake in result.mistakes] if only_mistakes.value else keys

    def redraw() -> None:
        """Show the image under the slider; raises what ``draw`` raises (the first call runs in the cell)."""
        current = shown_keys()
        slider.max = max(0, len(current) - 1)
        if not current:
            caption.value, picture.value = "No images to show.", b""
            return
        key = current[min(slider.value, len(current) - 1)]
        caption.value = html.escape(describe_image(result, key))
        picture.value = pathlib.Path(draw(result, key, result.run.qc / "browser_current.png")).read_bytes()

    def redraw_on_change(change: Any) -> None:
        # A callback's exception would only reach the server's log: say it where the user looks.
        try:
            redraw()
        except Exception as error:  # noqa: BLE001 - shown to the user instead of lost
            caption.value = html.escape(f"Could not draw this image: {error}")
            picture.value = b""

    redraw()
    slider.observe(redraw_on_change, names="value")
    only_mistakes.observe(redraw_on_change, names="value")
    widget = ipywidgets.VBox([ipywidgets.HBox([slider, only_mistakes]), caption, picture])
    return display.show_widget(widget)
