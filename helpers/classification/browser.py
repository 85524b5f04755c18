"""An ipywidgets browser over QC images: the image, its Grad-CAM, true and predicted class and scores."""

from __future__ import annotations

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
    """A slider (and a 'mistakes only' box) over the QC images; returns the widget (or None without ipywidgets).

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
    output = ipywidgets.Output()
    slider = ipywidgets.IntSlider(min=0, max=max(0, len(keys) - 1), description="image")
    only_mistakes = ipywidgets.Checkbox(description="mistakes only")

    def shown_keys():
        return [mistake["key"] for mistake in result.mistakes] if only_mistakes.value else keys

    def redraw(*_):
        current = shown_keys()
        slider.max = max(0, len(current) - 1)
        output.clear_output(wait=True)
        with output:
            if not current:
                print("No images to show.")
                return
            key = current[min(slider.value, len(current) - 1)]
            print(describe_image(result, key))
            path = draw(result, key, result.run.qc / "browser_current.png")
            display.show_image(path)

    slider.observe(redraw, names="value")
    only_mistakes.observe(redraw, names="value")
    redraw()
    widget = ipywidgets.VBox([ipywidgets.HBox([slider, only_mistakes]), output])
    return display.show_widget(widget)
