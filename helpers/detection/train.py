"""Train a Model Garden RetinaNet: a small custom loop over Model Garden's ``RetinaNetTask``.

The task supplies the input pipeline (``task.build_inputs``: decoding, flips, scale jitter,
anchor labelling), the model and the losses (``task.build_losses``); the optimiser and its
learning-rate schedule come from Model Garden's ``OptimizerFactory`` through
``task.create_optimizer``. This loop adds what a notebook user needs around them:

* one row per epoch in ``history.csv`` (``HISTORY_COLUMNS``), appended only after that
  epoch's checkpoint is saved;
* a checkpoint per epoch in ``checkpoints/`` (the last ``CHECKPOINTS_KEPT``) and the best one
  (highest validation mAP50-95; lowest training loss when there is no validation set) in
  ``checkpoints/best/``;
* automatic resume: rerunning with the same run folder restores the latest checkpoint and
  continues with the next epoch. The checkpoint also stores the history rows, so a process
  killed between saving the checkpoint and appending the row is repaired on resume;
* validation mAP through the same code path as prediction (``inference.to_detections``) and
  pycocotools (``helpers.qc.detection.evaluate_detection``), on a validation dataset built and
  decoded once per session (kept in memory when small), with the loss compiled, after the epochs
  ``validation_epochs`` chooses (every epoch on a GPU; on a CPU every few epochs and every epoch of
  the last tenth); its time is the ``validation_seconds`` column;
* a progress-bar callback (``ProgressCallback``); the live plot is ``helpers.live_plot.LivePlotCallback``.

On several machines (``MultiWorkerMirroredStrategy``, chosen by ``helpers.strategy`` from ``TF_CONFIG`` or
Slurm) every worker runs this same loop in lockstep: Model Garden's reader gives each worker its share of
the records, batch norm is synchronised over all replicas (``model.build_experiment``), every worker
validates, and the best-epoch decision is averaged over the workers (``_agreed``) so that all save the
same checkpoints; only the chief's run folder is the user's (``helpers.training_cluster``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from helpers import errors, history, runs
from helpers import strategy as strategy_module
from helpers.detection import backbones, inference, records, tiling
from helpers.detection import model as model_module
from helpers.detection.config import DetectionConfig

HISTORY_COLUMNS = ("epoch", "train_total_loss", "train_class_loss", "train_box_loss", "validation_loss",
                   "validation_map50", "validation_map50_95", "learning_rate", "epoch_seconds", "images_per_second",
                   "validation_seconds")
# On a CPU, validating after every epoch took a quarter of a 35-minute BCCD budget (87 images, with the
# checkpoints). One validation costs about a quarter of a training epoch there (validation images are
# about a third of the training images, and a forward pass costs about a third of a training step), so
# it runs every ceil(epochs / CPU_VALIDATIONS) epochs and after every epoch of the last tenth, where the
# best checkpoint is usually found: 5 of 14 epochs, 7 of 40; 2.3 % of the wall time in the 40-epoch BCCD
# run at 384 px (docs/benchmarks.md §9a, §9e).
CPU_VALIDATIONS = 4
LAST_EPOCHS_SHARE = 0.1
# The validation batches stay in memory (decoded, resized, with anchor targets) when they fit in this.
VALIDATION_CACHE_BYTES = 1 << 30
# Detections down to this score count for validation mAP (AP integrates over all scores).
VALIDATION_SCORE_THRESHOLD = 0.05
CHECKPOINTS_KEPT = 3
CURVE_PANELS = (("Loss", ("train_total_loss", "validation_loss")),
                ("Loss parts (training)", ("train_class_loss", "train_box_loss")),
                ("Validation mAP", ("validation_map50", "validation_map50_95")))


@dataclasses.dataclass
class TrainingResult:
    """The outcome of ``train_detector``.

    Attributes:
        run: the run folder.
        model: the trained model with the weights of the best epoch loaded.
        epochs_completed: epochs finished so far (all sessions together).
        best_epoch: the epoch whose weights are in ``best_checkpoint``.
        best_metrics: that epoch's ``history.csv`` row.
        latest_checkpoint: prefix of the last epoch's checkpoint.
        best_checkpoint: prefix of the best epoch's checkpoint.
        history_path: ``history.csv``.
        strategy: plain-text description of the hardware used.
        resumed_from_epoch: epochs already done when this session started (0 = fresh start).
    """

    run: runs.RunFolder
    model: tf_keras.Model
    epochs_completed: int
    best_epoch: int
    best_metrics: dict
    latest_checkpoint: str
    best_checkpoint: str
    history_path: pathlib.Path
    strategy: str
    resumed_from_epoch: int = 0
    pixel_scale: Any = None  # the tiling.PixelScale the model was trained at
    loop: Any = dataclasses.field(default=None, repr=False)  # the session's task/model/optimiser, for tests and benchmarks


@dataclasses.dataclass
class _Loop:
    """Objects shared by the steps of one training session."""

    config: DetectionConfig
    run: runs.RunFolder
    experiment: Any
    task: Any
    model: tf_keras.Model
    optimizer: Any
    metrics: list
    strategy: tf.distribute.Strategy
    checkpoint: tf.train.Checkpoint
    state: dict
    class_names: list[str]
    steps_per_epoch: int
    callbacks: Sequence
    validator: Any = None  # the session's _Validator, built at the first validation


def _call(callbacks: Iterable, name: str, *arguments: Any) -> None:
    """Call ``name`` on every callback that defines it."""
    for callback in callbacks:
        method = getattr(callback, name, None)
        if callable(method):
            method(*arguments)


def pixel_scale_for(config: DetectionConfig, items: Sequence, usable_objects: Callable) -> tiling.PixelScale:
    """The run's pixel scale: ``config.pixel_scale`` (a number wins; ``auto`` measures ``items``' boxes)."""
    box_sizes, image_sizes = tiling.measure(items, usable_objects)
    return tiling.choose_scale(box_sizes, image_sizes, config.image_size, tiling.parse_scale(config.pixel_scale))


def _write_record_sets(config, run, train_items, validation_items, class_names, usable_objects, pixel_scale):
    train_set = records.write_records(train_items, usable_objects, class_names, run.records, "train",
                                      remove_background=config.remove_background, pixel_scale=pixel_scale,
                                      seed=config.split_seed)
    validation_set = None
    if validation_items:
        validation_set = records.write_records(validation_items, usable_objects, class_names, run.records,
                                               "validation", remove_background=config.remove_background,
                                               pixel_scale=pixel_scale, all_windows=True)
    return train_set, validation_set


def ignore_cut_objects(features, labels):
    """Anchors matched to an ignore region (``records.IGNORE_LABEL``, an object mostly outside its
    window) count neither as object nor as background: class and box weights 0.

    Model Garden's anchor labeller gives such anchors the region's class id as target; its
    background anchors have target -1. Shapes: ``cls_targets`` {level: int [B, H, W, A]},
    ``cls_weights``/``box_weights`` float [B, anchors], anchors flattened level by level.
    """
    targets = labels["cls_targets"]
    batch = tf.shape(labels["cls_weights"])[0]
    flat = tf.concat([tf.reshape(targets[level], [batch, -1]) for level in targets], axis=1)
    kept = tf.cast(tf.not_equal(flat, records.IGNORE_LABEL), labels["cls_weights"].dtype)
    labels = dict(labels)
    labels["cls_weights"] = labels["cls_weights"] * kept
    labels["box_weights"] = labels["box_weights"] * tf.cast(kept, labels["box_weights"].dtype)
    labels["cls_targets"] = {level: tf.where(tf.equal(value, records.IGNORE_LABEL), tf.constant(-1, value.dtype), value)
                             for level, value in targets.items()}
    return features, labels


def build_inputs(loop: "_Loop", data, context=None):
    """Model Garden's input pipeline for ``data`` (ignore regions are applied in the loss, ``ignore_cut_objects``).

    Measured: the same function as a ``tf.data`` map after Model Garden's pipeline left every label
    unchanged on records without ignore regions, yet BCCD at 384 px trained far worse with it (class
    loss 0.22 against 0.48 after 3 epochs, validation mAP50 0.15 against 0.49; test mAP50 0.38 after 12
    epochs): the labels are therefore changed inside the training step, where nothing else moves.
    """
    return loop.task.build_inputs(data, context)


def _build_loop(config, run, class_names, train_set, validation_set, callbacks, strategy) -> _Loop:
    """Experiment, task, model, optimiser and checkpoint, created under the strategy's scope."""
    steps = model_module.steps_per_epoch(config, train_set.number_of_images)
    experiment = model_module.build_experiment(config, len(class_names), train_set.pattern,
                                               validation_set.pattern if validation_set else None, steps,
                                               replicas=strategy.num_replicas_in_sync)
    task = model_module.build_task(experiment)
    with strategy.scope():
        model = model_module.build_model_from_experiment(experiment)
        optimizer = task.create_optimizer(experiment.trainer.optimizer_config, experiment.runtime)
        metrics = [tf_keras.metrics.Mean(name, dtype=tf.float32) for name in ("total", "class", "box")]
    with tf.device("/cpu:0"):  # bookkeeping lives on the host, outside the distributed variables
        state = {"epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
                 "best_score": tf.Variable(-math.inf, dtype=tf.float64, trainable=False),
                 "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
                 "history": tf.Variable("[]", dtype=tf.string, trainable=False)}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    return _Loop(config, run, experiment, task, model, optimizer, metrics, strategy, checkpoint, state,
                 list(class_names), steps, tuple(callbacks))


