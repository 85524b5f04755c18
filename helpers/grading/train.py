"""Grading on the classification engine: its training loop, pipeline and export, given a grading task.

The loop (``helpers.classification.train.train_classifier``: phases, checkpoints every epoch,
best model, resume from ``checkpoints/state.json``, ``history.csv``, reduce-LR and early stopping)
is used as it is. What grading changes is the ``TrainingTask`` that ``grading_task`` builds:

=================================  ==============================================================
``TrainingTask`` field             grading value
=================================  ==============================================================
``build_model``                    ``grading_model.build_grading_model`` with the form's head
``compile_model``                  ``grading_model.compile_grading_model`` (the head's loss)
``validation_metrics``             ``validation_metrics`` below: quadratic kappa, accuracy, MAE...
``monitor``                        ``"validation_kappa"`` (best epoch, LR plateau, early stopping)
``history_columns``                ``HISTORY_COLUMNS`` below (with validation kappa)
``curve_panels``                   ``CURVE_PANELS`` below (live plot and report curves)
``loader``                         ``image_loader``: fundus crop and colour normalisation
``sampling_weights``               the per-grade sampling multipliers (``balanced_sampling``)
``check_initial_model``            ``check_continued_grader``: same head and number of outputs
=================================  ==============================================================

Prediction reads images with the same ``image_loader`` through ``predict.predict_paths``.

``continue_from`` (an earlier run's exported grader) trains that model further in one
``fine_tune`` phase, as in classification; ``continued_model_path`` checks the folder and its
``grading.json`` against the form before any run folder is created.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
from typing import Any, Sequence

import numpy as np

from helpers import errors, runs, tables
from helpers.classification import model as classification_model
from helpers.classification import predict
from helpers.classification import train as classification_train
from helpers.grading import model as grading_model
from helpers.grading import ordinal, preprocessing
from helpers.grading.config import GradingConfig

MONITOR = "validation_kappa"
# Numbers only, like the classification columns (each epoch's phase is kept in checkpoints/state.json).
HISTORY_COLUMNS = ("epoch", "train_loss", "validation_loss", "validation_kappa", "validation_accuracy",
                   "validation_mean_absolute_error", "validation_balanced_accuracy", "learning_rate",
                   "epoch_seconds", "seconds_per_step")
CURVE_PANELS = (("Loss", ("train_loss", "validation_loss")),
                ("Quadratic weighted kappa", ("validation_kappa",)),
                ("Accuracy and error", ("validation_accuracy", "validation_balanced_accuracy",
                                        "validation_mean_absolute_error")))
GRADING_FILE = "grading.json"
# What the exported model fixes: a run continuing from it must have the same values (grading.json keys).
CONTINUED_SETTINGS = ("head", "num_grades", "image_size", "crop_to_disc", "colour_normalisation")


def validation_figures(head: str, outputs: np.ndarray, truth: Sequence[int], num_grades: int) -> dict[str, Any]:
    """Validation figures of raw head outputs: kappa, accuracy, MAE, balanced accuracy, loss, thresholds.

    For the regression head the decision thresholds are first optimised for quadratic kappa on
    these images (so its validation kappa is optimistic, as for every choice made on them).

    Args:
        outputs: float [N, K] (softmax), [N, K-1] (cumulative) or [N, 1] (regression).
        truth: int [N] true grades.
    """
    from sklearn import metrics

    truth = np.asarray(truth, dtype=int)
    thresholds = ordinal.optimise_thresholds(outputs, truth, num_grades) if head == "regression" else None
    grades, scores = ordinal.decode(head, outputs, num_grades, thresholds)
    kappa = ordinal.quadratic_kappa(truth, grades, num_grades)
    if head == "regression":
        loss = float(np.mean((np.asarray(outputs, dtype=np.float64).reshape(-1) - truth) ** 2))
    else:
        loss = float(-np.log(np.clip(scores[np.arange(len(truth)), truth], 1e-7, 1.0)).mean())
    return {"validation_loss": loss,
            # Kappa is undefined when truth and prediction are both constant: no agreement beyond chance, 0.
            "validation_kappa": kappa if math.isfinite(kappa) else 0.0,
            "validation_accuracy": float(metrics.accuracy_score(truth, grades)),
            "validation_mean_absolute_error": float(metrics.mean_absolute_error(truth, grades)),
            "validation_balanced_accuracy": float(metrics.balanced_accuracy_score(truth, grades)),
            "thresholds": None if thresholds is None else [float(value) for value in thresholds]}


def validation_metrics(head: str, model, dataset, label_indices: np.ndarray, number_of_classes: int) -> dict:
    """``train.validation_metrics`` for grading: the model's outputs on ``dataset`` through ``validation_figures``."""
    outputs = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)
    figures = validation_figures(head, outputs, label_indices, number_of_classes)
    figures.pop("thresholds")
    return figures


