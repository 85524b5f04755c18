"""The classification task's configuration: every form field of the classification notebook, validated.

Build it with ``helpers.config.config_from_form(ClassificationConfig, preset, **form_fields)``;
fields left ``None`` (or empty) take the preset's value. ``quick`` is the CI-sized preset
(MobileNetV3-Small from scratch at 64 px for 2 epochs); ``default`` follows the published
white-blood-cell recipes (EfficientNet-B0 from ImageNet weights, head first, then the top
layers fine-tuned with batch normalisation frozen, class weights, label smoothing).
"""

from __future__ import annotations

import dataclasses

from helpers import errors, precision
from helpers.classification import backbones
from helpers.config import field

# In the order the notebooks' dropdowns list them (tools/notebook_cells.py derives them from here).
AUGMENTATIONS = ("basic", "randaugment", "augmix", "none")
MIXING = ("none", "cutmix", "mixup")


@dataclasses.dataclass
class ClassificationConfig:
    """Every setting of one classification training run (units in the help texts)."""

    images_dir: str = field("", "Folder of training images: one subfolder per class, or all images with labels_csv.")
    labels_csv: str = field("", "CSV with columns filename,label (and optionally group); empty = one subfolder "
                            "per class.")
    model_path: str = field("", "Folder where the run folder <model_path>/<model_name> is created.")
    model_name: str = field("", "Name of this run; reuse it to resume an interrupted run.")
    preset: str = field("default", "Named set of defaults for the fields left blank.", choices=("default", "quick"))
    backbone: str = field("efficientnetb0", "Feature extractor from keras.applications.",
                          choices=tuple(backbones.BACKBONES))
    pretrained: str = field("imagenet", "'imagenet' starts from published ImageNet weights; 'none' trains from "
                            "scratch.", choices=("imagenet", "none"))
    continue_from: str = field("", "Run folder of a trained classifier to continue training from (empty = no).")
    epochs: int = field(40, "Total passes over the training images (both phases).", minimum=1, maximum=10000)
    head_epochs: int = field(5, "Phase 1: epochs training only the new classification head (backbone frozen).",
                             minimum=0, maximum=10000)
    fine_tune_layers: int = field(100, "Phase 2: how many backbone layers, counted from the top, are trained "
                                  "(batch-norm layers stay frozen); 0 = keep the backbone frozen.",
                                  minimum=0, maximum=10000)
    batch_size: int = field(32, "Images per training step.", minimum=1, maximum=1024)
    learning_rate: float = field(1e-3, "Learning rate of phase 1 (and of training from scratch).",
                                 minimum=1e-7, maximum=1.0)
    fine_tune_learning_rate: float = field(1e-4, "Learning rate of phase 2 (fine-tuning).", minimum=1e-8, maximum=1.0)
    optimizer: str = field("adam", "Optimiser.", choices=("adam", "adamw", "lion"))
    weight_decay: float = field(1e-4, "Weight decay of AdamW and Lion.", minimum=0.0, maximum=1.0)
    label_smoothing: float = field(0.1, "Share of each target spread over the other classes (0 = none).",
                                   minimum=0.0, maximum=0.5)
    class_balance: str = field("class_weights", "'class_weights' weighs the loss by inverse class frequency; "
                               "'balanced_sampling' draws every class equally often; 'none'.",
                               choices=("class_weights", "balanced_sampling", "none"))
    image_size: int = field(224, "Images are resized to this square size in pixels.", minimum=32, maximum=1024)
    validation_fraction: float = field(0.15, "Share of the images held out for validation.", minimum=0.0,
                                       maximum=0.5)
    split_seed: int = field(42, "Seed of the random split and the augmentation.", minimum=0, maximum=2**31 - 1)
    augmentation: str = field("basic", "'basic' = flips, rotation, zoom, translation, contrast; 'randaugment' "
                              "and 'augmix' add those policies on top; 'none'.", choices=AUGMENTATIONS)
    mixing: str = field("none", "Batch mixing: 'cutmix' pastes patches between images, 'mixup' blends images; "
                        "labels are mixed in proportion.", choices=MIXING)
    rotation_degrees: float = field(180.0, "Largest random rotation in degrees (cells have no 'up').",
                                    minimum=0.0, maximum=180.0)
    zoom_fraction: float = field(0.1, "Largest random zoom in or out (0.1 = ±10 %).", minimum=0.0, maximum=0.5)
    translation_fraction: float = field(0.1, "Largest random shift as a share of the image side.", minimum=0.0,
                                        maximum=0.5)
    contrast_fraction: float = field(0.2, "Largest random contrast change (0.2 = ±20 %).", minimum=0.0,
                                     maximum=0.9)
    dropout: float = field(0.2, "Dropout before the classification layer.", minimum=0.0, maximum=0.9)
    reduce_lr_patience: int = field(3, "Epochs without a better validation balanced accuracy before the learning "
                                    "rate is divided by 5.", minimum=1, maximum=1000)
    early_stopping_patience: int = field(8, "Epochs without a better validation balanced accuracy before a "
                                         "phase stops (0 = never stop early).", minimum=0, maximum=1000)
    mixed_precision: str = field("auto", precision.HELP, choices=precision.CHOICES)
    steps_per_epoch: int = field(0, "Training steps per epoch (0 = one pass over the training images).",
                                 minimum=0, maximum=100000)
    minimum_images_per_class: int = field(10, "The data check flags classes with fewer images than this.",
                                          minimum=1, maximum=100000)

    PRESETS = {
        "default": {},
        "quick": {"backbone": "mobilenetv3small", "pretrained": "none", "epochs": 2, "head_epochs": 0,
                  "batch_size": 16, "image_size": 64, "learning_rate": 1e-3, "augmentation": "basic",
                  "validation_fraction": 0.2},
    }

    def check(self) -> None:
        """Cross-field rules (called by ``helpers.config.validate_config``)."""
        if self.head_epochs > self.epochs:
            raise errors.ConfigError(f"head_epochs: {self.head_epochs} is more than epochs ({self.epochs}). "
                                     f"Lower head_epochs or raise epochs.")

    @property
    def trains_from_scratch(self) -> bool:
        """True when no pretrained or earlier weights start the run (one phase, all layers trained)."""
        return self.pretrained == "none" and not self.continue_from
