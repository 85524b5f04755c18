"""RetinaNet from TF Model Garden, configured from a ``DetectionConfig``.

Nothing here re-implements RetinaNet: the experiment config comes from Model Garden's
``exp_factory`` (the experiment named by the chosen backbone's registry entry), our form
values are applied on top of it, and the task and model come from ``task_factory`` and the
task's own ``build_model``. Model Garden uses ``tf_keras`` (Keras 2); so does everything here.

Class ids: Model Garden's ``num_classes`` counts the background, so a dataset with N
classes gets ``num_classes = N + 1``; id 0 is the background and ids 1..N follow the order of
``label_map.json`` (``RunFolder.write_label_map``).

Settings that Model Garden has no knob for:

* **classification loss weight** — Model Garden's loss is ``loss_weight * (focal +
  box_loss_weight * huber + l2)``; it has no weight on the focal term alone. Our training
  step (``helpers.detection.train``) adds ``(classification_loss_weight - 1) * focal`` to the
  task's loss, see ``weighted_total_loss``.
* **score threshold** — the model's detection generator keeps candidates down to
  ``min(score_threshold, 0.05)`` so that mAP and precision–recall curves see low-confidence
  detections too; ``helpers.detection.inference.detect`` drops those below the user's
  ``score_threshold`` before anything is shown or written.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import tensorflow as tf
import tf_keras

from helpers import errors, precision
from helpers import strategy as strategy_module
from helpers.detection import backbones
from helpers.detection.config import DetectionConfig

# Scale jitter used with random_flip: the range Model Garden's ResNet-FPN COCO recipe uses.
# The SpineNet recipes' 0.1–2.0 is tuned for 600-epoch COCO runs, far too strong for a few
# hundred microscopy images.
SCALE_JITTER = (0.8, 1.2)
# Lowest score the model's detection generator keeps (Model Garden's default): mAP needs them.
CANDIDATE_SCORE_THRESHOLD = 0.05
# Candidate boxes the detection generator keeps per class before non-max suppression. Model Garden's
# default, 5,000, made every inference (validation, export, prediction, QC) cost about 4 s per batch
# of 8 images on the 2-core CPU once the model scores many boxes >= 0.05, 8 to 10 times the network
# itself; 1,000 (RetinaNet's paper: the top 1k per level) costs 0.4-0.6 s (docs/benchmarks.md §9). With at
# most max_detections (100) boxes kept per image, 1,000 candidates per class leave room for them.
PRE_NMS_TOP_K = 1000
# Largest number of objects per image the input pipeline keeps for evaluation ground truth.
MAX_OBJECTS_PER_IMAGE = 300
# Batch-norm momentum when training from scratch. Model Garden's 0.99 suits COCO-length runs; on a
# few hundred images the moving statistics then lag the weights for hundreds of steps, and a model
# whose training loss is fine predicts the same near-constant scores for every image at inference
# (seen on BCCD: loss 2.09 -> 1.00 in 4 epochs, every inference score 0.013). 0.9 follows within
# ~50 steps. Pretrained runs use it too: their head starts fresh (see build_experiment).
FROM_SCRATCH_NORM_MOMENTUM = 0.9


def _import_model_garden() -> None:
    """Register Model Garden's RetinaNet experiments and task (import has that side effect)."""
    from official.vision.configs import retinanet as _retinanet_configs  # noqa: F401
    from official.vision.tasks import retinanet as _retinanet_task  # noqa: F401


def resolve_precision(mixed_precision: str) -> str:
    """The compute dtype for a ``mixed_precision`` form value (``helpers.precision.resolve``, the rule of every task).

    Args:
        mixed_precision: ``"auto"``, ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Returns:
        ``"float32"``, ``"float16"`` or ``"bfloat16"``. ``"auto"`` gives bfloat16 on a TPU,
        float16 on a GPU and float32 on a CPU (where reduced precision is slower, not faster).
    """
    return precision.resolve(mixed_precision, strategy_module.accelerator_kind() if mixed_precision == "auto" else None)


