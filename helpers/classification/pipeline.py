"""``tf.data`` input pipelines that stream images from their files (never the whole set in memory).

Images are decoded with ``helpers.images.read_image`` (so TIFF and 16-bit images work as in the
rest of the project) and resized to S×S pixels (aspect ratio not kept: cell crops are about
square) by ``load_resized``, or by another ``loader(path, image_size) -> uint8 [S, S, 3]`` given
(grading's fundus preprocessing is one). Every pipeline yields float32 images [batch, S, S, 3]
with RGB values 0..255; the model does its own preprocessing.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from helpers import images


def load_resized(path: str | pathlib.Path, image_size: int) -> np.ndarray:
    """uint8 [S, S, 3]: the image file read as RGB and resized (area interpolation when shrinking)."""
    import cv2

    pixels = images.read_image(path)
    shrinking = pixels.shape[0] > image_size or pixels.shape[1] > image_size
    return cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _load_tensor(path: tf.Tensor, image_size: int, loader: Callable = load_resized) -> tf.Tensor:
    """float32 [S, S, 3] image tensor from a path tensor (decoded on the host by numpy through ``loader``)."""
    pixels = tf.numpy_function(lambda name: loader(name.decode("utf-8"), image_size), [path], tf.uint8)
    pixels.set_shape((image_size, image_size, 3))
    return tf.cast(pixels, tf.float32)


def _shuffled_repeated(paths, labels, weights, seed: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((paths, labels, weights)).shuffle(
        len(paths), seed=seed, reshuffle_each_iteration=True).repeat()


def _balanced(paths, labels, weights, seed: int, sampling_weights: Sequence[float] | None = None) -> tf.data.Dataset:
    """Each class drawn with probability ∝ its ``sampling_weights`` entry (None = equally).

    Each class's images are shuffled and repeated; classes without images are left out and the
    others share their probability.
    """
    present = sorted(set(labels.tolist()))
    per_class = []
    for label in present:
        chosen = labels == label
        per_class.append(_shuffled_repeated(paths[chosen], labels[chosen], weights[chosen], seed + int(label)))
    shares = None
    if sampling_weights is not None:
        chosen_weights = np.asarray([sampling_weights[label] for label in present], dtype=np.float64)
        shares = (chosen_weights / chosen_weights.sum()).tolist()
    return tf.data.Dataset.sample_from_datasets(per_class, weights=shares, seed=seed)


def training_dataset(paths: Sequence[str | pathlib.Path], label_indices: Sequence[int], number_of_classes: int,
                     image_size: int, batch_size: int, seed: int, class_weights: Sequence[float] | None = None,
                     balanced_sampling: bool = False, augmenter=None, mixer=None, loader: Callable = load_resized,
                     sampling_weights: Sequence[float] | None = None) -> tf.data.Dataset:
    """An endless, shuffled stream of training batches.

    Args:
        paths: image files; label_indices: their class indices (0..classes-1).
        class_weights: per class, the loss weight of its images (None = 1 for all).
        balanced_sampling: draw every class equally often (or per ``sampling_weights``) instead of in proportion.
        augmenter: a Keras layer applied to each batch in training mode, or None.
        mixer: a CutMix/MixUp layer applied to the batch and its one-hot labels, or None.
        loader: ``(path, image_size) -> uint8 [S, S, 3]`` reading one image.
        sampling_weights: with ``balanced_sampling``, per class its relative chance of being drawn.

    Yields:
        (images float32 [B, S, S, 3] 0..255, targets float32 [B, classes] one-hot or mixed,
        sample weights float32 [B]).
    """
    paths = np.array([str(path) for path in paths])
    labels = np.asarray(label_indices, dtype=np.int32)
    weights_per_class = np.asarray(class_weights if class_weights is not None else [1.0] * number_of_classes,
                                   dtype=np.float32)
    weights = weights_per_class[labels]
    if balanced_sampling:
        dataset = _balanced(paths, labels, weights, seed, sampling_weights)
    else:
        dataset = _shuffled_repeated(paths, labels, weights, seed)
    dataset = dataset.map(lambda path, label, weight: (_load_tensor(path, image_size, loader),
                                                       tf.one_hot(label, number_of_classes), weight),
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=len(paths) >= batch_size)
    if augmenter is not None:
        dataset = dataset.map(lambda batch, target, weight: (augmenter(batch, training=True), target, weight),
                              num_parallel_calls=tf.data.AUTOTUNE)
    if mixer is not None:
        dataset = dataset.map(lambda batch, target, weight: _mix(mixer, batch, target, weight),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _mix(mixer, batch, target, weight):
    mixed = mixer({"images": batch, "labels": target}, training=True)
    return mixed["images"], mixed["labels"], weight


def evaluation_dataset(paths: Sequence[str | pathlib.Path], image_size: int, batch_size: int,
                       loader: Callable = load_resized) -> tf.data.Dataset:
    """Batches of images in the given order, once, without augmentation: float32 [B, S, S, 3] 0..255."""
    paths = [str(path) for path in paths]
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(lambda path: _load_tensor(path, image_size, loader),
                                                            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(number_of_images: int, batch_size: int, configured: int = 0) -> int:
    """Training steps per epoch: ``configured`` when > 0, else one pass over the images (at least 1)."""
    return configured if configured > 0 else max(1, math.ceil(number_of_images / batch_size))


def class_weights(label_indices: Sequence[int], number_of_classes: int) -> list[float]:
    """Inverse-frequency class weights, n_images / (n_classes × n_images_of_class) (scikit-learn's 'balanced').

    A class absent from ``label_indices`` gets weight 0 (it contributes no images anyway).
    """
    counts = np.bincount(np.asarray(label_indices, dtype=np.int64), minlength=number_of_classes)
    total = counts.sum()
    return [float(total / (number_of_classes * count)) if count else 0.0 for count in counts]
