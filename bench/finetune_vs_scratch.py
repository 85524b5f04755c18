"""Benchmark: fine-tuning from our own pretrained weights against training from scratch, same budget, offline.

Issue 12 point 3. No published weights can be downloaded here, so a checkpoint of our own plays
the part of the published one, and reaches the run through the *same* loading code as the COCO /
ImageNet weights: it is written in the publisher's format, served by a local HTTP server on
127.0.0.1 (a thread of this process), and the backbone's registry entry gets that address and its
checksum for the fine-tuning run only; ``helpers.downloads.cached_download`` fetches and verifies it
into a temporary cache (``$DL4CELLS_CACHE``), exactly as a notebook user's run would fetch the
published file.

``--task detection`` (BCCD, ``../shared/data/bccd``, PASCAL VOC):
  * split: B = ``--finetune-images`` (60) stems of ``train.txt`` drawn with seed 42 (the data-poor
    case), A = the other ``train.txt`` stems (145), validation = the first ``--validation-images``
    (30) stems of ``val.txt`` (disjoint from ``train.txt``), test = ``test.txt`` (72 images);
  * pretraining: RetinaNet trained from scratch on A (``pretrained = "none"``), best epoch by
    validation mAP50-95; its backbone, decoder (where there is one) and head written as
    ``tf.train.Checkpoint(backbone=, decoder=, head=)`` (the layout Model Garden publishes) in a
    ``.tar.gz``; the registry's ``checkpoint_url`` / ``checkpoint_sha256`` replaced;
  * fine-tune: ``pretrained = "coco"`` on B (``backbones.download_pretrained`` then
    ``backbones.load_pretrained`` inside ``train.train_detector``: backbone and decoder loaded, head
    fresh); scratch: ``pretrained = "none"`` on B; same epochs, image size, batch, learning rate;
  * diagnostic (``--finetune-norm-momentum 0.9 --reuse-pretraining DIR --skip-scratch``): the fine-tune
    again from DIR's checkpoint with the batch-norm momentum Model Garden's ``norm_activation`` gives
    backbone *and* the fresh head overridden for this run only (``helpers`` unchanged);
  * score: each model's best epoch predicts the test images (score >= 0.05, at most
    ``max_detections``), written as our predictions CSV, scored by ``python -m helpers.qc
    detection --json`` (pycocotools): mAP50, mAP50-95;
  * batch-norm check: per test image the top detection score and the top raw class probability
    (sigmoid of ``cls_outputs``, foreground classes, every anchor); their median, std, range and the
    fraction of images within 0.01 of the median. Near-constant scores (the failure seen from
    scratch with momentum 0.99: every image 0.013) show as std ~0 and fraction ~1.

``--task classification``:
  * pretraining: from scratch on ``../shared/data/wbc_zheng2018`` (both datasets, 396 images: the
    4 basophils are dropped, too few for a class), through the notebook's engine path; the best
    epoch's backbone written as a Keras legacy ``*_notop.h5`` (what keras.applications downloads),
    the registry's ``weights_url`` / ``weights_md5`` replaced (same file name);
  * fine-tune on ``../shared/data/wbc_bccd_crops`` with ``pretrained = "imagenet"`` (the session's
    ``prepare_backbone`` downloads it; phase 1 head only, phase 2 the top ``fine_tune_layers``
    layers) against ``pretrained = "none"``, same epochs, image size, split (the held-out test =
    the last 20 % of each class by file name, as ``bench/from_scratch.py``) and engine split;
  * score: ``helpers.qc.classification`` through the workflow's quality control on the test images
    (balanced accuracy, macro F1, accuracy), plus the spread of the per-image top probability.

    .venv/bin/python bench/finetune_vs_scratch.py --task detection --pretrain-epochs 18 --epochs 20 --image-size 256
    .venv/bin/python bench/finetune_vs_scratch.py --task detection --epochs 20 --image-size 256 \
        --reuse-pretraining bench/output/finetune_vs_scratch/<earlier detection run> --finetune-norm-momentum 0.9 --skip-scratch
    .venv/bin/python bench/finetune_vs_scratch.py --task classification --pretrain-epochs 30 --epochs 30 --image-size 96
    .venv/bin/python bench/finetune_vs_scratch.py --task detection --smoke        # minutes-long pipeline check
    .venv/bin/python bench/finetune_vs_scratch.py --task classification --smoke

Writes ``bench/output/finetune_vs_scratch/<task>-<backbone>-<size>-<time>[-smoke]/result.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import tarfile
import tempfile
import threading
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))

from bccd import DEFAULT_BCCD, edited_experiments, link_split, score_with_qc, stems, summary  # noqa: E402

SHARED_DATA = REPOSITORY_ROOT.parent / "shared" / "data"
SEED = 42
NEAR_MEDIAN = 0.01  # "near-constant": top score within this of the median score
DETECTION_SCORE_THRESHOLD = 0.05
ZHENG_DROPPED_CLASSES = ("basophil",)  # 4 images in all (SOURCE.md): too few for a class


# ---------------------------------------------------------------- serving our own "published" weights


@contextlib.contextmanager
def local_server(folder: pathlib.Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a daemon thread); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    previous = os.environ.get("no_proxy"), os.environ.get("NO_PROXY")
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # never through a proxy
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        for name, value in zip(("no_proxy", "NO_PROXY"), previous):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        print(f"[local weights server] {format % args}", file=sys.stderr)


@contextlib.contextmanager
def substituted(registry: dict, name: str, **fields):
    """``registry[name]`` replaced by a copy with ``fields`` for the duration of the block."""
    original = registry[name]
    registry[name] = dataclasses.replace(original, **fields)
    try:
        yield registry[name]
    finally:
        registry[name] = original


@contextlib.contextmanager
def temporary_cache(folder: pathlib.Path):
    """``$DL4CELLS_CACHE`` = ``folder`` (``helpers.downloads.default_cache_dir``) for the block."""
    previous = os.environ.get("DL4CELLS_CACHE")
    os.environ["DL4CELLS_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("DL4CELLS_CACHE", None)
        else:
            os.environ["DL4CELLS_CACHE"] = previous


def file_digest(path: pathlib.Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spread(values: list[float]) -> dict:
    """Median, std, min, max of per-image top scores and the share within ``NEAR_MEDIAN`` of the median."""
    if not values:
        return {"images": 0}
    median = statistics.median(values)
    return {"images": len(values), "median": round(median, 4), "std": round(statistics.pstdev(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4),
            "fraction_within_0.01_of_median": round(sum(abs(value - median) < NEAR_MEDIAN for value in values)
                                                    / len(values), 3)}


# ---------------------------------------------------------------- detection


def detection_split(bccd: pathlib.Path, finetune_images: int, validation_images: int, smoke: bool) -> dict:
    """Stems of A (pretraining), B (fine-tune / scratch), validation and test (see the docstring)."""
    train = stems(bccd, "train")
    chosen = set(random.Random(SEED).sample(sorted(train), finetune_images))
    parts = {"A": [stem for stem in train if stem not in chosen], "B": [stem for stem in train if stem in chosen],
             "validation": stems(bccd, "val")[:validation_images], "test": stems(bccd, "test")}
    if smoke:
        parts = {"A": parts["A"][:8], "B": parts["B"][:8], "validation": parts["validation"][:2],
                 "test": parts["test"][:4]}
    return parts


def detection_config(arguments, output: pathlib.Path, name: str, pretrained: str, epochs: int, bccd: pathlib.Path):
    from helpers import config as config_module
    from helpers.detection.config import DetectionConfig

    return config_module.config_from_form(
        DetectionConfig, "default", images_dir=str(bccd / "JPEGImages"), annotations_dir=str(bccd / "Annotations"),
        model_path=str(output), model_name=name, backbone=arguments.backbone, pretrained=pretrained,
        image_size=arguments.image_size, epochs=epochs, batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate, steps_per_epoch=2 if arguments.smoke else 0)


def train_detection_run(config, dataset, train_stems, validation_stems, pretrained=None) -> dict:
    """One run of ``train.train_detector`` (its own run folder); the result and wall seconds."""
    from helpers import runs
    from helpers.detection import train

    by_stem = {item.stem: item for item in dataset.items}
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(dataset.classes)
    started = time.perf_counter()
    result = train.train_detector(config, run, [by_stem[stem] for stem in train_stems if stem in by_stem],
                                  [by_stem[stem] for stem in validation_stems if stem in by_stem], dataset.classes,
                                  dataset.usable_objects, callbacks=(train.ProgressCallback(),), pretrained=pretrained)
    return {"result": result, "training_seconds": round(time.perf_counter() - started, 1)}


def write_detection_checkpoint(model, folder: pathlib.Path, name: str) -> pathlib.Path:
    """``<folder>/<name>.tar.gz`` holding ``<name>/ckpt`` = Checkpoint(backbone, decoder, head), the published layout."""
    import tensorflow as tf

    modules = {"backbone": model.backbone, "head": model.head}
    if model.decoder is not None:
        modules["decoder"] = model.decoder
    checkpoint_folder = folder / name
    checkpoint_folder.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(**modules).write(str(checkpoint_folder / "ckpt"))
    archive = folder / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(checkpoint_folder, arcname=name)
    return archive


def detection_top_scores(model, image_paths: list[pathlib.Path], config, class_names: list[str]) -> tuple[dict, list]:
    """Per image: top detection score (0 when none >= 0.05) and top raw foreground class probability; detections."""
    import numpy as np
    import tensorflow as tf

    from helpers import images as images_module
    from helpers.detection import inference

    top_detection, top_raw, detections = [], [], []
    for start in range(0, len(image_paths), 4):
        paths = image_paths[start:start + 4]
        prepared = [inference.preprocess(images_module.read_image(path), config.image_size) for path in paths]
        batch, infos = tf.stack([image for image, _ in prepared]), tf.stack([info for _, info in prepared])
        outputs = inference.run_model(model, batch, infos)
        per_image = inference.to_detections(outputs, infos, class_names, DETECTION_SCORE_THRESHOLD,
                                            [path.name for path in paths])
        detections.extend(detection for image_detections in per_image for detection in image_detections)
        top_detection += [image_detections[0].score if image_detections else 0.0 for image_detections in per_image]
        levels = []
        for logits in outputs["cls_outputs"].values():
            # [B, h, w, anchors * (N + 1)]: class 0 is the background, never a detection.
            shaped = tf.reshape(logits, [len(paths), -1, len(class_names) + 1])[:, :, 1:]
            levels.append(tf.reduce_max(tf.sigmoid(shaped), axis=1))
        top_raw += [float(value) for value in np.max(np.stack([level.numpy() for level in levels]), axis=(0, 2))]
    return {"top_detection_score": spread(top_detection), "top_raw_class_probability": spread(top_raw),
            "per_image_top_detection_score": [round(value, 4) for value in top_detection]}, detections


def score_detection_model(model, config, class_names, bccd, test_stems, output: pathlib.Path) -> dict:
    """Test mAP through the QC command, and the batch-norm spread figures, for one trained model."""
    from helpers.detection import outputs as outputs_module

    test_images, test_annotations = link_split(bccd, test_stems, output.parent / "test")
    paths = sorted(test_images.iterdir())
    bn_spread, detections = detection_top_scores(model, paths, config, class_names)
    csv_path = outputs_module.write_predictions_csv(detections, output / "test_predictions.csv")
    return {**summary(score_with_qc(csv_path, test_annotations, test_images, python=pathlib.Path(sys.executable))),
            "batch_norm_spread": bn_spread}


def score_last_epoch(run: dict, config, class_names, bccd, test_stems) -> dict | None:
    """The same figures for the last epoch's weights when another epoch was kept as best (else None).

    The run keeps the epoch with the best validation mAP50-95; when every epoch scores 0 (the
    batch-norm failure) that is epoch 1, so the last epoch is scored too to see whether it recovered.
    """
    import tensorflow as tf

    result = run["result"]
    if not result.latest_checkpoint or result.latest_checkpoint == result.best_checkpoint:
        return None
    tf.train.Checkpoint(model=result.model).read(result.latest_checkpoint).expect_partial()
    folder = result.run.root / "last_epoch"
    folder.mkdir(exist_ok=True)
    score = score_detection_model(result.model, config, class_names, bccd, test_stems, folder)
    return {"epoch": result.epochs_completed, "test_map50": score["map50"], "test_map50_95": score["map50_95"],
            "batch_norm_spread": score["batch_norm_spread"]}


def history_rows(run_root: pathlib.Path) -> list[dict]:
    from helpers import history

    keep = ("epoch", "train_total_loss", "validation_map50", "validation_map50_95", "epoch_seconds")
    return [{key: round(row[key], 4) for key in keep if key in row}
            for row in history.read_history(run_root / "history.csv")]


def detection_summary(run: dict, score: dict) -> dict:
    result = run["result"]
    return {"epochs": result.epochs_completed, "best_epoch": result.best_epoch,
            "training_seconds": run["training_seconds"], "test_map50": score["map50"],
            "test_map50_95": score["map50_95"], "per_class": score["per_class"],
            "batch_norm_spread": score["batch_norm_spread"], "history": history_rows(result.run.root)}


def backbone_matches(model, reference) -> bool:
    """True when every backbone variable of ``model`` equals ``reference``'s (the pretrained weights arrived)."""
    import numpy as np

    return all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.backbone.weights, reference.backbone.weights))