def _initialise_weights(loop: _Loop, initial_weights, pretrained) -> str:
    """Weights of a fresh run: a previous run's model, COCO weights, or random. Returns how."""
    if initial_weights:
        return f"weights of {model_module.restore_weights(loop.model, initial_weights)}"
    if loop.config.pretrained == "coco":
        spec = backbones.get_backbone(loop.config.backbone)
        weights = pretrained if pretrained is not None else backbones.download_pretrained(spec)
        loaded = backbones.load_pretrained(loop.model, spec, weights)
        return f"COCO-trained {spec.name} weights ({' and '.join(loaded)}; sha256 {weights.sha256[:12]}…)"
    return "random weights (trained from scratch)"


def _restore_or_start(loop: _Loop, managers, initial_weights, pretrained) -> tuple[int, str]:
    """Resume from the latest checkpoint, else initialise; returns (epochs done, description)."""
    latest = managers["latest"].latest_checkpoint
    if latest is None:
        history.truncate_history(loop.run.history_path, 0, HISTORY_COLUMNS)
        return 0, _initialise_weights(loop, initial_weights, pretrained)
    loop.checkpoint.restore(latest).expect_partial()
    done = int(loop.state["epoch"].numpy())
    _repair_history(loop, done)
    return done, f"checkpoint {latest} (epoch {done})"


