"""Figures of the classification task; each function saves one PNG and returns its path.

Figures come from ``helpers.figures`` (``matplotlib.figure.Figure``, not pyplot): no global backend is
changed, nothing pops up in a notebook and nothing is left open after saving.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import numpy as np

from helpers import figures, images


def class_counts(counts: Mapping[str, int], path: pathlib.Path) -> pathlib.Path:
    """Horizontal bars: images per class, each bar labelled with its count."""
    names = list(counts)
    figure = figures.new_figure(7, 1.2 + 0.45 * max(1, len(names)))
    axes = figure.add_subplot()
    axes.barh(range(len(names)), [counts[name] for name in names], color="tab:blue")
    for position, name in enumerate(names):
        axes.text(counts[name], position, f" {counts[name]}", va="center", fontsize=9)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel("images")
    axes.set_title("Images per class")
    return figures.save_figure(figure, path)


def _thumbnail(path: pathlib.Path, size: int = 128) -> np.ndarray:
    """uint8 [size, size, 3]: the image resized to a square for display."""
    import cv2

    return cv2.resize(images.read_image(path), (size, size), interpolation=cv2.INTER_AREA)


def image_grid(rows: Mapping[str, Sequence[pathlib.Path]], path: pathlib.Path, title: str = "",
               captions: Mapping[pathlib.Path, str] | None = None) -> pathlib.Path:
    """A grid of images, one row per name (the row label), thumbnails of the given files.

    Args:
        rows: {row label: image files}; rows may have different lengths.
        path: the PNG to write.
        title: the figure title.
        captions: optional {file: text under the thumbnail}.
    """
    columns = max([len(files) for files in rows.values()] + [1])
    figure = figures.new_figure(1.6 * columns + 1.2, 1.7 * max(1, len(rows)) + 0.4)
    grid = figure.subplots(max(1, len(rows)), columns, squeeze=False)
    for row_index, (name, files) in enumerate(rows.items()):
        for column_index in range(columns):
            axes = grid[row_index][column_index]
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_visible(False)
            if column_index < len(files):
                axes.imshow(_thumbnail(files[column_index]))
                if captions and files[column_index] in captions:
                    axes.set_xlabel(captions[files[column_index]], fontsize=7)
        grid[row_index][0].set_ylabel(name, fontsize=9)
    if title:
        figure.suptitle(title)
    return figures.save_figure(figure, path)


def augmentation_preview(originals: Sequence[np.ndarray], augmented: Sequence[Sequence[np.ndarray]],
                         path: pathlib.Path, labels: Sequence[str] = ()) -> pathlib.Path:
    """Each original (first column) next to several augmented versions of it.

    Args:
        originals: uint8 [S, S, 3] images as the model sees them before augmentation.
        augmented: per original, uint8 [S, S, 3] augmented versions.
        path: the PNG to write.
        labels: per original, the class label (row label).
    """
    columns = 1 + max(len(versions) for versions in augmented)
    figure = figures.new_figure(1.5 * columns + 1.0, 1.6 * len(originals) + 0.4)
    grid = figure.subplots(len(originals), columns, squeeze=False)
    for row, (original, versions) in enumerate(zip(originals, augmented)):
        for column, picture in enumerate([original, *versions]):
            axes = grid[row][column]
            axes.imshow(picture)
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title("original" if column == 0 else f"augmented {column}", fontsize=8)
        if labels:
            grid[row][0].set_ylabel(labels[row], fontsize=8)
    return figures.save_figure(figure, path)


def mistakes_gallery(mistakes: Sequence[dict], path: pathlib.Path, columns: int = 4) -> pathlib.Path:
    """The most confident mistakes: each image captioned 'true → predicted (score)'.

    Args:
        mistakes: dicts with ``path``, ``label``, ``predicted`` and ``score`` (0..1), most confident first.
        path: the PNG to write.
    """
    count = max(1, len(mistakes))
    rows = (count + columns - 1) // columns
    figure = figures.new_figure(2.2 * columns, 2.4 * rows + 0.4)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index in range(rows * columns):
        axes = grid[index // columns][index % columns]
        axes.set_axis_off()
        if index < len(mistakes):
            mistake = mistakes[index]
            axes.imshow(_thumbnail(pathlib.Path(mistake["path"])))
            axes.set_title(f"{mistake['label']} → {mistake['predicted']}\n({mistake['score']:.2f})", fontsize=8)
    figure.suptitle("Most confident mistakes: true → predicted (score)" if mistakes else "No mistakes")
    return figures.save_figure(figure, path)


def side_by_side(pictures: Sequence[np.ndarray], titles: Sequence[str], path: pathlib.Path) -> pathlib.Path:
    """Several uint8 [H, W, 3] pictures in one row, each with a title (e.g. image | Grad-CAM)."""
    figure = figures.new_figure(3.0 * len(pictures), 3.3)
    grid = figure.subplots(1, len(pictures), squeeze=False)
    for axes, picture, title in zip(grid[0], pictures, titles):
        axes.imshow(picture)
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    return figures.save_figure(figure, path)