def _learning_rate_config(config: DetectionConfig, steps_per_epoch: int) -> dict[str, Any]:
    """Model Garden ``OptimizationConfig`` dict: optimiser, schedule and warm-up."""
    total_steps = max(1, config.epochs * steps_per_epoch)
    optimizer = {"type": "adam", "adam": {}} if config.optimizer == "adam" else {
        "type": "sgd", "sgd": {"momentum": 0.9}}
    if config.learning_rate_schedule == "constant":
        return {"optimizer": optimizer,
                "learning_rate": {"type": "constant", "constant": {"learning_rate": config.learning_rate}}}
    warmup_steps = min(total_steps - 1, int(round(config.warmup_epochs * steps_per_epoch)))
    schedule = {"optimizer": optimizer,
                "learning_rate": {"type": "cosine", "cosine": {
                    "initial_learning_rate": config.learning_rate,
                    "decay_steps": max(1, total_steps - warmup_steps),
                    "offset": warmup_steps}}}
    if warmup_steps > 0:
        schedule["warmup"] = {"type": "linear",
                              "linear": {"warmup_steps": warmup_steps, "warmup_learning_rate": 0.0}}
    return schedule


def _data_config(path: str | None, config: DetectionConfig, dtype: str, is_training: bool) -> dict[str, Any]:
    """Model Garden ``DataConfig`` overrides for the training or validation records."""
    flip = bool(config.random_flip and is_training)
    scale_min, scale_max = SCALE_JITTER if flip else (1.0, 1.0)
    return {
        "input_path": path or "",
        "is_training": is_training,
        "global_batch_size": config.batch_size,
        "dtype": dtype,
        "drop_remainder": is_training,  # validation must see every image
        "shuffle_buffer_size": 1000,
        "seed": config.split_seed if is_training else None,
        "parser": {"aug_rand_hflip": flip, "aug_scale_min": scale_min, "aug_scale_max": scale_max,
                   "max_num_instances": MAX_OBJECTS_PER_IMAGE},
    }


def build_experiment(config: DetectionConfig, num_classes: int, train_records: str | None = None,
                     validation_records: str | None = None, steps_per_epoch: int = 1, replicas: int = 1):
    """The Model Garden ``ExperimentConfig`` of one run.

    Args:
        config: the validated detection config.
        num_classes: the user's N object classes (background excluded).
        train_records: TFRecord file pattern of the training set, e.g. ``.../train-*.tfrecord``.
        validation_records: TFRecord file pattern of the validation set.
        steps_per_epoch: training steps per epoch (sets the learning-rate schedule length).
        replicas: ``strategy.num_replicas_in_sync`` of the strategy the model is trained under;
            synchronised batch norm is kept (where Model Garden's experiment has it) only when > 1.

    Returns:
        ``official.core.config_definitions.ExperimentConfig`` for the backbone's experiment.
    """
    if num_classes < 1:
        raise errors.DatasetError("No object classes were found in the annotations. Check that the "
                                  "annotations_dir holds PASCAL VOC .xml files with <object> entries.")
    _import_model_garden()
    from official.core import exp_factory

    spec = backbones.get_backbone(config.backbone)
    experiment = exp_factory.get_exp_config(spec.experiment)
    dtype = resolve_precision(config.mixed_precision)
    size = config.image_size
    # loss_scale None: for float16, Model Garden's create_optimizer (performance.configure_optimizer) wraps the
    # optimiser in tf_keras's dynamic LossScaleOptimizer; train._train_step_function scales the loss for it.
    experiment.override({"runtime": {"mixed_precision_dtype": dtype, "loss_scale": None}}, is_strict=True)
    experiment.task.model.override(spec.model_overrides, is_strict=True)
    _sync_batch_norm_only_across_replicas(experiment, replicas)
    experiment.override({"task": {
        "init_checkpoint": "",  # never gs://; pretrained weights come from backbones.load_pretrained
        "annotation_file": None,
        "use_coco_metrics": False,
        "model": {
            "num_classes": num_classes + 1,
            "input_size": [size, size, 3],
            "detection_generator": {
                "pre_nms_score_threshold": min(config.score_threshold, CANDIDATE_SCORE_THRESHOLD),
                "pre_nms_top_k": PRE_NMS_TOP_K,  # >= max_detections (its field maximum is 1,000)
                "nms_iou_threshold": config.nms_iou_threshold,
                "max_num_detections": config.max_detections,
            },
        },
        "losses": {"focal_loss_alpha": config.focal_alpha, "focal_loss_gamma": config.focal_gamma,
                   "box_loss_weight": config.box_loss_weight},
        "train_data": _data_config(train_records, config, dtype, is_training=True),
        "validation_data": _data_config(validation_records, config, dtype, is_training=False),
    }}, is_strict=True)
    experiment.override({"trainer": {
        "train_steps": max(1, config.epochs * steps_per_epoch),
        "steps_per_loop": steps_per_epoch,
        "checkpoint_interval": steps_per_epoch,
        "optimizer_config": _learning_rate_config(config, steps_per_epoch),
    }}, is_strict=False)
    # One norm_activation serves backbone, decoder and head (Model Garden's factory.build_retinanet).
    # With pretrained weights the head is still freshly initialised (moving statistics 0/1), so it
    # needs the lower momentum as much as a from-scratch model: measured (bench/finetune_vs_scratch.py,
    # docs/benchmarks.md), a fine-tune from our own BCCD checkpoint at 0.99 gave every test image the
    # same top score (0.0100, std 0.0) and mAP50 0.000 after 20 epochs; at 0.9 mAP50 0.519 (scratch 0.489).
    experiment.task.model.norm_activation.norm_momentum = FROM_SCRATCH_NORM_MOMENTUM
    _fix_spinenet_levels(experiment)
    experiment.validate()
    return experiment


