"""Online augmentation for classification, from Keras 3 preprocessing layers.

Applied to training batches inside the ``tf.data`` pipeline (never written to disk), on RGB
pixels in 0..255, float32 [batch, S, S, 3]:

* ``basic``: random horizontal and vertical flips, rotation (± ``rotation_degrees``), zoom,
  translation and contrast — a stained cell looks the same in any orientation;
* ``randaugment`` (Cubuk et al. 2020) or ``augmix`` (Hendrycks et al. 2020) add those
  policies after the basic ones;
* ``mixing``: ``cutmix`` (Yun et al. 2019) or ``mixup`` (Zhang et al. 2018) combine two images of
  a batch and their one-hot labels in proportion.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import keras
import numpy as np

from helpers.classification.config import ClassificationConfig

# The augmentation layers compute in float32 whatever the global mixed-precision policy (the model casts
# its inputs itself). Built under "mixed_float16" / "mixed_bfloat16" they would inherit it, and Keras's
# CutMix then fails ("Unsupported dtype" for tf.range in float16), MixUp multiplies float16 by float32
# (TypeError), and every augmented pixel and one-hot label is rounded to float16 before the model sees it.
PIPELINE_DTYPE = "float32"


def build_augmenter(config: ClassificationConfig) -> keras.Sequential | None:
    """The per-image augmentation layers of ``config.augmentation``, or None for ``"none"``."""
    if config.augmentation == "none":
        return None
    seed = config.split_seed
    layers = [keras.layers.RandomFlip("horizontal_and_vertical", seed=seed, dtype=PIPELINE_DTYPE)]
    if config.rotation_degrees > 0:
        layers.append(keras.layers.RandomRotation(config.rotation_degrees / 360.0, fill_mode="reflect", seed=seed + 1,
                                                  dtype=PIPELINE_DTYPE))
    if config.zoom_fraction > 0:
        layers.append(keras.layers.RandomZoom(config.zoom_fraction, fill_mode="reflect", seed=seed + 2,
                                              dtype=PIPELINE_DTYPE))
    if config.translation_fraction > 0:
        layers.append(keras.layers.RandomTranslation(config.translation_fraction, config.translation_fraction,
                                                     fill_mode="reflect", seed=seed + 3, dtype=PIPELINE_DTYPE))
    if config.contrast_fraction > 0:
        layers.append(keras.layers.RandomContrast(config.contrast_fraction, value_range=(0, 255), seed=seed + 4,
                                                  dtype=PIPELINE_DTYPE))
    if config.augmentation == "randaugment":
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed + 5,
                                                dtype=PIPELINE_DTYPE))
    elif config.augmentation == "augmix":
        layers.append(keras.layers.AugMix(value_range=(0, 255), seed=seed + 5, dtype=PIPELINE_DTYPE))
    return keras.Sequential(layers, name="augmentation")


def build_mixer(config: ClassificationConfig):
    """The batch-mixing layer of ``config.mixing`` (CutMix or MixUp), or None."""
    if config.mixing == "cutmix":
        return keras.layers.CutMix(factor=1.0, seed=config.split_seed + 6, dtype=PIPELINE_DTYPE)
    if config.mixing == "mixup":
        return keras.layers.MixUp(alpha=0.2, seed=config.split_seed + 6, dtype=PIPELINE_DTYPE)
    return None


def describe(config: ClassificationConfig) -> str:
    """One plain sentence naming the augmentation actually used (for the report and methods)."""
    if config.augmentation == "none":
        text = "No augmentation was applied."
    else:
        parts = ["random horizontal and vertical flips"]
        if config.rotation_degrees > 0:
            parts.append(f"rotations up to ±{config.rotation_degrees:g}°")
        if config.zoom_fraction > 0:
            parts.append(f"zoom up to ±{config.zoom_fraction * 100:g} %")
        if config.translation_fraction > 0:
            parts.append(f"shifts up to ±{config.translation_fraction * 100:g} % of the side")
        if config.contrast_fraction > 0:
            parts.append(f"contrast changes up to ±{config.contrast_fraction * 100:g} %")
        policy = {"randaugment": ", then RandAugment (2 operations, magnitude factor 0.5)",
                  "augmix": ", then AugMix (3 chains of depth 3)"}.get(config.augmentation, "")
        text = f"Training images were augmented on the fly with {', '.join(parts)}{policy}."
    if config.mixing == "cutmix":
        text += " Batches were mixed with CutMix (patches pasted between images, labels mixed by area)."
    elif config.mixing == "mixup":
        text += " Batches were mixed with MixUp (α = 0.2; images and labels blended)."
    return text


def preview(config: ClassificationConfig, image_paths: Sequence[pathlib.Path], labels: Sequence[str],
            output_path: pathlib.Path, versions: int = 5, loader: Callable | None = None) -> pathlib.Path:
    """Save a grid: each image as the model sees it, then ``versions`` augmented versions of it.

    Args:
        config: gives the augmentation settings and the image size.
        image_paths: a few training images.
        labels: their class names (row labels).
        output_path: the PNG to write.
        loader: ``(path, image_size) -> uint8 [S, S, 3]``; None = ``pipeline.load_resized``.
    """
    from helpers.classification import pipeline, plots

    loader = loader or pipeline.load_resized
    originals = [loader(path, config.image_size) for path in image_paths]
    augmenter = build_augmenter(config)
    batch = np.stack(originals).astype("float32")
    augmented = []
    for _ in range(versions):
        result = batch if augmenter is None else keras.ops.convert_to_numpy(augmenter(batch, training=True))
        augmented.append(np.clip(result, 0, 255).round().astype(np.uint8))
    rows = [[augmented[version][index] for version in range(versions)] for index in range(len(originals))]
    return plots.augmentation_preview(originals, rows, output_path, labels)
