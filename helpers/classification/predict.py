"""Use a trained classifier: export it, reload it, and classify a folder of images into a CSV.

The exported model is ``<run>/exported_model/classifier.keras`` (Keras 3, weights and
architecture; reload with ``load_run_model`` or ``keras.saving.load_model`` after
``import helpers.classification.model``) next to ``label_map.json`` (class names in output order).
It takes RGB pixels 0..255 at its input size, so it serves QC, prediction and further training
(``continue_from``) alike.

``predictions.csv`` has the columns ``filename,label,score_<class>...``: the file's path
relative to the folder given (POSIX separators), the predicted class and the probability of
every class (each row sums to 1).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
import shutil
from typing import Callable, ClassVar, Sequence

import numpy as np

from helpers import errors, images, runs
from helpers.classification import model as model_module
from helpers.classification import pipeline

SCORE_PREFIX = "score_"


def export_model(model, classes: Sequence[str], run: runs.RunFolder) -> pathlib.Path:
    """Write the model and its label map into ``run.exported_model``; returns the ``.keras`` path."""
    run.exported_model.mkdir(parents=True, exist_ok=True)
    path = run.exported_model / model_module.MODEL_FILE_NAME
    temporary = path.with_name("classifier.tmp.keras")
    model.save(temporary)
    temporary.replace(path)
    run.write_label_map(classes)
    shutil.copyfile(run.label_map_path, run.exported_model / "label_map.json")
    return path


def load_run_model(run: runs.RunFolder):
    """(model, class names, input size S) of a run's exported classifier; ModelError when there is none."""
    path = run.exported_model / model_module.MODEL_FILE_NAME
    if not path.is_file():
        raise errors.ModelError(f"{run.root}: holds no exported classifier yet. Finish training (section 4) first, "
                                f"or give the folder of a trained model.")
    label_map = run.exported_model / "label_map.json"
    classes = json.loads(label_map.read_text(encoding="utf-8"))["classes"] if label_map.is_file() else run.read_label_map()
    model = model_module.load_classifier(path)
    return model, classes, int(model.input.shape[1])


def list_images_recursively(folder: pathlib.Path) -> list[pathlib.Path]:
    """Image files in ``folder`` and its subfolders (hidden ones skipped), sorted by relative path."""
    return sorted((path for path in folder.rglob("*") if path.is_file() and images.is_image_file(path)
                   and not any(part.startswith(".") for part in path.relative_to(folder).parts)),
                  key=lambda path: path.relative_to(folder).as_posix())


def images_to_predict(images_dir: pathlib.Path) -> list[pathlib.Path]:
    """``list_images_recursively(images_dir)``; DatasetError naming the folder when it holds no image."""
    paths = list_images_recursively(images_dir)
    if not paths:
        raise errors.DatasetError(f"{images_dir}: no images (PNG, JPEG, BMP, TIFF) found. Check Prediction_images.")
    return paths


def predict_paths(model, paths: Sequence[pathlib.Path], image_size: int, batch_size: int = 32,
                  progress: bool = True, loader: Callable = pipeline.load_resized
                  ) -> tuple[np.ndarray, list[pathlib.Path], list[str]]:
    """The model's outputs for image files, read in batches (never all in memory) by ``loader(path, image_size)``.

    Returns:
        (outputs float32 [N, classes] for the readable files (class probabilities for a classifier),
        those files, messages for unreadable ones).
    """
    from tqdm.auto import tqdm

    outputs, kept, skipped = [], [], []
    paths = list(paths)
    with tqdm(total=len(paths), desc="Classifying", unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            batch, batch_paths = [], []
            for path in paths[start:start + batch_size]:
                try:
                    batch.append(loader(path, image_size))
                    batch_paths.append(path)
                except errors.DatasetError as error:
                    skipped.append(str(error))
            if batch:
                outputs.append(np.asarray(model.predict_on_batch(np.stack(batch).astype(np.float32))))
                kept.extend(batch_paths)
            bar.update(len(paths[start:start + batch_size]))
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, int(model.output.shape[-1])), np.float32)
    return probabilities, kept, skipped