def _repair_history(loop: _Loop, done: int) -> None:
    """Make history.csv hold exactly epochs 1..done, from the rows stored in the checkpoint."""
    kept = history.truncate_history(loop.run.history_path, done, HISTORY_COLUMNS)
    present = {row["epoch"] for row in kept}
    for row in json.loads(loop.state["history"].numpy().decode("utf-8")):
        if row["epoch"] not in present and row["epoch"] <= done:
            history.append_history(loop.run.history_path, row, HISTORY_COLUMNS)


def _train_step_function(loop: _Loop) -> Callable:
    """A compiled function running one distributed training step from an iterator."""
    task, model, optimizer, strategy = loop.task, loop.model, loop.optimizer, loop.strategy
    class_weight, iou_weight = loop.config.classification_loss_weight, loop.config.box_iou_loss_weight
    loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

    def step(inputs):
        features, labels = ignore_cut_objects(*inputs)
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            outputs = tf.nest.map_structure(lambda tensor: tf.cast(tensor, tf.float32), outputs)
            total, class_loss, box_loss = model_module.weighted_total_loss(task, outputs, labels, model.losses,
                                                                           class_weight, iou_weight)
            scaled = total / strategy.num_replicas_in_sync  # gradients are summed over replicas
            if loss_scaled:
                scaled = optimizer.get_scaled_loss(scaled)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if loss_scaled:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(list(zip(gradients, variables)))
        for metric, value in zip(loop.metrics, (total, class_loss, box_loss)):
            metric.update_state(value)

    @tf.function
    def train_step(iterator):
        strategy.run(step, args=(next(iterator),))

    return train_step