def _sync_batch_norm_only_across_replicas(experiment, replicas: int) -> None:
    """Synchronised batch norm only when a batch is split over several replicas.

    Model Garden's SpineNet recipes (``retinanet_spinenet_coco``, ``retinanet_mobile_coco``) set
    ``use_sync_bn = True`` for their multi-accelerator COCO runs. On one replica there is nothing
    to synchronise, and ``synchronized=True`` forces tf_keras's non-fused batch norm in backbone,
    decoder and head: SpineNet-49-Mobile, 384 px, batch 8 on a CPU took 1.46 s per train_step with
    it and 1.09 s without. Checkpoints are the same either way (same variables, same names).
    """
    norm = experiment.task.model.norm_activation
    norm.use_sync_bn = bool(norm.use_sync_bn and replicas > 1)


def _fix_spinenet_levels(experiment) -> None:
    """SpineNet's own min/max level must equal the model's (a Model Garden restriction)."""
    backbone = experiment.task.model.backbone
    if backbone.type in ("spinenet", "spinenet_mobile"):
        levels = backbone.get()
        levels.min_level = experiment.task.model.min_level
        levels.max_level = experiment.task.model.max_level


def build_task(experiment):
    """The Model Garden ``RetinaNetTask`` for an experiment (``task_factory``)."""
    _import_model_garden()
    from official.core import task_factory

    return task_factory.get_task(experiment.task, logging_dir=None)


def set_precision_policy(experiment) -> None:
    """Set tf_keras's global dtype policy to the experiment's precision (before building a model)."""
    from official.modeling import performance

    performance.set_mixed_precision_policy(tf.dtypes.as_dtype(experiment.runtime.mixed_precision_dtype))


def build_model_from_experiment(experiment) -> tf_keras.Model:
    """Build (create the variables of) the RetinaNet of an experiment; weights are random.

    Call it inside ``strategy.scope()`` to place the variables for distributed training.
    """
    set_precision_policy(experiment)
    model = build_task(experiment).build_model()
    size = experiment.task.model.input_size
    model(tf.zeros([1] + list(size), dtype=tf.float32), training=False)
    return model


def build_model(config: DetectionConfig, num_classes: int) -> tf_keras.Model:
    """A built, untrained RetinaNet for ``config`` and N = ``num_classes`` object classes."""
    return build_model_from_experiment(build_experiment(config, num_classes))


def weighted_total_loss(task, outputs: dict, labels: dict, aux_losses, classification_loss_weight: float,
                        box_iou_loss_weight: float = 0.0):
    """Model Garden's RetinaNet loss with the focal term scaled by ``classification_loss_weight``, plus
    ``box_iou_loss_weight`` × the GIoU term of ``box_iou_loss`` (Model Garden has no IoU-aware box loss).

    Args:
        task: the ``RetinaNetTask`` (its ``build_losses`` computes the focal and Huber terms).
        outputs: model outputs with ``cls_outputs``/``box_outputs`` cast to float32.
        labels: the parser's labels (anchor targets and weights).
        aux_losses: ``model.losses`` (L2 weight decay).
        classification_loss_weight: factor on the focal loss (1 = Model Garden's loss).
        box_iou_loss_weight: factor on ``box_iou_loss`` (0 = Model Garden's loss, the term is not built).

    Returns:
        (total_loss, classification_loss, box_loss) scalar float32 tensors; the class and box
        losses are unweighted, as Model Garden reports them (box_loss is the Huber term).
    """
    total_loss, class_loss, box_loss, _ = task.build_losses(outputs=outputs, labels=labels, aux_losses=aux_losses)
    loss_weight = task.task_config.losses.loss_weight
    total_loss += (classification_loss_weight - 1.0) * loss_weight * class_loss
    if box_iou_loss_weight > 0:
        total_loss += loss_weight * box_iou_loss_weight * box_iou_loss(task, outputs, labels)
    return total_loss, class_loss, box_loss


