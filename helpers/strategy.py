"""Which TensorFlow distribution strategy a training run uses (every task), chosen from the hardware.

* a Colab TPU runtime (``COLAB_TPU_ADDR`` / ``TPU_NAME`` set, or TPU devices visible):
  ``TPUStrategy`` through ``TPUClusterResolver``;
* several GPUs: ``MirroredStrategy`` over all of them (batches are split between GPUs);
* one GPU or a CPU: TensorFlow's default strategy (no distribution);
* one process of several training together (``helpers.training_cluster.cluster_role``: ``TF_CONFIG``
  or a Slurm job step with several tasks): ``MultiWorkerMirroredStrategy``, every worker holding the
  same weights and each batch split between all workers' devices. Keras shards the input with
  ``AutoShardPolicy.DATA``: our pipeline reads images from a list of paths (no files of records), so
  ``FILE`` sharding cannot apply; every worker runs the same seeded pipeline and keeps its share of each
  batch (the computation is divided, image decoding is not).

Several logical CPU devices (used by the tests) count like several GPUs when
``mirror_cpus=True`` is asked for.
"""

from __future__ import annotations

import functools
import os
import shutil

import tensorflow as tf

from helpers import environment, training_cluster

_TPU_ENVIRONMENT_VARIABLES = ("COLAB_TPU_ADDR", "TPU_NAME")
# First port of SlurmClusterResolver (TensorFlow's default); the tasks of one node use the next ones.
SLURM_PORT_BASE = int(os.environ.get("DL4CELLS_SLURM_PORT", "8888"))


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


def _slurm_cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
    """TensorFlow's ``SlurmClusterResolver`` for this ``srun`` step (one worker per task, ports from 8888).

    It reads ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_STEP_NODELIST`` and
    ``SLURM_STEP_TASKS_PER_NODE`` and shares a node's GPUs between its tasks (``CUDA_VISIBLE_DEVICES``,
    counted with ``nvidia-smi``). On nodes without NVIDIA GPUs it cannot count GPUs, so its cluster is
    handed on as a CPU-only ``SimpleClusterResolver``.
    """
    resolvers = tf.distribute.cluster_resolver
    if "CUDA_VISIBLE_DEVICES" in os.environ or shutil.which("nvidia-smi"):
        return resolvers.SlurmClusterResolver(port_base=SLURM_PORT_BASE)
    # Without GPUs: one dummy "GPU" per task so that the resolver numbers the ports; none is used.
    tasks = int(os.environ["SLURM_STEP_NUM_TASKS"])
    slurm = resolvers.SlurmClusterResolver(port_base=SLURM_PORT_BASE, gpus_per_node=tasks, gpus_per_task=1,
                                           auto_set_gpu=False)
    cluster = slurm.cluster_spec()
    return resolvers.SimpleClusterResolver(cluster, task_type=slurm.task_type, task_id=slurm.task_id,
                                           rpc_layer="grpc", num_accelerators={"GPU": 0})


def cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver | None:
    """The resolver of this process's training cluster (``TF_CONFIG`` or Slurm), or None on one machine."""
    role = training_cluster.cluster_role()
    if role is None:
        return None
    if role.source == "TF_CONFIG":
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return _slurm_cluster_resolver()


@functools.lru_cache(maxsize=None)
def _multi_worker_strategy() -> tf.distribute.Strategy:
    """``MultiWorkerMirroredStrategy`` over the cluster; created once per process (it starts a server)."""
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver())


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True unless ``strategy`` is a multi-worker strategy and this process is not its chief."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return bool(strategy.extended.should_checkpoint)


def choose_strategy(mirror_cpus: bool = False) -> tf.distribute.Strategy:
    """The distribution strategy for this runtime (see the module docstring).

    Args:
        mirror_cpus: use ``MirroredStrategy`` over logical CPU devices when there are
            several (only useful for testing the multi-device path without GPUs).

    Returns:
        A ``tf.distribute.Strategy``; the default strategy on one device.

    Raises:
        ConfigError: ``TF_CONFIG`` is malformed, or a Slurm job with several tasks was not started by ``srun``.
    """
    if training_cluster.cluster_role() is not None:
        return _multi_worker_strategy()
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
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return _describe_multi_worker(strategy)
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return f"Training on a TPU with {replicas} cores (TPUStrategy)."
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        devices = ", ".join(strategy.extended.worker_devices)
        return f"Training on {replicas} devices at once (MirroredStrategy: {devices}); each batch is split between them."
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "Training on one GPU."
    where = ("on Colab choose Runtime > Change runtime type > GPU." if environment.in_colab() else
             "on a workstation with an NVIDIA GPU, install TensorFlow with its CUDA libraries "
             '(pip install "tensorflow[and-cuda]>=2.20,<2.21", Linux).')
    return f"Training on the CPU ({os.cpu_count()} cores); no GPU was found. This is slow: {where}"


def _describe_multi_worker(strategy: tf.distribute.Strategy) -> str:
    """The sentence for ``MultiWorkerMirroredStrategy``: machines, devices, and which worker this is."""
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    role = training_cluster.cluster_role()
    index = role.index if role else resolver.task_id
    devices = strategy.extended.worker_devices
    kind = "GPU" if any("GPU" in device for device in devices) else "CPU"
    chief = "the chief, which writes the run folder" if is_chief(strategy) else "not the chief; its files are temporary"
    return (f"Training on {workers} machines at once (MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} "
            f"{kind} replicas in all; each batch is split between them); this is worker {index} ({chief}).")