def _learning_rate(optimizer) -> float:
    """The optimiser's current learning rate (its schedule evaluated at the current step)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = inner.learning_rate
    if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(inner.iterations)
    return float(tf.convert_to_tensor(rate).numpy())


def _train_epoch(loop: _Loop, epoch: int, iterator, train_step) -> dict:
    """Run one epoch of steps; returns the training columns of the history row."""
    for metric in loop.metrics:
        metric.reset_state()
    started = time.perf_counter()
    for step in range(1, loop.steps_per_epoch + 1):
        train_step(iterator)
        total = float(loop.metrics[0].result())
        if not math.isfinite(total):
            raise errors.ModelError(f"epoch {epoch}, step {step}: the training loss became {total}. Lower "
                                    f"learning_rate (e.g. divide it by 10) and start a new run (new model_name).")
        seconds = time.perf_counter() - started
        logs = {"epoch": epoch, "total_loss": total, "class_loss": float(loop.metrics[1].result()),
                "box_loss": float(loop.metrics[2].result()),
                "images_per_second": step * loop.config.batch_size / max(seconds, 1e-9)}
        _call(loop.callbacks, "on_step_end", step, loop.steps_per_epoch, logs)
    seconds = time.perf_counter() - started
    return {"epoch": epoch, "train_total_loss": float(loop.metrics[0].result()),
            "train_class_loss": float(loop.metrics[1].result()), "train_box_loss": float(loop.metrics[2].result()),
            "learning_rate": _learning_rate(loop.optimizer), "epoch_seconds": seconds,
            "images_per_second": loop.steps_per_epoch * loop.config.batch_size / max(seconds, 1e-9)}


def validation_epochs(epochs: int, interval: int, accelerator: str) -> set[int]:
    """The epochs (1..epochs) after which the model is validated.

    Args:
        epochs: the run's number of epochs.
        interval: ``config.validation_interval``; 0 = automatic.
        accelerator: ``"gpu"``, ``"tpu"`` or ``"cpu"`` (``strategy.accelerator_kind()``).

    Returns:
        Every ``interval``-th epoch (automatic: 1 on a GPU or TPU, ``ceil(epochs / CPU_VALIDATIONS)`` on
        a CPU) plus every epoch of the last tenth (at least the last one), so that the best
        checkpoint is chosen among the late epochs exactly as when validating every epoch.
    """
    if interval <= 0:
        interval = 1 if accelerator in ("gpu", "tpu") else max(1, math.ceil(epochs / CPU_VALIDATIONS))
    last = max(1, math.ceil(epochs * LAST_EPOCHS_SHARE))
    return {epoch for epoch in range(1, epochs + 1) if epoch % interval == 0 or epoch > epochs - last}


class _Validator:
    """The validation dataset (built once, cached in memory when small) and the compiled loss of one session."""

    def __init__(self, loop: _Loop, validation_set):
        data = loop.experiment.task.validation_data
        dataset = build_inputs(loop, data)
        size = loop.config.image_size
        # features float32 [S, S, 3] plus anchor targets of about half that size, per image
        estimated_bytes = validation_set.number_of_images * size * size * 3 * 4 * 1.5
        self.dataset = dataset.cache() if estimated_bytes <= VALIDATION_CACHE_BYTES else dataset
        task, model, config = loop.task, loop.model, loop.config

        @tf.function(reduce_retracing=True)
        def loss(outputs, labels):
            labels = ignore_cut_objects(None, labels)[1]
            return model_module.weighted_total_loss(task, outputs, labels, model.losses,
                                                    config.classification_loss_weight, config.box_iou_loss_weight)[0]

        self.loss = loss


def validate(loop: _Loop, validation_set, ground_truth: dict) -> dict:
    """Validation loss and mAP of the current weights (one pass over the validation records).

    Detections go through ``inference.run_model``/``inference.to_detections``, the code path of
    prediction, at score >= ``VALIDATION_SCORE_THRESHOLD``.

    Returns:
        ``validation_loss``, ``validation_map50``, ``validation_map50_95``, ``validation_seconds``.
    """
    from helpers.qc import detection as detection_qc

    started = time.perf_counter()
    if loop.validator is None:
        loop.validator = _Validator(loop, validation_set)
    loss_sum, image_count, predictions, windows = 0.0, 0, [], {}
    for features, labels in loop.validator.dataset:
        outputs = inference.run_model(loop.model, features, labels["image_info"])
        total = loop.validator.loss(outputs, labels)
        batch = int(features.shape[0])
        loss_sum, image_count = loss_sum + float(total) * batch, image_count + batch
        source_ids = labels["groundtruths"]["source_id"].numpy()
        filenames = [validation_set.filenames[int(source_id) - 1] for source_id in source_ids]
        found = inference.to_detections(outputs, labels["image_info"], loop.class_names, VALIDATION_SCORE_THRESHOLD,
                                        filenames)
        if not validation_set.windows:
            predictions.extend(detection for detections in found for detection in detections)
            continue
        for source_id, detections in zip(source_ids, found):
            placement = validation_set.windows[int(source_id) - 1]
            windows.setdefault(placement["filename"], []).append((placement, detections))
    for filename, image_windows in windows.items():
        predictions.extend(merge_window_detections(image_windows, loop.class_names, loop.config.nms_iou_threshold))
    evaluation = detection_qc.evaluate_detection(ground_truth, predictions, classes=loop.class_names,
                                                 score_threshold=VALIDATION_SCORE_THRESHOLD)
    return {"validation_loss": loss_sum / max(image_count, 1), "validation_map50": float(evaluation.map50),
            "validation_map50_95": float(evaluation.map50_95),
            "validation_seconds": time.perf_counter() - started}


def merge_window_detections(image_windows: Sequence[tuple[dict, list]], class_names: Sequence[str],
                            iou_threshold: float) -> list:
    """One image's detections from its windows, in its own pixels, merged across seams as in prediction.

    Args:
        image_windows: (``RecordSet.windows`` entry, its ``Detection`` list in window pixels) per window.
        class_names: names of ids 1..N.
        iou_threshold: the run's ``nms_iou_threshold``.
    """
    from helpers.detection import outputs as outputs_module

    boxes, scores, classes, owned, filename = [], [], [], [], ""
    for placement, detections in image_windows:
        filename = placement["filename"]
        area = tiling.Window(placement["x"], placement["y"], placement["width"], placement["height"])
        local = np.array([[d.xmin, d.ymin, d.xmax, d.ymax] for d in detections], dtype=np.float64).reshape(-1, 4)
        factor = np.array([placement["x_scale"], placement["y_scale"]] * 2)
        boxes.append(np.clip((local + [area.x, area.y, area.x, area.y]) / factor, 0,
                             [placement["image_width"], placement["image_height"]] * 2))
        scores.append(np.array([d.score for d in detections], dtype=np.float32))
        classes.append(np.array([class_names.index(d.class_name) + 1 for d in detections], dtype=np.int64))
        scaled_width = int(round(placement["image_width"] * placement["x_scale"]))
        scaled_height = int(round(placement["image_height"] * placement["y_scale"]))
        owned.append(tiling.owned_by_window(local, area, scaled_width, scaled_height, placement["window"],
                                            placement["overlap"]))
    boxes, scores, classes, owned = (np.concatenate(values) for values in (boxes, scores, classes, owned))
    kept = (tiling.merge_detections(boxes, scores, classes, owned, iou_threshold) if len(image_windows) > 1
            else np.argsort(-scores, kind="stable"))
    return [outputs_module.Detection(filename=filename, class_name=class_names[int(classes[index]) - 1],
                                     score=float(scores[index]), xmin=float(boxes[index, 0]), ymin=float(boxes[index, 1]),
                                     xmax=float(boxes[index, 2]), ymax=float(boxes[index, 3])) for index in kept]


def _ground_truth(items: Sequence, usable_objects: Callable) -> dict:
    """Validation ground truth keyed by image file name: the cleaned boxes the records hold."""
    return {pathlib.Path(item.image_path).name: dataclasses.replace(item.annotation, objects=list(usable_objects(item)))
            for item in items}


def _epoch_score(row: dict, has_validation: bool) -> float | None:
    """What the best checkpoint is chosen by: validation mAP50-95; minus the training loss without a
    validation set; None for an epoch that was not validated (it cannot become the best)."""
    if "validation_map50_95" in row:
        return row["validation_map50_95"]
    return None if has_validation else -row["train_total_loss"]


def _agreed(strategy: tf.distribute.Strategy, value: float) -> float:
    """``value`` averaged over every worker of a multi-worker run (itself on one machine).

    Each worker validates the same images with the same weights, so their scores agree; the mean makes
    sure of it, because a worker that alone decided to save a "best" checkpoint would leave the others
    waiting in that save's collective reads of the distributed variables.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):  # every worker calls the collective
        return value
    mean = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.MEAN, tf.constant(value, tf.float64)))
    return float(strategy.experimental_local_results(mean)[0])