def fine_tune_norm_momentum(momentum: float | None):
    """Diagnostic only: batch-norm momentum ``momentum`` for runs with ``pretrained = "coco"`` (None = unchanged).

    Edits what ``helpers.detection.model.build_experiment`` returns inside the block; helpers' code is not changed.
    """
    if momentum is None:
        return contextlib.nullcontext()

    def edit(config, experiment) -> None:
        if config.pretrained == "coco":
            experiment.task.model.norm_activation.norm_momentum = momentum

    return edited_experiments(edit)


def pretrain_detector(arguments, output, dataset, parts, bccd) -> tuple[dict, pathlib.Path, object]:
    """Pretraining on A (or the one recorded in ``--reuse-pretraining``): its record, archive, model (or None)."""
    if arguments.reuse_pretraining:
        previous = json.loads((pathlib.Path(arguments.reuse_pretraining) / "result.json").read_text(encoding="utf-8"))
        if previous["finetune_stems"] != parts["B"]:
            raise SystemExit("--reuse-pretraining: that run's fine-tune set B differs from this one's.")
        return ({**previous["pretraining"], "reused_from": arguments.reuse_pretraining},
                pathlib.Path(previous["pretrained_archive"]["path"]), None)
    print(f"== pretraining on A ({len(parts['A'])} images), from scratch", file=sys.stderr)
    config = detection_config(arguments, output, "pretrain_A", "none", arguments.pretrain_epochs, bccd)
    pretrain = train_detection_run(config, dataset, parts["A"], parts["validation"])
    summary_record = detection_summary(pretrain, score_detection_model(
        pretrain["result"].model, config, dataset.classes, bccd, parts["test"], pretrain["result"].run.root))
    summary_record["norm_momentum"] = pretrain["result"].loop.experiment.task.model.norm_activation.norm_momentum
    archive = write_detection_checkpoint(pretrain["result"].model, output / "served", f"{arguments.backbone}-bccd_A")
    return summary_record, archive, pretrain["result"].model


