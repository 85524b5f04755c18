"""Registry of the detection backbones offered on the form, and their pretrained weights.

Each entry names the Model Garden experiment it is built from, the input size it was
published at, and the HTTPS address of a COCO-trained RetinaNet checkpoint from Model Garden's
``official/vision/MODEL_GARDEN.md`` (never ``gs://``, which a notebook user cannot rely on).
A ``None`` checkpoint means "no published COCO checkpoint": the user must choose
``pretrained = "none"`` (train from scratch) explicitly; nothing silently falls back.
"""

from __future__ import annotations

import dataclasses

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


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
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