def image_loader(config: GradingConfig):
    """``(path, image_size) -> uint8 [S, S, 3]`` applying the config's fundus preprocessing (a ``TrainingTask.loader``)."""
    return functools.partial(preprocessing.load_preprocessed, crop=config.crop_to_disc,
                             normalise=config.colour_normalisation)


def _compile_for(head: str):
    """``TrainingTask.compile_model`` for ``head``: ``(model, optimizer, label_smoothing) -> None``."""
    def compile_model(model, optimizer, label_smoothing):
        grading_model.compile_grading_model(model, optimizer, head, label_smoothing)
    return compile_model


def check_continued_grader(config: GradingConfig, model, classes: Sequence[str]) -> None:
    """ModelError unless ``model`` has ``config``'s head and output width (a ``TrainingTask.check_initial_model``)."""
    width = {"regression": 1, "cumulative": config.num_grades - 1}.get(config.head, config.num_grades)
    if grading_model.head_of(model) != config.head or model.output.shape[-1] != width:
        raise errors.ModelError(f"continue_from: that model has a {grading_model.head_of(model)} head with "
                                f"{model.output.shape[-1]} outputs; this run needs a {config.head} head with {width} "
                                f"({len(classes)} grades). Set head and num_grades as in that run.")


def continued_model_path(config: GradingConfig) -> pathlib.Path | None:
    """The exported grader that ``config.continue_from`` names (None when empty), checked against the form.

    Raises:
        ConfigError: naming continue_from, when the folder is not a run folder, holds no exported
            grader, or its ``grading.json`` differs from the form in a ``CONTINUED_SETTINGS`` value.
    """
    if not config.continue_from.strip():
        return None
    root = pathlib.Path(config.continue_from).expanduser()
    settings_path = runs.RunFolder(root=root).exported_model / GRADING_FILE
    model_path = settings_path.with_name(classification_model.MODEL_FILE_NAME)
    if not (root / "config.yaml").is_file():
        raise errors.ConfigError(f"continue_from: {root} is not a DL4Cells run folder (no config.yaml). Give the "
                                 f"folder <model_path>/<model_name> of a trained grader, or leave continue_from empty.")
    if not (settings_path.is_file() and model_path.is_file()):
        raise errors.ConfigError(f"continue_from: {root} holds no exported grader ({settings_path.name} or "
                                 f"{model_path.name} missing in exported_model/). Finish training that run "
                                 f"(section 4) first, or leave continue_from empty.")
    saved = json.loads(settings_path.read_text(encoding="utf-8"))
    different = [f"{name} {saved.get(name)!r} (here {getattr(config, name)!r})" for name in CONTINUED_SETTINGS
                 if saved.get(name) != getattr(config, name)]
    if different:
        raise errors.ConfigError(f"continue_from: that grader was trained with {', '.join(different)}. Set these "
                                 f"fields as in that run, or leave continue_from empty.")
    return model_path


def grading_task(config: GradingConfig) -> classification_train.TrainingTask:
    """The ``TrainingTask`` that makes the classification loop train ``config``'s grader (module docstring)."""
    return classification_train.TrainingTask(
        build_model=functools.partial(grading_model.build_grading_model, config.head),
        compile_model=_compile_for(config.head),
        validation_metrics=functools.partial(validation_metrics, config.head),
        monitor=MONITOR, history_columns=HISTORY_COLUMNS, curve_panels=CURVE_PANELS,
        loader=image_loader(config), sampling_weights=tuple(config.multipliers),
        check_initial_model=functools.partial(check_continued_grader, config))