def run_detection(arguments, output: pathlib.Path) -> dict:
    from helpers.detection import dataset as detection_dataset
    from helpers.detection import backbones, model as model_module

    bccd = pathlib.Path(arguments.bccd)
    parts = detection_split(bccd, arguments.finetune_images, arguments.validation_images, arguments.smoke)
    dataset = detection_dataset.load_detection_dataset(bccd / "JPEGImages", bccd / "Annotations", progress=False)
    record = {"split": {name: len(values) for name, values in parts.items()}, "finetune_stems": parts["B"]}
    record["pretraining"], archive, pretrained_model = pretrain_detector(arguments, output, dataset, parts, bccd)
    serve = archive.parent
    sha256 = file_digest(archive, "sha256")
    record["pretrained_archive"] = {"path": str(archive), "sha256": sha256, "bytes": archive.stat().st_size}

    print(f"== fine-tuning on B ({len(parts['B'])} images) from the A checkpoint, via pretrained = 'coco'",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dl4cells-cache-") as cache, temporary_cache(pathlib.Path(cache)), \
            local_server(serve) as base_url:
        url = f"{base_url}/{archive.name}"
        with substituted(backbones.BACKBONES, arguments.backbone, checkpoint_url=url, checkpoint_sha256=sha256):
            config = detection_config(arguments, output, "finetune_B", "coco", arguments.epochs, bccd)
            spec = backbones.get_backbone(config.backbone)
            weights = backbones.download_pretrained(spec, progress=False)  # what prepare_backbone does
            record["fine_tune_weights"] = {"url": weights.url, "sha256": weights.sha256,
                                           "checkpoint_prefix": weights.checkpoint_prefix}
            # Proof that load_pretrained brings A's backbone: a fresh model after loading equals A's.
            fresh = model_module.build_model_from_experiment(model_module.build_experiment(config, len(dataset.classes)))
            record["fine_tune_weights"]["modules_loaded"] = backbones.load_pretrained(fresh, spec, weights)
            if pretrained_model is not None:
                record["fine_tune_weights"]["backbone_equals_pretrained"] = backbone_matches(fresh, pretrained_model)
            with fine_tune_norm_momentum(arguments.finetune_norm_momentum):
                finetune = train_detection_run(config, dataset, parts["B"], parts["validation"], pretrained=weights)
    record["fine_tune"] = detection_summary(finetune, score_detection_model(
        finetune["result"].model, config, dataset.classes, bccd, parts["test"], finetune["result"].run.root))
    record["fine_tune"]["norm_momentum"] = finetune["result"].loop.experiment.task.model.norm_activation.norm_momentum
    record["fine_tune"]["last_epoch"] = score_last_epoch(finetune, config, dataset.classes, bccd, parts["test"])

    if arguments.skip_scratch:
        return record
    print(f"== from scratch on B ({len(parts['B'])} images)", file=sys.stderr)
    config = detection_config(arguments, output, "scratch_B", "none", arguments.epochs, bccd)
    scratch = train_detection_run(config, dataset, parts["B"], parts["validation"])
    record["scratch"] = detection_summary(scratch, score_detection_model(
        scratch["result"].model, config, dataset.classes, bccd, parts["test"], scratch["result"].run.root))
    record["scratch"]["norm_momentum"] = scratch["result"].loop.experiment.task.model.norm_activation.norm_momentum
    record["scratch"]["last_epoch"] = score_last_epoch(scratch, config, dataset.classes, bccd, parts["test"])
    return record


# ---------------------------------------------------------------- classification


def link_zheng(zheng: pathlib.Path, destination: pathlib.Path, smoke: bool) -> dict:
    """``destination/<class_name>/<dataset>_<file>`` links from ``labels.csv`` (basophils dropped); counts."""
    counts: dict[str, int] = {}
    with (zheng / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["class_name"] not in ZHENG_DROPPED_CLASSES]
    for row in rows:
        if smoke and counts.get(row["class_name"], 0) >= 6:
            continue
        source = zheng / row["image"]
        link = destination / row["class_name"] / f"dataset{row['dataset']}_{source.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve())
        counts[row["class_name"]] = counts.get(row["class_name"], 0) + 1
    return counts


def classification_session(arguments, images_dir: pathlib.Path, output: pathlib.Path, name: str, pretrained: str,
                           epochs: int):
    """Sections 1–3 of the notebook (config from the form, run folder, data check and split, backbone)."""
    from helpers.classification import workflow

    fields = dict(images_dir=str(images_dir), labels_csv="", model_path=str(output), model_name=name,
                  backbone=arguments.backbone, pretrained=pretrained, epochs=epochs,
                  head_epochs=min(arguments.head_epochs, epochs) if pretrained == "imagenet" else 0,
                  image_size=arguments.image_size, batch_size=arguments.batch_size,
                  learning_rate=arguments.learning_rate, validation_fraction=0.2, split_seed=SEED,
                  reduce_lr_patience=arguments.reduce_lr_patience, early_stopping_patience=0)
    if pretrained == "imagenet":
        fields["fine_tune_layers"] = arguments.fine_tune_layers
    session = workflow.start("quick", **fields)
    session.check_data()
    session.prepare_backbone()
    return session


def train_classification_run(session) -> float:
    """Section 4's training call (``train_classifier`` with the notebook's callbacks), then export; wall seconds."""
    from helpers.classification import predict
    from helpers.classification import train

    config, run = session.config, session.run
    run.write_label_map(session.class_names())
    started = time.perf_counter()
    session.training = train.train_classifier(
        config, run, session.items_named(session.split.train), session.items_named(session.split.validation),
        session.class_names(), callbacks=(train.ProgressCallback(config.epochs),),
        weights_path=session.pretrained.path if session.pretrained is not None else None)
    seconds = round(time.perf_counter() - started, 1)
    predict.export_model(session.training.model, session.class_names(), run)
    return seconds


def write_notop_h5(classifier, spec, image_size: int, path: pathlib.Path) -> dict:
    """The classifier's backbone as a Keras legacy notop ``.h5`` (keras.applications' download format)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from helpers.classification import model as model_module

    options = {"include_preprocessing": True} if spec.constructor.startswith(("EfficientNetV2", "MobileNetV3")) else {}
    notop = getattr(keras.applications, spec.constructor)(include_top=False, weights=None,
                                                          input_shape=(image_size, image_size, 3), **options)
    trained = {layer.name: layer for layer in model_module.backbone_layers(classifier)}
    copied = 0
    for layer in notop.layers:
        if layer.weights:
            layer.set_weights(trained[layer.name].get_weights())
            copied += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, notop)
    return {"layers_with_weights": copied}


def classifier_backbone_matches(session, reference, image_size: int) -> bool:
    """True when a classifier built from the downloaded file has ``reference``'s backbone weights exactly."""
    import numpy as np

    from helpers.classification import model as model_module

    built = model_module.build_classifier(session.config.backbone, len(session.class_names()), image_size,
                                          weights_path=str(session.pretrained.path))
    expected = {layer.name: layer for layer in model_module.backbone_layers(reference)}
    return all(np.array_equal(a, b) for layer in model_module.backbone_layers(built) if layer.weights
               for a, b in zip(layer.get_weights(), expected[layer.name].get_weights()))


def classification_scores(session, output: pathlib.Path, test_folder: pathlib.Path) -> dict:
    """QC (section 5) on the held-out test images; the figures and the spread of per-image top probability."""
    from helpers.classification import workflow
    from helpers.qc import classification as classification_qc

    result = workflow.quality_control(str(output), session.config.model_name, test_images=str(test_folder))
    evaluation = result.evaluation.to_json_dict()
    scores = classification_qc.read_score_csv(session.run.qc / "predictions.csv")
    top = [max(values.values()) for values in scores.values()]
    predicted = {filename: max(values, key=values.get) for filename, values in scores.items()}
    return {"balanced_accuracy": evaluation["balanced_accuracy"], "macro_f1": evaluation["macro_f1"],
            "accuracy": evaluation["accuracy"], "confusion_matrix": evaluation["confusion_matrix"],
            "classes": evaluation["classes"], "predicted_classes_used": len(set(predicted.values())),
            "top_probability_spread": spread(top)}


def classification_summary(session, seconds: float, score: dict) -> dict:
    training = session.training
    return {"epochs": training.epochs_completed, "best_epoch": training.best_epoch, "training_seconds": seconds,
            "images": {"train": len(session.split.train), "validation": len(session.split.validation)},
            "validation_best": {key: training.best_metrics.get(key) for key in
                                ("validation_balanced_accuracy", "validation_macro_f1", "validation_accuracy")},
            **score}


def run_classification(arguments, output: pathlib.Path) -> dict:
    import from_scratch

    from helpers.classification import backbones

    record = {}
    zheng_counts = link_zheng(pathlib.Path(arguments.zheng), output / "data" / "zheng", arguments.smoke)
    record["pretraining_data"] = {"images": sum(zheng_counts.values()), "per_class": zheng_counts}
    print(f"== pretraining on wbc_zheng2018 ({sum(zheng_counts.values())} images), from scratch", file=sys.stderr)
    session = classification_session(arguments, output / "data" / "zheng", output, "pretrain_zheng", "none",
                                     arguments.pretrain_epochs)
    seconds = train_classification_run(session)
    record["pretraining"] = {"epochs": session.training.epochs_completed, "best_epoch": session.training.best_epoch,
                             "training_seconds": seconds, "validation_best": session.training.best_metrics}
    pretrained_model = session.training.model
    spec = backbones.get_backbone(arguments.backbone)
    served = output / "served" / spec.weights_filename
    record["pretrained_file"] = write_notop_h5(session.training.model, spec, arguments.image_size, served)
    md5 = file_digest(served, "md5")
    record["pretrained_file"].update(path=str(served), md5=md5, bytes=served.stat().st_size)

    crops = from_scratch.class_folders(pathlib.Path(arguments.crops))
    pairs = from_scratch.split_class_files(crops, from_scratch.SMOKE_FILES_PER_CLASS if arguments.smoke else None)
    train_folder = from_scratch.link_class_files(pairs["train"], output / "data" / "crops_train")
    test_folder = from_scratch.link_class_files(pairs["test"], output / "data" / "crops_test")
    record["crops"] = {"train_pool": len(pairs["train"]), "test": len(pairs["test"])}

    print("== fine-tuning on wbc_bccd_crops from the zheng backbone, via pretrained = 'imagenet'", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dl4cells-cache-") as cache, temporary_cache(pathlib.Path(cache)), \
            local_server(served.parent) as base_url:
        with substituted(backbones.BACKBONES, spec.name, weights_url=f"{base_url}/{served.name}", weights_md5=md5):
            session = classification_session(arguments, train_folder, output, "finetune_crops", "imagenet",
                                             arguments.epochs)
            record["fine_tune_weights"] = {"url": session.pretrained.url, "sha256": session.pretrained.sha256,
                                           "backbone_equals_pretrained": classifier_backbone_matches(
                                               session, pretrained_model, arguments.image_size)}
            seconds = train_classification_run(session)
    record["fine_tune"] = classification_summary(session, seconds, classification_scores(session, output, test_folder))
    record["fine_tune"]["phases"] = {"head_epochs": session.config.head_epochs,
                                     "fine_tune_layers": session.config.fine_tune_layers,
                                     "fine_tune_learning_rate": session.config.fine_tune_learning_rate}

    print("== from scratch on wbc_bccd_crops", file=sys.stderr)
    session = classification_session(arguments, train_folder, output, "scratch_crops", "none", arguments.epochs)
    seconds = train_classification_run(session)
    record["scratch"] = classification_summary(session, seconds, classification_scores(session, output, test_folder))
    return record


# ---------------------------------------------------------------- command line


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("detection", "classification"), required=True)
    parser.add_argument("--backbone", default=None, help="default: spinenet49_mobile (detection), "
                                                         "mobilenetv3small (classification)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 256 (detection), 96 (classification)")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="epochs of the pretraining run")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the fine-tune and of the scratch run")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 (detection), 16 (classification)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--finetune-images", type=int, default=60, help="detection: size of B (from train.txt)")
    parser.add_argument("--validation-images", type=int, default=30, help="detection: first stems of val.txt")
    parser.add_argument("--head-epochs", type=int, default=3, help="classification fine-tune: phase 1 epochs")
    parser.add_argument("--fine-tune-layers", type=int, default=100, help="classification fine-tune: phase 2 layers")
    parser.add_argument("--reduce-lr-patience", type=int, default=10, help="classification")
    parser.add_argument("--reuse-pretraining", default="", help="detection: an earlier result folder whose "
                        "pretraining (record and served archive) to reuse instead of pretraining again")
    parser.add_argument("--finetune-norm-momentum", type=float, default=None,
                        help="detection diagnostic: batch-norm momentum of the fine-tune run (default: the project's)")
    parser.add_argument("--skip-scratch", action="store_true", help="detection: no from-scratch run (diagnostics)")
    parser.add_argument("--bccd", default=str(DEFAULT_BCCD))
    parser.add_argument("--zheng", default=str(SHARED_DATA / "wbc_zheng2018"))
    parser.add_argument("--crops", default=str(SHARED_DATA / "wbc_bccd_crops"))
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output" / "finetune_vs_scratch"))
    parser.add_argument("--smoke", action="store_true", help="a few images, 1-2 epochs of 2 steps, small images")
    arguments = parser.parse_args(argv)
    detection = arguments.task == "detection"
    arguments.backbone = arguments.backbone or ("spinenet49_mobile" if detection else "mobilenetv3small")
    arguments.image_size = arguments.image_size or (256 if detection else 96)
    arguments.batch_size = arguments.batch_size or (8 if detection else 16)
    arguments.pretrain_epochs = arguments.pretrain_epochs or (18 if detection else 30)
    arguments.epochs = arguments.epochs or (20 if detection else 30)
    if arguments.smoke:
        arguments.image_size = 128 if detection else 48
        arguments.pretrain_epochs, arguments.epochs = (1, 1) if detection else (1, 2)
        arguments.batch_size, arguments.head_epochs = (2, 1) if detection else (4, 1)
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    name = "-".join([arguments.task, arguments.backbone, str(arguments.image_size), time.strftime("%Y%m%d-%H%M%S")]
                    + ([f"bn{arguments.finetune_norm_momentum:g}"] if arguments.finetune_norm_momentum else [])
                    + (["smoke"] if arguments.smoke else []))
    output = pathlib.Path(arguments.output) / name
    output.mkdir(parents=True)
    import tensorflow as tf

    started, load_start = time.perf_counter(), os.getloadavg()
    body = run_detection(arguments, output) if arguments.task == "detection" else run_classification(arguments, output)
    record = {"benchmark": "finetune_vs_scratch", "task": arguments.task, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
              "machine": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "tensorflow": tf.__version__, "arguments": vars(arguments), "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "total_seconds": round(time.perf_counter() - started, 1), **body}
    (output / "result.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    brief = {key: {field: value for field, value in record[key].items()
                   if field not in ("history", "per_class", "confusion_matrix")}
             for key in ("pretraining", "fine_tune", "scratch") if key in record}
    for part in brief.values():
        part.get("batch_norm_spread", {}).pop("per_image_top_detection_score", None)
    print(json.dumps(brief, indent=1, default=str))
    print(f"Result: {output / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