def _save_epoch(loop: _Loop, managers, row: dict, has_validation: bool = False) -> None:
    """Checkpoint the epoch (best first, then latest), then append its history row."""
    epoch = row["epoch"]
    score = _epoch_score(row, has_validation)
    score = None if score is None else _agreed(loop.strategy, score)
    rows = json.loads(loop.state["history"].numpy().decode("utf-8"))
    loop.state["history"].assign(json.dumps([old for old in rows if old["epoch"] < epoch] + [row]))
    loop.state["epoch"].assign(epoch)
    better = score is not None and math.isfinite(score) and score > float(loop.state["best_score"].numpy())
    if better or managers["best"].latest_checkpoint is None:
        # The first epoch is kept as "best" until a scored epoch beats it (score -inf until then).
        loop.state["best_score"].assign(score if better else -math.inf)
        loop.state["best_epoch"].assign(epoch)
        managers["best"].save(checkpoint_number=epoch)
    managers["latest"].save(checkpoint_number=epoch)
    history.append_history(loop.run.history_path, row, HISTORY_COLUMNS)


def _managers(loop: _Loop) -> dict:
    folder = loop.run.checkpoints
    return {"latest": tf.train.CheckpointManager(loop.checkpoint, str(folder), max_to_keep=CHECKPOINTS_KEPT),
            "best": tf.train.CheckpointManager(loop.checkpoint, str(folder / "best"), max_to_keep=1)}