class GradingProgress(classification_train.ProgressCallback):
    """The classification progress bar, plus a line with the epoch's validation kappa and grade error."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs and "validation_kappa" in logs:
            print(f"  validation quadratic kappa {logs['validation_kappa']:.3f}, mean absolute error "
                  f"{logs['validation_mean_absolute_error']:.2f} grades", file=self.stream)


@dataclasses.dataclass
class GradingTraining:
    """The classification ``TrainingResult`` plus what grading decides after training.

    Attributes:
        result: ``helpers.classification.train.TrainingResult`` (model = best epoch).
        thresholds: regression decision thresholds float [K-1] chosen on the validation images (None otherwise).
        validation: ``validation_figures`` of the kept model on the validation images ({} without them).
    """

    result: Any
    thresholds: list[float] | None
    validation: dict

    def __repr__(self) -> str:  # short: it is what the notebook's training cell shows last
        kappa = self.validation.get("validation_kappa")
        return (f"GradingTraining(epochs_completed={self.result.epochs_completed}, best_epoch={self.result.best_epoch}, "
                f"validation_kappa={tables.format_value(kappa)}, thresholds={self.thresholds})")


def predict_outputs(model, paths: Sequence[pathlib.Path], config: GradingConfig, batch_size: int = 32,
                    progress: bool = True) -> tuple[np.ndarray, list[pathlib.Path], list[str]]:
    """(raw head outputs float [N, ...], readable files, messages for unreadable ones), preprocessed per ``config``."""
    return predict.predict_paths(model, paths, config.image_size, batch_size, progress=progress,
                                 loader=image_loader(config))


def train_grader(config: GradingConfig, run: runs.RunFolder, train_items: Sequence, validation_items: Sequence,
                 callbacks: Sequence = (), weights_path: str | pathlib.Path | None = None,
                 initial_model_path: str | pathlib.Path | None = None) -> GradingTraining:
    """Train (or resume) a grader with the classification loop, then fix the regression thresholds.

    Args:
        config: validated ``GradingConfig`` (also in ``run.config_path``).
        run: the run folder.
        train_items, validation_items: ``ClassificationItem`` whose ``label`` is the grade as text.
        callbacks: extra Keras callbacks (progress bar, live plot).
        weights_path: ImageNet notop weights (``pretrained = imagenet``).
        initial_model_path: an earlier exported grader to continue from (``continued_model_path``).
    """
    result = classification_train.train_classifier(config, run, train_items, validation_items, config.grade_names,
                                                   callbacks=callbacks, weights_path=weights_path,
                                                   initial_model_path=initial_model_path, task=grading_task(config))
    validation, thresholds = {}, None
    if validation_items:
        outputs, kept, _ = predict_outputs(result.model, [item.path for item in validation_items], config,
                                           config.batch_size, progress=False)
        by_path = {item.path: int(item.label) for item in validation_items}
        validation = validation_figures(config.head, outputs, [by_path[path] for path in kept], config.num_grades)
        thresholds = validation["thresholds"]
    elif config.head == "regression":
        thresholds = ordinal.default_thresholds(config.num_grades).tolist()
    return GradingTraining(result, thresholds, validation)


def write_grading_file(folder: pathlib.Path, config: GradingConfig, thresholds: list[float] | None) -> pathlib.Path:
    """``grading.json``: head, K, thresholds, referable threshold and preprocessing (what decoding needs)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GRADING_FILE
    path.write_text(json.dumps({"head": config.head, "num_grades": config.num_grades, "thresholds": thresholds,
                                "referable_threshold": config.referable_threshold,
                                "crop_to_disc": config.crop_to_disc,
                                "colour_normalisation": config.colour_normalisation,
                                "image_size": config.image_size}, indent=1), encoding="utf-8")
    return path


def export(training: GradingTraining, config: GradingConfig, run: runs.RunFolder) -> pathlib.Path:
    """Export the kept model with the classification exporter, plus ``grading.json``; the ``.keras`` path."""
    path = predict.export_model(training.result.model, config.grade_names, run)
    write_grading_file(run.exported_model, config, training.thresholds)
    return path
