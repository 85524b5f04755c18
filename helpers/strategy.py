"""Which TensorFlow distribution strategy a training run uses (every task), chosen from the hardware.

* a Colab TPU runtime (``COLAB_TPU_ADDR`` / ``TPU_NAME`` set, or TPU devices visible):
  ``TPUStrategy`` through ``TPUClusterResolver``;
* several GPUs: ``MirroredStrategy`` over all of them (batches are split between GPUs);
* one GPU or a CPU: TensorFlow's default strategy (no distribution).

Several logical CPU devices (used by the tests) count like several GPUs when
``mirror_cpus=True`` is asked for.
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf

_TPU_ENVIRONMENT_VARIABLES = ("COLAB_TPU_ADDR", "TPU_NAME")


def _tpu_requested() -> bool:
    """True on a Colab/Cloud TPU runtime (checked without touching the TPU)."""
    return any(os.environ.get(name) for name in _TPU_ENVIRONMENT_VARIABLES)


def accelerator_kind() -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: the fastest device kind this runtime offers."""
    if _tpu_requested() or tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return "cpu"


@functools.lru_cache(maxsize=None)
def _connect_tpu() -> tf.distribute.Strategy:
    """Connect to the TPU once per process (a second initialisation would fail)."""
    address = os.environ.get("TPU_NAME", "")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def choose_strategy(mirror_cpus: bool = False) -> tf.distribute.Strategy:
    """The distribution strategy for this runtime (see the module docstring).

    Args:
        mirror_cpus: use ``MirroredStrategy`` over logical CPU devices when there are
            several (only useful for testing the multi-device path without GPUs).

    Returns:
        A ``tf.distribute.Strategy``; the default strategy on one device.
    """
    if accelerator_kind() == "tpu":
        return _connect_tpu()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if mirror_cpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in cpus])
    return tf.distribute.get_strategy()


def describe_strategy(strategy: tf.distribute.Strategy | None = None) -> str:
    """One plain sentence saying what hardware training will use, e.g. for the notebook."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return f"Training on a TPU with {replicas} cores (TPUStrategy)."
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        devices = ", ".join(strategy.extended.worker_devices)
        return f"Training on {replicas} devices at once (MirroredStrategy: {devices}); each batch is split between them."
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "Training on one GPU."
    return (f"Training on the CPU ({os.cpu_count()} cores); no GPU was found. This is slow: on Colab choose "
            f"Runtime > Change runtime type > GPU.")