def _result(loop: _Loop, managers, done: int, resumed_from: int) -> TrainingResult:
    """Load the best weights into the model and describe the outcome."""
    best_checkpoint = managers["best"].latest_checkpoint or managers["latest"].latest_checkpoint
    if best_checkpoint:
        tf.train.Checkpoint(model=loop.model).read(best_checkpoint).expect_partial()
    best_epoch = int(loop.state["best_epoch"].numpy()) or done
    rows = {row["epoch"]: row for row in history.read_history(loop.run.history_path)}
    return TrainingResult(run=loop.run, model=loop.model, epochs_completed=done, best_epoch=best_epoch,
                          best_metrics=rows.get(best_epoch, {}), latest_checkpoint=managers["latest"].latest_checkpoint,
                          best_checkpoint=best_checkpoint, history_path=loop.run.history_path,
                          strategy=strategy_module.describe_strategy(loop.strategy), resumed_from_epoch=resumed_from,
                          loop=loop)


def train_detector(config: DetectionConfig, run: runs.RunFolder, train_items: Sequence, validation_items: Sequence,
                   class_names: Sequence[str], usable_objects: Callable, callbacks: Sequence = (),
                   initial_weights: str | pathlib.Path | None = None, pretrained: Any = None,
                   strategy: tf.distribute.Strategy | None = None, pixel_scale: tiling.PixelScale | None = None
                   ) -> TrainingResult:
    """Train (or resume training of) a RetinaNet and record everything in the run folder.

    Args:
        config: the validated detection config (``run.config_path`` holds the same).
        run: the run folder; its ``checkpoints/`` decide whether this resumes.
        train_items: ``helpers.detection.dataset.DatasetItem`` objects to train on (augmented copies included).
        validation_items: items held out for validation (may be empty: no mAP then).
        class_names: the model's classes (``label_map.json`` order); id = position + 1.
        usable_objects: item -> cleaned boxes (``DetectionDataset.usable_objects``).
        callbacks: objects with any of ``on_train_begin(info)``, ``on_step_end(step,
            steps_per_epoch, logs)``, ``on_epoch_end(epoch, row)``, ``on_train_end(result)``.
        initial_weights: a previous run folder (or its checkpoints folder / a checkpoint
            prefix) whose best model weights start this run; ignored when resuming.
        pretrained: what ``backbones.download_pretrained`` returned, handed to
            ``backbones.load_pretrained`` when ``config.pretrained == "coco"``.
        strategy: a distribution strategy; ``strategy.choose_strategy()`` when None.
        pixel_scale: the scale and windows to train at (the data check's choice); measured on
            ``train_items`` by ``pixel_scale_for`` when None.

    Returns:
        The ``TrainingResult``, with the best epoch's weights loaded into ``result.model``.
    """
    if not train_items:
        raise errors.DatasetError("train: no training images. Check images_dir/annotations_dir and validation_fraction.")
    pixel_scale = pixel_scale or pixel_scale_for(config, train_items, usable_objects)
    train_set, validation_set = _write_record_sets(config, run, train_items, validation_items, class_names,
                                                   usable_objects, pixel_scale)
    strategy = strategy or strategy_module.choose_strategy()
    loop = _build_loop(config, run, class_names, train_set, validation_set, callbacks, strategy)
    managers = _managers(loop)
    done, start_description = _restore_or_start(loop, managers, initial_weights, pretrained)
    _call(loop.callbacks, "on_train_begin", {
        "epochs": config.epochs, "start_epoch": done + 1, "steps_per_epoch": loop.steps_per_epoch,
        "batch_size": config.batch_size, "train_images": train_set.number_of_images,
        "validation_images": validation_set.number_of_images if validation_set else 0,
        "strategy": strategy_module.describe_strategy(strategy), "start": start_description,
        "precision": loop.experiment.runtime.mixed_precision_dtype})
    if done < config.epochs:
        _run_epochs(loop, managers, done, train_set, validation_set, _ground_truth(validation_items, usable_objects))
    result = _result(loop, managers, int(loop.state["epoch"].numpy()), done)
    result.pixel_scale = pixel_scale
    _call(loop.callbacks, "on_train_end", result)
    return result


