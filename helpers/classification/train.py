"""Train a classifier in two phases with per-epoch checkpoints and automatic resume.

Phases (global epoch numbers 1..``config.epochs``):

* from ImageNet weights: ``head`` (epochs 1..``head_epochs``: only the new head learns, the
  backbone is frozen) then ``fine_tune`` (the top ``fine_tune_layers`` backbone layers learn too,
  at ``fine_tune_learning_rate``, batch normalisation kept frozen);
* from scratch (``pretrained = "none"``): one phase ``all`` in which every layer learns;
* continuing an earlier model (``continue_from``): one ``fine_tune`` phase.

Each phase is one ``keras.Model.fit`` call with these callbacks, in this order:
``_Validation`` (validation loss, accuracy, balanced accuracy and macro F1 through scikit-learn,
put into the epoch's logs), ``_Plateau`` (ReduceLROnPlateau) and ``_EarlyStopping`` on the
validation balanced accuracy, then ``_Recorder``, which saves the epoch's model (optimizer
included) to ``checkpoints/epoch_NNNN.keras``, copies it to ``checkpoints/best.keras`` when the
validation balanced accuracy improved, writes ``checkpoints/state.json`` (epochs done, phase,
best epoch, the plateau/early-stopping counters and every history row) and only then appends the
row to ``history.csv``. Rerunning with the same run folder restores that state: the same number
of completed epochs, the same ``history.csv`` (repaired from ``state.json`` if the process died
between the two writes), the optimizer's moments and learning rate.

What is trained and how an epoch is judged comes from a ``TrainingTask`` (model builder and
compiler, validation figures, the monitored figure, history columns, curve panels, image loader
and per-class sampling weights); its defaults train a classifier. ``helpers.grading.train``
passes an ordinal grading task to the same loop.

``history.csv`` columns (classification task): the training figures are Keras's running means
over the epoch's augmented (and mixed) batches, weighted like the loss: with ``class_balance = class_weights``
``train_accuracy`` is therefore the training *balanced* accuracy. The validation figures are
measured after the epoch on the un-augmented validation images (scikit-learn);
``validation_loss`` is the plain cross-entropy (no label smoothing, no class weights).

On several machines (``MultiWorkerMirroredStrategy``, ``helpers.strategy``) every worker runs this
same loop in lockstep; only the chief's ``run`` is the user's folder (``helpers.training_cluster``),
and ``_multi_worker_fit`` works around Keras 3's ``fit`` under that strategy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Sequence

import keras
import numpy as np

from helpers import errors, history, live_plot, runs
from helpers import precision as precision_module
from helpers.classification import augmentation, pipeline
from helpers.classification import model as model_module
from helpers.classification.config import ClassificationConfig

# Numbers only (helpers.history reads every cell as a number); each row's phase is kept in state.json.
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "train_macro_f1", "validation_loss",
                   "validation_accuracy", "validation_balanced_accuracy", "validation_macro_f1", "learning_rate",
                   "epoch_seconds", "seconds_per_step")
CURVE_PANELS = (("Loss", ("train_loss", "validation_loss")),
                ("Accuracy", ("train_accuracy", "validation_accuracy", "validation_balanced_accuracy")),
                ("Macro F1", ("train_macro_f1", "validation_macro_f1")))
MONITOR = "validation_balanced_accuracy"
PLATEAU_FACTOR = 0.2
MINIMUM_LEARNING_RATE = 1e-7
CHECKPOINTS_KEPT = 2
STATE_FILE = "state.json"
# Batch-norm moving-average momentum when training from scratch (see model.build_classifier).
FROM_SCRATCH_BATCH_NORM_MOMENTUM = 0.9
BEST_FILE = "best.keras"


@dataclasses.dataclass
class TrainingResult:
    """The outcome of ``train_classifier``.

    Attributes:
        model: the classifier with the best epoch's weights.
        epochs_completed: epochs finished so far (all sessions together).
        best_epoch: the epoch kept (highest validation balanced accuracy; the last one without validation).
        best_metrics: that epoch's ``history.csv`` row.
        resumed_from_epoch: epochs already done when this session started (0 = fresh start).
        stopped_early: phases that early stopping ended.
        strategy: plain-text description of the hardware used.
        precision: the Keras dtype policy used ("float32", "mixed_float16", ...).
        seconds_per_step: median training seconds per step in this session (NaN if no step ran).
    """

    model: Any
    epochs_completed: int
    best_epoch: int
    best_metrics: dict
    resumed_from_epoch: int
    stopped_early: list
    strategy: str
    precision: str
    seconds_per_step: float


def phases(config: ClassificationConfig) -> list[tuple[str, int, int]]:
    """(phase name, first epoch, last epoch) of every phase with at least one epoch."""
    if config.trains_from_scratch:
        planned = [("all", 1, config.epochs)]
    elif config.continue_from:
        planned = [("fine_tune", 1, config.epochs)]
    else:
        planned = [("head", 1, config.head_epochs), ("fine_tune", config.head_epochs + 1, config.epochs)]
    return [(name, first, last) for name, first, last in planned if last >= first]


# ----- state ------------------------------------------------------------------------------


def _empty_state() -> dict:
    return {"epochs_completed": 0, "phase": None, "checkpoint": None, "best_epoch": 0, "best_score": -math.inf,
            "stopped_early": [], "plateau": None, "early_stopping": None, "rows": []}


def read_state(run: runs.RunFolder) -> dict:
    """``checkpoints/state.json`` (a fresh state when absent)."""
    path = run.checkpoints / STATE_FILE
    if not path.is_file():
        return _empty_state()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise errors.ModelError(f"{path}: unreadable ({error}). Choose a new model_name; the checkpoints in "
                                f"{run.checkpoints} are kept.") from None


def _write_json_atomically(path: pathlib.Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def _repair_history(run: runs.RunFolder, state: dict, columns: Sequence[str] = HISTORY_COLUMNS) -> None:
    """Make history.csv hold exactly the rows of epochs 1..epochs_completed (those in state.json)."""
    done = state["epochs_completed"]
    kept = history.truncate_history(run.history_path, done, columns)
    present = {row["epoch"] for row in kept}
    for row in state["rows"]:
        if row["epoch"] not in present and row["epoch"] <= done:
            history.append_history(run.history_path, row, columns)


# ----- callbacks --------------------------------------------------------------------------


class _Validation(keras.callbacks.Callback):
    """The task's validation figures (default: loss/accuracy/balanced accuracy/macro F1) added to the epoch's logs."""

    def __init__(self, dataset, label_indices: Sequence[int], number_of_classes: int, metrics: Callable | None = None):
        super().__init__()
        self.dataset, self.labels, self.number_of_classes = dataset, np.asarray(label_indices), number_of_classes
        self.metrics = metrics or validation_metrics
        self.started = 0.0
        self.learning_rate = math.nan

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started
        logs["learning_rate"] = self.learning_rate  # the rate used during the epoch, before any reduction
        if self.dataset is not None:
            logs.update(self.metrics(self.model, self.dataset, self.labels, self.number_of_classes))


def validation_metrics(model, dataset, label_indices: np.ndarray, number_of_classes: int) -> dict[str, float]:
    """Loss (plain cross-entropy), accuracy, balanced accuracy and macro F1 of ``model`` on ``dataset``."""
    from sklearn import metrics

    probabilities = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(label_indices)), label_indices]
    return {"validation_loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
            "validation_accuracy": float(metrics.accuracy_score(label_indices, predicted)),
            "validation_balanced_accuracy": float(metrics.balanced_accuracy_score(label_indices, predicted)),
            "validation_macro_f1": float(metrics.f1_score(label_indices, predicted, average="macro",
                                                          labels=list(range(number_of_classes)), zero_division=0))}


def check_continued_model(model, classes: Sequence[str]) -> None:
    """ModelError unless the model to continue from has one output per class (a ``TrainingTask.check_initial_model``)."""
    if model.output.shape[-1] != len(classes):
        raise errors.ModelError(f"continue_from: that model has {model.output.shape[-1]} classes, this data "
                                f"{len(classes)}. Continue only with the same classes, or start a new model.")


@dataclasses.dataclass(frozen=True)
class TrainingTask:
    """What ``train_classifier`` trains and how it judges an epoch; the defaults train a classifier.

    Attributes:
        build_model: ``(backbone_name, number_of_classes, image_size, **options) -> keras.Model``
            (options: weights_path, dropout, batch_norm_momentum).
        compile_model: ``(model, optimizer, label_smoothing) -> None``.
        validation_metrics: ``(model, dataset, label_indices int [N], number_of_classes) -> {name: float}``;
            the names must include ``monitor`` and the ``validation_*`` history columns.
        monitor: the figure (higher = better) that picks the kept epoch and drives the learning-rate
            plateau and early stopping.
        history_columns: the numeric columns of ``history.csv``.
        curve_panels: ``(title, (column, ...))`` per panel of the training-curves plot.
        loader: ``(path, image_size) -> uint8 [S, S, 3]``, how every image is read.
        sampling_weights: per class, the relative chance of being drawn by the balanced sampler
            (``class_balance = balanced_sampling``); None = every class equally.
        check_initial_model: ``(model, classes) -> None``, raises when a model to continue from
            (``continue_from``) does not fit this task.
    """

    build_model: Callable = model_module.build_classifier
    compile_model: Callable = model_module.compile_model
    validation_metrics: Callable = validation_metrics
    monitor: str = MONITOR
    history_columns: tuple = HISTORY_COLUMNS
    curve_panels: tuple = CURVE_PANELS
    loader: Callable = pipeline.load_resized
    sampling_weights: tuple | None = None
    check_initial_model: Callable = check_continued_model


CLASSIFICATION = TrainingTask()


class _Resumable:
    """Mixin for a Keras callback whose counters survive a restart (restored after ``on_train_begin``).

    ``COUNTERS`` maps each key of the saved state (in ``state.json``) to the callback's attribute.
    """

    COUNTERS: dict[str, str] = {}

    def __init__(self, saved: dict | None, **options):
        super().__init__(**options)
        self.saved = saved

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for key, attribute in self.COUNTERS.items() if self.saved else ():
            setattr(self, attribute, self.saved[key])

    def state(self) -> dict:
        return {key: getattr(self, attribute) for key, attribute in self.COUNTERS.items()}


class _Plateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive a restart."""

    COUNTERS = {"wait": "wait", "cooldown": "cooldown_counter", "best": "best"}