def box_iou_loss(task, outputs: dict, labels: dict):
    """Mean of (1 − GIoU) between predicted and target boxes over the positive anchors of a batch.

    Both boxes are decoded from the anchor-relative encoding (dy, dx, dh, dw) against one unit
    anchor instead of each box's own anchor: IoU and GIoU are unchanged when both boxes are shifted
    and scaled along each axis by the same amounts, so the value equals the GIoU of the decoded boxes
    in image pixels, without the anchor coordinates.

    Args:
        task: the ``RetinaNetTask`` (its box coder weights).
        outputs: ``box_outputs`` {level: [B, H, W, 4 × anchors]} float32.
        labels: ``box_targets`` (same layout) and ``box_weights`` [B, anchors of all levels] (1 = positive).

    Returns:
        Scalar float32: Σ weight × (1 − GIoU) / (Σ weight + 1), normalised as Model Garden's box loss; in [0, 2).
    """
    from official.projects.yolo.ops import box_ops as yolo_box_ops
    from official.vision.losses import loss_utils
    from official.vision.ops import box_ops

    coder_weights = task.task_config.model.detection_generator.box_coder_weights
    unit_anchor = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32)
    target = box_ops.decode_boxes(loss_utils.multi_level_flatten(labels["box_targets"], last_dim=4), unit_anchor,
                                  coder_weights)
    predicted = box_ops.decode_boxes(loss_utils.multi_level_flatten(outputs["box_outputs"], last_dim=4),
                                     unit_anchor, coder_weights)
    _, giou = yolo_box_ops.compute_giou(predicted, target, yxyx=True)
    weights = tf.cast(labels["box_weights"], tf.float32)
    return tf.reduce_sum(weights * (1.0 - giou)) / (tf.reduce_sum(weights) + 1.0)


def steps_per_epoch(config: DetectionConfig, number_of_train_images: int) -> int:
    """``config.steps_per_epoch`` if set, else one pass: ceil(images / batch size)."""
    if config.steps_per_epoch > 0:
        return config.steps_per_epoch
    return max(1, math.ceil(number_of_train_images / config.batch_size))


def find_checkpoint(folder: str | pathlib.Path, which: str = "best") -> str:
    """The checkpoint prefix of a run folder (or of its ``checkpoints`` folder).

    Args:
        folder: a run folder ``<model_path>/<model_name>``, its ``checkpoints/`` folder,
            or a checkpoint prefix such as ``.../checkpoints/ckpt-12``.
        which: ``"best"`` (highest validation mAP50-95; the latest when there is no best)
            or ``"latest"``.

    Returns:
        A checkpoint prefix for ``tf.train.Checkpoint.read``.

    Raises:
        ModelError: no checkpoint is found there.
    """
    path = pathlib.Path(folder).expanduser()
    if pathlib.Path(str(path) + ".index").is_file():
        return str(path)
    checkpoints = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = [checkpoints / "best", checkpoints] if which == "best" else [checkpoints]
    for candidate in candidates:
        prefix = tf.train.latest_checkpoint(str(candidate)) if candidate.is_dir() else None
        if prefix:
            return prefix
    raise errors.ModelError(f"{path}: no trained checkpoint found. Give the run folder <model_path>/<model_name> of "
                            f"a training run that finished at least one epoch.")


def restore_weights(model: tf_keras.Model, checkpoint: str | pathlib.Path) -> str:
    """Load model weights from a training checkpoint (optimizer state ignored).

    Args:
        model: a model built by ``build_model`` with the same backbone and class count.
        checkpoint: anything ``find_checkpoint`` accepts.

    Returns:
        The checkpoint prefix that was read.
    """
    prefix = find_checkpoint(checkpoint)
    try:
        tf.train.Checkpoint(model=model).read(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise errors.ModelError(f"{prefix}: does not fit this model ({str(error).splitlines()[0]}). Use a run "
                                f"trained with the same backbone and the same classes.") from None
    return prefix
