"""Registry of the detection backbones offered on the form, and their pretrained weights.

Each entry names the Model Garden experiment it is built from, the input size it was
published at, and the HTTPS address of a COCO-trained RetinaNet checkpoint from Model Garden's
``official/vision/MODEL_GARDEN.md`` (never ``gs://``, which a notebook user cannot rely on).
A ``None`` checkpoint means "no published COCO checkpoint": the user must choose
``pretrained = "none"`` (train from scratch) explicitly; nothing silently falls back.
"""

from __future__ import annotations

import dataclasses
import pathlib

from helpers import errors


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone choice.

    Attributes:
        name: the form value, e.g. ``"resnet50_fpn"``.
        experiment: Model Garden experiment factory name the config starts from.
        model_overrides: dotted ``task.model`` overrides applied on top (e.g. backbone type).
        published_input_size: pixels (square) the checkpoint was trained at.
        checkpoint_url: HTTPS ``.tar.gz`` of a COCO-trained RetinaNet, or None.
        checkpoint_sha256: checksum recorded on first download (Model Garden publishes none).
        coco_box_ap: COCO box AP of that checkpoint as published, or None.
        licence: licence of the weights.
        description: one plain-language sentence for the form's help text.
    """

    name: str
    experiment: str
    model_overrides: dict
    published_input_size: int
    checkpoint_url: str | None
    checkpoint_sha256: str | None
    coco_box_ap: float | None
    licence: str
    description: str


# In the order the notebook's dropdown offers them, the default (DetectionConfig.backbone) first.
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="spinenet49_mobile",
            experiment="retinanet_mobile_coco",
            model_overrides={"backbone": {"type": "spinenet_mobile", "spinenet_mobile": {"model_id": "49"}}},
            published_input_size=384,
            checkpoint_url="https://storage.googleapis.com/tf_model_garden/vision/retinanet/spinenet49mobile.tar.gz",
            checkpoint_sha256=None,
            coco_box_ap=28.1,
            licence="Apache-2.0 (TF Model Garden)",
            description="Mobile SpineNet-49: small and fast, trains on a CPU; the choice for quick runs.",
        ),
        BackboneSpec(
            name="resnet50_fpn",
            experiment="retinanet_resnetfpn_coco",
            model_overrides={},
            published_input_size=640,
            checkpoint_url="https://storage.googleapis.com/tf_model_garden/vision/retinanet/retinanet-resnet50fpn.tar.gz",
            checkpoint_sha256=None,
            coco_box_ap=36.8,
            licence="Apache-2.0 (TF Model Garden)",
            description="ResNet-50 + FPN, the RetinaNet paper's and ZeroCostDL4Mic's default; best with a GPU.",
        ),
        BackboneSpec(
            name="spinenet49",
            experiment="retinanet_spinenet_coco",
            model_overrides={"backbone": {"type": "spinenet", "spinenet": {"model_id": "49"}}},
            published_input_size=640,
            checkpoint_url="https://storage.googleapis.com/tf_model_garden/vision/spinenet/spinenet-49-i640.tar.gz",
            checkpoint_sha256=None,
            coco_box_ap=44.2,
            licence="Apache-2.0 (TF Model Garden)",
            description="SpineNet-49, the most accurate COCO checkpoint offered; needs a GPU.",
        ),
        BackboneSpec(
            name="mobilenetv2_fpn",
            experiment="retinanet_resnetfpn_coco",
            model_overrides={"backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}}},
            published_input_size=384,
            checkpoint_url=None,
            checkpoint_sha256=None,
            coco_box_ap=None,
            licence="Apache-2.0 (TF Model Garden)",
            description="MobileNetV2 + FPN; no published COCO checkpoint, so it trains from scratch only.",
        ),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry for a form value; ConfigError listing the choices otherwise."""
    if name not in BACKBONES:
        raise errors.ConfigError(f"backbone: {name!r} is not offered. Choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


@dataclasses.dataclass
class PretrainedWeights:
    """COCO-trained RetinaNet weights on disk (downloaded once into the cache).

    Attributes:
        backbone: the registry name.
        url: where they came from.
        sha256: checksum of the downloaded archive (recorded on first download).
        archive: the ``.tar.gz`` in the cache.
        checkpoint_prefix: the TensorFlow checkpoint prefix inside the extracted archive.
        reused: True when the cache already held a verified copy.
    """

    backbone: str
    url: str
    sha256: str
    archive: pathlib.Path
    checkpoint_prefix: str
    reused: bool


def _checkpoint_step(index: pathlib.Path) -> int:
    """The step number of a ``ckpt-<step>.index`` file (-1 when its name carries none)."""
    digits = index.name[: -len(".index")].rpartition("-")[2]
    return int(digits) if digits.isdigit() else -1


def _find_checkpoint_prefix(folder: pathlib.Path, url: str) -> str:
    """The checkpoint prefix (``<prefix>.index`` file) under an extracted archive.

    Like Model Garden's ``RetinaNetTask.initialize`` given a folder, the latest checkpoint its
    ``checkpoint`` state file names (``tf.train.latest_checkpoint``); without one, the highest
    step (``ckpt-10`` after ``ckpt-9``, which sorting the names would get wrong).
    """
    import tensorflow as tf

    indexes = list(folder.rglob("*.index"))
    if not indexes:
        raise errors.DownloadError(f"{url}: the archive holds no TensorFlow checkpoint (*.index). Delete nothing; "
                                   f"report this address to the DL4Cells maintainers and set pretrained = 'none'.")
    for holder in sorted({index.parent for index in indexes}):
        latest = tf.train.latest_checkpoint(str(holder))
        if latest and pathlib.Path(latest + ".index").is_file():
            return latest
    return str(max(indexes, key=lambda index: (_checkpoint_step(index), str(index))).with_suffix(""))


def download_pretrained(spec: BackboneSpec, cache_dir: str | pathlib.Path | None = None,
                        progress: bool = True) -> PretrainedWeights:
    """Download (or reuse from the cache) the COCO-trained checkpoint of a backbone, and extract it.

    Args:
        spec: the registry entry; ``spec.checkpoint_url`` must be set.
        cache_dir: the download cache; ``helpers.downloads.default_cache_dir()`` (on Drive in Colab) when None.
        progress: show a download progress bar.

    Raises:
        ConfigError: the backbone has no published checkpoint.
        DownloadError: offline, or the download is corrupted (plain message with what to do).
    """
    from helpers import downloads

    if spec.checkpoint_url is None:
        raise errors.ConfigError(f"pretrained: backbone {spec.name!r} has no published COCO checkpoint. Set "
                                 f"pretrained = 'none' to train from scratch, or choose another backbone.")
    cache = pathlib.Path(cache_dir) if cache_dir is not None else downloads.default_cache_dir()
    download = downloads.cached_download(spec.checkpoint_url, cache / "detection", sha256=spec.checkpoint_sha256,
                                         progress=progress)
    extracted = cache / "detection" / f"{spec.name}-{download.sha256[:12]}"
    marker = extracted / ".extracted"
    if not marker.is_file():
        downloads.safe_extract(download.path, extracted)
        marker.write_text(download.sha256, encoding="utf-8")
    return PretrainedWeights(backbone=spec.name, url=spec.checkpoint_url, sha256=download.sha256,
                             archive=download.path, checkpoint_prefix=_find_checkpoint_prefix(extracted, spec.checkpoint_url),
                             reused=download.reused)


def load_pretrained(model, spec: BackboneSpec, pretrained: PretrainedWeights) -> list[str]:
    """Load the backbone (and decoder) weights of a COCO checkpoint into a freshly built RetinaNet.

    Model Garden's trainer saves ``backbone``, ``decoder`` and ``head`` at the checkpoint's root
    (``model.checkpoint_items``); we read backbone and decoder exactly as Model Garden's own
    ``RetinaNetTask.initialize`` does for ``init_checkpoint_modules = ['backbone', 'decoder']``.
    The head is left freshly initialised: its last layer depends on the number of classes.

    Returns:
        The modules loaded, e.g. ``["backbone", "decoder"]``.

    Raises:
        ModelError: the checkpoint does not fit this backbone.
    """
    import tensorflow as tf

    # Model Garden reads ``tf.train.Checkpoint(backbone=..., decoder=...)``; a SpineNet RetinaNet
    # has no decoder object (``identity`` decoder = None), so there it reads the backbone only.
    # The decoder is read whenever it exists, frozen (no trainable weights) or not.
    modules = {"backbone": model.backbone}
    if model.decoder is not None:
        modules["decoder"] = model.decoder
    try:
        status = tf.train.Checkpoint(**modules).read(pretrained.checkpoint_prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise errors.ModelError(f"{pretrained.checkpoint_prefix}: the COCO weights do not fit backbone {spec.name!r} "
                                f"({str(error).splitlines()[0][:200]}). Set pretrained = 'none' to train from "
                                f"scratch, and report this to the DL4Cells maintainers.") from None
    return list(modules)