class _EarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters survive a restart."""

    COUNTERS = {"wait": "wait", "best": "best"}


class _Recorder(keras.callbacks.Callback):
    """Checkpoint, state.json, then the history row (in that order; see the module docstring)."""

    def __init__(self, run: runs.RunFolder, state: dict, phase: str, steps: int, plateau, early_stopping,
                 has_validation: bool, monitor: str = MONITOR, history_columns: Sequence[str] = HISTORY_COLUMNS):
        super().__init__()
        self.run, self.state, self.phase, self.steps = run, state, phase, steps
        self.plateau, self.early_stopping, self.has_validation = plateau, early_stopping, has_validation
        self.monitor, self.history_columns = monitor, tuple(history_columns)

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1  # Keras counts from 0; history.csv from 1
        row = {"epoch": number, "phase": self.phase, "train_loss": logs.get("loss"),
               "train_accuracy": logs.get("accuracy"), "train_macro_f1": logs.get("macro_f1"),
               "learning_rate": logs["learning_rate"], "epoch_seconds": logs["epoch_seconds"],
               "seconds_per_step": logs["epoch_seconds"] / self.steps}
        row.update({key: logs[key] for key in self.history_columns if key.startswith("validation_") and key in logs})
        if not math.isfinite(row["train_loss"]):
            raise errors.ModelError(f"epoch {number}: the training loss became {row['train_loss']}. Lower "
                                    f"learning_rate (e.g. divide it by 10) and start a new run (new model_name).")
        self._save(number, row)

    def _save(self, number: int, row: dict) -> None:
        checkpoint = self.run.checkpoints / f"epoch_{number:04d}.keras"
        temporary = checkpoint.with_name(f"epoch_{number:04d}.tmp.keras")
        self.model.save(temporary)
        os.replace(temporary, checkpoint)
        score = row[self.monitor] if self.has_validation else number  # no validation: the latest epoch is kept
        state = self.state
        if score > state["best_score"] or state["best_epoch"] == 0:
            shutil.copyfile(checkpoint, self.run.checkpoints / (BEST_FILE + ".tmp"))
            os.replace(self.run.checkpoints / (BEST_FILE + ".tmp"), self.run.checkpoints / BEST_FILE)
            state["best_score"], state["best_epoch"] = float(score), number
        if self.model.stop_training:
            state["stopped_early"] = sorted(set(state["stopped_early"]) | {self.phase})
        state.update({"epochs_completed": number, "phase": self.phase, "checkpoint": checkpoint.name,
                      "plateau": self.plateau.state(), "early_stopping": self.early_stopping.state(),
                      "rows": [old for old in state["rows"] if old["epoch"] < number] + [_plain(row)]})
        _write_json_atomically(self.run.checkpoints / STATE_FILE, state)
        history.append_history(self.run.history_path, row, self.history_columns)
        for old in sorted(self.run.checkpoints.glob("epoch_*.keras"))[:-CHECKPOINTS_KEPT]:
            old.unlink()  # our own older checkpoints inside the run folder; best.keras is a separate copy


def _plain(row: dict) -> dict:
    return {key: (float(value) if isinstance(value, (np.floating, np.integer)) else value) for key, value in row.items()}


# ----- the loop ---------------------------------------------------------------------------


def choose_precision(config: ClassificationConfig) -> str:
    """The Keras dtype policy of ``config.mixed_precision`` (the rule of every task, ``helpers.precision``).

    "auto" gives "mixed_bfloat16" on a TPU, "mixed_float16" on a GPU (``Model.compile`` then wraps the
    optimiser in ``keras.optimizers.LossScaleOptimizer``) and "float32" on a CPU.
    """
    return precision_module.keras_policy(config.mixed_precision)


def _datasets(config, train_items, validation_items, classes, task: TrainingTask = CLASSIFICATION):
    """(training dataset, steps per epoch, validation dataset or None, validation label indices)."""
    train_labels = [classes.index(item.label) for item in train_items]
    weights = pipeline.class_weights(train_labels, len(classes)) if config.class_balance == "class_weights" else None
    train = pipeline.training_dataset([item.path for item in train_items], train_labels, len(classes),
                                      config.image_size, config.batch_size, config.split_seed, weights,
                                      balanced_sampling=config.class_balance == "balanced_sampling",
                                      augmenter=augmentation.build_augmenter(config),
                                      mixer=augmentation.build_mixer(config), loader=task.loader,
                                      sampling_weights=task.sampling_weights)
    steps = pipeline.steps_per_epoch(len(train_items), config.batch_size, config.steps_per_epoch)
    validation_labels = [classes.index(item.label) for item in validation_items]
    validation = (pipeline.evaluation_dataset([item.path for item in validation_items], config.image_size,
                                              config.batch_size, loader=task.loader) if validation_items else None)
    return _shard_by_data(train), steps, _shard_by_data(validation) if validation is not None else None, validation_labels


def _shard_by_data(dataset):
    """``dataset`` split between the workers of a multi-worker run by elements (``AutoShardPolicy.DATA``).

    Our pipelines read images from a list of paths, not from files of records, so TensorFlow's default
    (try ``FILE``, then fall back to ``DATA`` with a warning) would end up here anyway; on one machine
    the option has no effect. Every worker runs the same seeded pipeline and keeps its part of each batch.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _compile(model, config: ClassificationConfig, phase: str, task: TrainingTask = CLASSIFICATION) -> None:
    model_module.set_trainable(model, phase, config.fine_tune_layers)
    rate = config.fine_tune_learning_rate if phase == "fine_tune" else config.learning_rate
    optimizer = model_module.make_optimizer(config.optimizer, rate, config.weight_decay)
    task.compile_model(model, optimizer, config.label_smoothing)