def write_predictions_csv(path: pathlib.Path, filenames: Sequence[str], probabilities: np.ndarray,
                          classes: Sequence[str]) -> pathlib.Path:
    """Write ``filename,label,score_<class>...`` (UTF-8), one row per image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"] + [SCORE_PREFIX + name for name in classes])
        for filename, row in zip(filenames, probabilities):
            writer.writerow([filename, classes[int(np.argmax(row))]] + [f"{float(value):.6f}" for value in row])
    return path


@dataclasses.dataclass
class PredictionResult:
    """Predictions for a folder.

    Attributes:
        images_dir: the folder classified (never written to).
        output_dir: where ``predictions.csv`` was written.
        csv_path: ``predictions.csv``.
        rows: dicts with ``filename``, ``label``, ``score`` (of that label) and ``path``.
        skipped: messages for images that could not be read.

    A subclass names its predicted value with ``LABEL_KEY`` (the row key), ``VERB`` and ``label_text``.
    """

    images_dir: pathlib.Path
    output_dir: pathlib.Path
    csv_path: pathlib.Path
    rows: list[dict]
    skipped: list[str]

    LABEL_KEY: ClassVar[str] = "label"
    VERB: ClassVar[str] = "classified"

    @staticmethod
    def label_text(value) -> str:
        """How a predicted value is written in the summary and the captions."""
        return str(value)

    def show(self, count: int = 4) -> None:
        """Print the number of images per predicted value and show the first ``count`` images with it.

        The figure is saved as ``examples.png`` in the results folder. Nothing is returned: as the last line of
        a notebook cell, a returned path would be displayed as Python's ``PosixPath(...)`` under the figure.
        """
        from collections import Counter

        from helpers import display
        from helpers.classification import plots

        counts = Counter(row[self.LABEL_KEY] for row in self.rows)
        print(f"{len(self.rows)} images {self.VERB} into {self.csv_path}: "
              + ", ".join(f"{self.label_text(value)}: {number}" for value, number in sorted(counts.items())))
        for message in self.skipped:
            print(f"  not {self.VERB}: {message}")
        if not self.rows:
            return
        shown = self.rows[:count]
        captions = {row["path"]: f"{self.label_text(row[self.LABEL_KEY])} ({row['score']:.2f})" for row in shown}
        path = plots.image_grid({"predicted": [row["path"] for row in shown]}, self.output_dir / "examples.png",
                                captions=captions)
        display.show_images([path])


def predict_folder(run_root: str | pathlib.Path, images_dir: str | pathlib.Path, output_dir: str | pathlib.Path,
                   batch_size: int = 32) -> PredictionResult:
    """Classify every image under ``images_dir`` (subfolders included) with the run's exported model.

    Args:
        run_root: the run folder holding ``exported_model/``.
        images_dir: the images (never written to).
        output_dir: where ``predictions.csv`` goes (created).

    Returns:
        The ``PredictionResult``.
    """
    run = runs.existing_run(run_root)
    images_dir, output_dir = pathlib.Path(images_dir), pathlib.Path(output_dir)
    model, classes, image_size = load_run_model(run)
    paths = images_to_predict(images_dir)
    probabilities, kept, skipped = predict_paths(model, paths, image_size, batch_size)
    filenames = [path.relative_to(images_dir).as_posix() for path in kept]
    csv_path = write_predictions_csv(output_dir / "predictions.csv", filenames, probabilities, classes)
    rows = [{"filename": name, "label": classes[int(np.argmax(row))], "score": float(np.max(row)), "path": path}
            for name, row, path in zip(filenames, probabilities, kept)]
    return PredictionResult(images_dir, output_dir, csv_path, rows, skipped)
