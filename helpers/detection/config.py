"""The detection task's configuration: every form field of the detection notebook, validated.

Build it with ``helpers.config.config_from_form(DetectionConfig, preset, **form_fields)``;
fields left ``None`` take the preset's value. ``quick`` is the CI-sized preset (a small
backbone at 256 px for a couple of epochs); ``default`` is what a user on a Colab GPU should
start from.
"""

from __future__ import annotations

import dataclasses

from helpers import errors, precision
from helpers.config import field
from helpers.detection import backbones


@dataclasses.dataclass
class DetectionConfig:
    """Every setting of one detection training run (units in the help texts)."""

    images_dir: str = field("", "Folder of training images (PNG, JPEG, BMP or TIFF).")
    annotations_dir: str = field("", "Folder of PASCAL VOC .xml files (one per image, same file stem), or one COCO "
                                 "or BBBC041 .json file.")
    model_path: str = field("", "Folder where the run folder <model_path>/<model_name> is created.")
    model_name: str = field("", "Name of this run; reuse it to resume an interrupted run.")
    preset: str = field("default", "Named set of defaults for the fields left blank.",
                        choices=("default", "quick"))
    backbone: str = field("spinenet49_mobile", "Feature extractor.", choices=tuple(backbones.BACKBONES))
    pretrained: str = field("coco", "'coco' starts from published COCO weights; 'none' trains from scratch.",
                            choices=("coco", "none"))
    continue_from: str = field("", "Run folder of a trained model to continue training from (empty = no).")
    epochs: int = field(50, "Passes over the training images.", minimum=1, maximum=10000)
    batch_size: int = field(8, "Images per training step.", minimum=1, maximum=256)
    learning_rate: float = field(1e-3, "Peak learning rate of the optimiser.", minimum=1e-7, maximum=1.0)
    optimizer: str = field("adam", "Optimiser.", choices=("adam", "sgd"))
    learning_rate_schedule: str = field("cosine", "'cosine' = linear warm-up then cosine decay; 'constant'.",
                                        choices=("cosine", "constant"))
    warmup_epochs: float = field(1.0, "Epochs of linear learning-rate warm-up (cosine schedule).",
                                 minimum=0.0, maximum=100.0)
    image_size: int = field(384, "Side of the square network input (the window) in pixels, a multiple of 128. "
                            "Images larger than one window at the pixel scale are cut into overlapping windows.",
                            minimum=128, maximum=1536)
    pixel_scale: str = field("auto", "Network pixels per image pixel: 1 = images at their own resolution, 0.5 = "
                             "shrunk by half. 'auto' chooses it from the annotated box sizes so that the smallest "
                             "class is large enough for the model (printed by the data check).")
    validation_fraction: float = field(0.15, "Share of the annotated images held out for validation.",
                                       minimum=0.0, maximum=0.5)
    split_seed: int = field(42, "Seed of the random train/validation split and augmentation.", minimum=0,
                            maximum=2**31 - 1)
    augmentation_factor: int = field(1, "Augmented copies per training image written to the run folder "
                                     "(1 = none).", minimum=1, maximum=8)
    rare_class_boost: float = field(0.0, "Extra augmented copies for images with rare classes (0 = off).",
                                    minimum=0.0, maximum=4.0)
    random_flip: bool = field(True, "Random horizontal flips and scale jitter while training.")
    classification_loss_weight: float = field(1.0, "Weight of the focal (class) loss.", minimum=0.0,
                                              maximum=100.0)
    box_loss_weight: float = field(50.0, "Weight of the box regression loss (Model Garden default 50).",
                                   minimum=0.0, maximum=1000.0)
    box_iou_loss_weight: float = field(0.0, "Weight of an extra GIoU loss on the decoded boxes of positive anchors, "
                                            "next to the box loss (0 = off, Model Garden's loss).", minimum=0.0,
                                       maximum=100.0)
    focal_alpha: float = field(0.25, "Focal-loss alpha: weight of positive anchors.", minimum=0.0, maximum=1.0)
    focal_gamma: float = field(1.5, "Focal-loss gamma: how strongly easy examples are down-weighted.",
                               minimum=0.0, maximum=10.0)
    remove_background: bool = field(False, "Blank the background by Otsu thresholding (blood smears).")
    score_threshold: float = field(0.3, "Detections below this confidence are not reported.",
                                   minimum=0.0, maximum=1.0)
    nms_iou_threshold: float = field(0.5, "Overlapping detections above this IoU are merged (NMS).",
                                     minimum=0.05, maximum=1.0)
    max_detections: int = field(100, "Most detections kept per image.", minimum=1, maximum=1000)
    mixed_precision: str = field("auto", precision.HELP, choices=precision.CHOICES)
    steps_per_epoch: int = field(0, "Training steps per epoch (0 = one pass over the training images).",
                                 minimum=0, maximum=100000)
    validation_interval: int = field(0, "Validate every N epochs (and always in the last tenth of the epochs). "
                                        "0 = automatic: every epoch on a GPU or TPU; on a CPU every "
                                        "⌈epochs / 4⌉ epochs.", minimum=0, maximum=1000)

    PRESETS = {
        "default": {},
        "quick": {"backbone": "spinenet49_mobile", "pretrained": "none", "epochs": 2, "batch_size": 2,
                  "image_size": 256, "learning_rate": 1e-3, "warmup_epochs": 0.5, "steps_per_epoch": 0},
    }

    def check(self) -> None:
        """Cross-field rules (called by ``helpers.config.validate_config``)."""
        if self.image_size % 128:
            raise errors.ConfigError(f"image_size: {self.image_size} is not a multiple of 128 (RetinaNet levels 3–7 "
                                     f"need it). Use e.g. {max(128, round(self.image_size / 128) * 128)}.")
        from helpers.detection import tiling

        try:
            scale = tiling.parse_scale(self.pixel_scale)
        except ValueError:
            raise errors.ConfigError(f"pixel_scale: {self.pixel_scale!r} is neither 'auto' nor a number. Type auto, "
                                     f"or a number such as 1 or 0.5.") from None
        if scale is not None and not 0.01 <= scale <= 8:
            raise errors.ConfigError(f"pixel_scale: {scale:g} is outside 0.01–8. Type auto, or a number such as 1 "
                                     f"(images at their own resolution) or 0.5 (shrunk by half).")
        spec = backbones.get_backbone(self.backbone)
        if self.pretrained == "coco" and spec.checkpoint_url is None and not self.continue_from:
            raise errors.ConfigError(f"pretrained: backbone {self.backbone!r} has no published COCO checkpoint. "
                                     f"Set pretrained = 'none' to train from scratch, or choose another backbone.")