def _initial_model(config, classes, weights_path, initial_model_path, task: TrainingTask = CLASSIFICATION):
    """A new classifier: random, ImageNet backbone, or an earlier run's exported model."""
    if initial_model_path:
        model = model_module.load_classifier(initial_model_path)
        task.check_initial_model(model, classes)
        return model
    return task.build_model(config.backbone, len(classes), config.image_size,
                            weights_path=str(weights_path) if weights_path else None, dropout=config.dropout,
                            batch_norm_momentum=FROM_SCRATCH_BATCH_NORM_MOMENTUM if config.trains_from_scratch else None)


def train_classifier(config: ClassificationConfig, run: runs.RunFolder, train_items: Sequence, validation_items: Sequence,
                     classes: Sequence[str], callbacks: Sequence = (), weights_path: str | pathlib.Path | None = None,
                     initial_model_path: str | pathlib.Path | None = None, strategy=None,
                     task: TrainingTask | None = None) -> TrainingResult:
    """Train (or resume training of) a classifier and record everything in the run folder.

    Args:
        config: the validated config (``run.config_path`` holds the same).
        run: the run folder; ``checkpoints/state.json`` decides whether this resumes.
        train_items, validation_items: ``dataset.ClassificationItem`` objects (validation may be empty).
        classes: class names in model output order.
        callbacks: extra Keras callbacks (progress bar, live plot), called after the epoch is recorded.
        weights_path: ImageNet notop .h5 file for the backbone (fresh runs with ``pretrained = imagenet``).
        initial_model_path: an earlier exported ``.keras`` classifier to continue from (fresh runs).
        strategy: a ``tf.distribute`` strategy; chosen from the hardware when None.
        task: what is trained and how an epoch is judged (None = ``CLASSIFICATION``).

    Returns:
        The ``TrainingResult`` with the best epoch's weights loaded.
    """
    from helpers import strategy as strategy_module  # the same automatic choice as detection

    if not train_items:
        raise errors.DatasetError("train: no training images. Check Training_images and validation_fraction.")
    if config.pretrained == "imagenet" and not config.continue_from and weights_path is None:
        # Never fall back to random weights silently: the report would claim ImageNet initialisation.
        raise errors.ModelError("pretrained: 'imagenet' but no weights were prepared. Run cell 3.3 first, or set "
                                "pretrained = 'none' to train from scratch.")
    classes, task = list(classes), task or CLASSIFICATION
    strategy = strategy or strategy_module.choose_strategy()
    precision = choose_precision(config)
    keras.mixed_precision.set_dtype_policy(precision)
    state = read_state(run)
    resumed_from = state["epochs_completed"]
    _repair_history(run, state, task.history_columns)
    train, steps, validation, validation_labels = _datasets(config, train_items, validation_items, classes, task)
    model = None
    for phase, first, last in phases(config):
        if state["epochs_completed"] >= last or phase in state["stopped_early"]:
            continue
        with strategy.scope():
            model = _phase_model(model, config, run, state, phase, classes, weights_path, initial_model_path, task)
        with strategy.scope(), _multi_worker_fit(model, strategy):
            _fit_phase(model, config, run, state, phase, last, train, steps, validation, validation_labels, classes,
                       callbacks, task)
    step_times = [row["seconds_per_step"] for row in state["rows"] if row["epoch"] > resumed_from]
    best = model_module.load_classifier(run.checkpoints / BEST_FILE) if (run.checkpoints / BEST_FILE).is_file() else None
    if best is None:
        raise errors.ModelError(f"{run.checkpoints}: no checkpoint was saved. Set epochs to at least 1 and train again.")
    rows = {row["epoch"]: row for row in history.read_history(run.history_path)}
    return TrainingResult(model=best, epochs_completed=state["epochs_completed"], best_epoch=state["best_epoch"],
                          best_metrics=rows.get(state["best_epoch"], {}), resumed_from_epoch=resumed_from,
                          stopped_early=list(state["stopped_early"]),
                          strategy=strategy_module.describe_strategy(strategy), precision=precision,
                          seconds_per_step=float(np.median(step_times)) if step_times else math.nan)