def _run_epochs(loop: _Loop, managers, done: int, train_set, validation_set, ground_truth: dict) -> None:
    """Epochs done+1..config.epochs: train, validate, checkpoint, append history."""
    dataset = loop.strategy.distribute_datasets_from_function(
        lambda context: build_inputs(loop, loop.experiment.task.train_data, context))
    iterator = iter(dataset)
    train_step = _train_step_function(loop)
    validated = validation_epochs(loop.config.epochs, loop.config.validation_interval,
                                  strategy_module.accelerator_kind())
    for epoch in range(done + 1, loop.config.epochs + 1):
        row = _train_epoch(loop, epoch, iterator, train_step)
        if validation_set is not None and epoch in validated:
            row.update(validate(loop, validation_set, ground_truth))
        _save_epoch(loop, managers, row, has_validation=validation_set is not None)
        _call(loop.callbacks, "on_epoch_end", epoch, row)


# ----- callbacks ------------------------------------------------------------------------


class ProgressCallback:
    """A tqdm progress bar per epoch showing the loss, images per second and time left."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout  # stdout: Jupyter shows stderr on red, like an error
        self.bar = None
        self.info: dict = {}
        self.started = 0.0

    def on_train_begin(self, info: dict) -> None:
        self.info, self.started = info, time.perf_counter()
        if info["start_epoch"] > info["epochs"]:
            print(f"All {info['epochs']} epochs are already done ({info['start']}): nothing to train. Raise "
                  f"number_of_epochs to train further.", file=self.stream)
            return
        print(f"{info['strategy']} Starting from {info['start']}; epochs {info['start_epoch']}–{info['epochs']}, "
              f"{info['steps_per_epoch']} steps of {info['batch_size']} images each.", file=self.stream)

    def on_step_end(self, step: int, steps_per_epoch: int, logs: dict) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=steps_per_epoch, desc=f"Epoch {logs['epoch']}/{self.info.get('epochs', '?')}",
                            unit="step", file=self.stream, leave=True)
        self.bar.update(1)
        epochs_left = self.info.get("epochs", logs["epoch"]) - logs["epoch"]
        seconds_per_step = self.bar.format_dict["elapsed"] / max(step, 1)
        remaining = seconds_per_step * (steps_per_epoch - step + epochs_left * steps_per_epoch)
        self.bar.set_postfix(loss=f"{logs['total_loss']:.3f}", images_per_s=f"{logs['images_per_second']:.1f}",
                             run_left=_duration(remaining), refresh=False)

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        extra = (f", validation mAP50 {row['validation_map50']:.3f}, mAP50-95 {row['validation_map50_95']:.3f}"
                 if "validation_map50" in row else "")
        print(f"Epoch {epoch}: loss {row['train_total_loss']:.4f}{extra} ({row['epoch_seconds']:.0f} s)",
              file=self.stream)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