def _phase_model(model, config, run, state, phase, classes, weights_path, initial_model_path,
                 task: TrainingTask = CLASSIFICATION):
    """The model to train in ``phase``: resumed mid-phase (optimizer kept), or set up for a new phase."""
    if state["checkpoint"] and model is None:
        model = model_module.load_classifier(run.checkpoints / state["checkpoint"], compile=True)
        if state["phase"] == phase:
            model_module.set_trainable(model, phase, config.fine_tune_layers)  # same flags as saved
            return model
    if model is None:
        model = _initial_model(config, classes, weights_path, initial_model_path, task)
    state["plateau"] = state["early_stopping"] = None  # a new phase starts with fresh counters
    state["phase"] = phase
    _compile(model, config, phase, task)
    return model


@contextlib.contextmanager
def _multi_worker_fit(model, strategy):
    """Let Keras 3 ``fit`` a model under ``MultiWorkerMirroredStrategy`` (run inside ``strategy.scope()``).

    Keras 3.13's ``fit`` first averages one input batch over the replicas to build the model
    symbolically (``_maybe_symbolic_build``), which fails across workers (``strategy.reduce`` of a
    tuple: "Attempt to convert a value (PerReplica...)", keras-team/keras#20585). A model without its
    own strategy skips that step and builds when its train step is traced, and Keras then takes the
    strategy of the enclosing scope, so the model's own reference is lifted for the ``fit`` call. Its
    step then averages each logged figure over the workers with ``axis=0``, which fails on scalars (same
    issue), so during ``fit`` Keras's ``reduce_per_replica`` averages scalars over all replicas instead.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    own = getattr(model, "_distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or own is None:
        yield
        return
    original = keras_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        def reduce(value):
            # One replica per worker gives plain tensors, several give PerReplica values: both are reduced.
            if reduction in ("auto", "mean") and strategy.experimental_local_results(value)[0].shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)  # a figure of the step: mean over every replica
            return original(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    model._distribute_strategy, keras_trainer.reduce_per_replica = None, reduce_per_replica
    try:
        yield
    finally:
        model._distribute_strategy, keras_trainer.reduce_per_replica = own, original


def _fit_phase(model, config, run, state, phase, last, train, steps, validation, validation_labels, classes,
               callbacks, task: TrainingTask = CLASSIFICATION) -> None:
    """One ``fit`` call from the next epoch to ``last`` with validation, plateau, early stopping and recording."""
    monitored = validation is not None
    plateau = _Plateau(state["plateau"], monitor=task.monitor, mode="max", factor=PLATEAU_FACTOR,
                       patience=config.reduce_lr_patience, min_lr=MINIMUM_LEARNING_RATE, verbose=0)
    stopping = _EarlyStopping(state["early_stopping"], monitor=task.monitor, mode="max",
                              patience=config.early_stopping_patience or 10**9, verbose=0)
    own = [_Validation(validation, validation_labels, len(classes), task.validation_metrics)]
    own += [plateau, stopping] if monitored else []
    own.append(_Recorder(run, state, phase, steps, plateau, stopping, monitored, task.monitor, task.history_columns))
    model.fit(train, epochs=last, initial_epoch=state["epochs_completed"], steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=own + list(callbacks))


# ----- callbacks for the notebook ---------------------------------------------------------------


class ProgressCallback(keras.callbacks.Callback):
    """A tqdm progress bar per epoch (loss, seconds per step, time left) and a line per finished epoch."""

    def __init__(self, total_epochs: int, stream=None):
        super().__init__()
        self.total_epochs, self.stream = total_epochs, stream or sys.stdout  # stderr renders red in Jupyter
        self.bar, self.epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.epoch = epoch + 1
        steps = self.params.get("steps") if self.params else None
        self.bar = tqdm(total=steps, desc=f"Epoch {self.epoch}/{self.total_epochs}", unit="step",
                        file=self.stream, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{(logs or {}).get('loss', math.nan):.3f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        logs = logs or {}
        validation = (f", validation accuracy {logs.get('validation_accuracy', math.nan):.3f}, balanced accuracy "
                      f"{logs.get('validation_balanced_accuracy', math.nan):.3f}" if "validation_accuracy" in logs
                      else "")
        print(f"Epoch {epoch + 1}: loss {logs.get('loss', math.nan):.4f}{validation} "
              f"({logs.get('epoch_seconds', math.nan):.0f} s)", file=self.stream)


class LivePlotCallback(keras.callbacks.Callback):
    """``helpers.live_plot.LivePlotCallback`` as a Keras callback: the curves redrawn after every epoch.

    Args:
        panels: ``(title, (column, ...))`` per panel (a ``TrainingTask.curve_panels``).
    """

    def __init__(self, run: runs.RunFolder, panels: Sequence = CURVE_PANELS):
        super().__init__()
        self.plot = live_plot.LivePlotCallback(run, panels)

    def on_epoch_end(self, epoch, logs=None):
        self.plot.on_epoch_end(epoch + 1, logs)
