"""Training on several machines at once: which worker this process is, and where it may write.

A process is one worker of a training cluster when

* ``TF_CONFIG`` (TensorFlow's JSON variable) names a cluster of more than one ``chief``/``worker``
  task, e.g. ``{"cluster": {"worker": ["node1:2222", "node2:2222"]}, "task": {"type": "worker", "index": 0}}``;
* or, without ``TF_CONFIG``, it runs inside a Slurm job (``SLURM_JOB_ID``) with several tasks
  (``SLURM_STEP_NUM_TASKS``, set by ``srun``; else ``SLURM_NTASKS``), its index being ``SLURM_PROCID``.

The chief (``chief`` task, or worker 0 when there is none; Slurm task 0) writes the run folder like a
single-process run. Every other worker trains in lockstep but writes its own run folder in a temporary
folder, deleted when the process ends (TensorFlow's pattern for ``MultiWorkerMirroredStrategy``:
non-chief workers save to temporary places), so two processes never write the same file. To resume
exactly where the chief stands, a worker first copies the chief's ``checkpoints/``, ``split.json`` and
``history.csv`` into that folder (read only; nothing of the user's is changed).

``helpers.strategy`` turns the same environment into a ``MultiWorkerMirroredStrategy``. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

from helpers import config as config_module
from helpers import errors, runs

# The chief's files a worker needs to resume at the chief's epoch (its checkpoints, the split, the history).
RESUME_RECORD = ("checkpoints", "split.json", "history.csv")
# This process's temporary worker run folders, kept alive until the process ends (then TemporaryDirectory deletes them).
_TEMPORARY_FOLDERS: list = []


@dataclasses.dataclass(frozen=True)
class ClusterRole:
    """This process's place in a training cluster.

    Attributes:
        workers: how many processes train together (chief included).
        index: this process's number, 0..workers-1 (0 = the chief under Slurm and plain worker lists).
        is_chief: True for the one process that writes the run folder.
        source: ``"TF_CONFIG"`` or ``"Slurm"``, where the cluster was read from.
    """

    workers: int
    index: int
    is_chief: bool
    source: str


def _role_from_tf_config(text: str) -> ClusterRole | None:
    """The role that the ``TF_CONFIG`` JSON gives, or None when it names a single task."""
    try:
        value = json.loads(text)
        cluster, task = value.get("cluster", {}), value.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as error:
        raise errors.ConfigError(f"TF_CONFIG: not the JSON TensorFlow expects ({error}). Set it like "
                                 f'{{"cluster": {{"worker": ["host1:2222", "host2:2222"]}}, "task": '
                                 f'{{"type": "worker", "index": 0}}}}, or unset it to train on one machine.') from None
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    if len(chiefs) + len(workers) <= 1:
        return None
    if kind not in ("chief", "worker"):
        raise errors.ConfigError(f"TF_CONFIG: task type {kind!r}; a training process must be 'chief' or 'worker'. "
                                 f"Correct TF_CONFIG's \"task\".")
    position = index if kind == "chief" else len(chiefs) + index
    return ClusterRole(workers=len(chiefs) + len(workers), index=position, is_chief=position == 0, source="TF_CONFIG")


def _role_from_slurm(environment: dict) -> ClusterRole | None:
    """The role of a task of a Slurm job with several tasks, or None outside such a job."""
    if not environment.get("SLURM_JOB_ID"):
        return None
    tasks = int(environment.get("SLURM_STEP_NUM_TASKS") or environment.get("SLURM_NTASKS") or 1)
    if tasks <= 1:
        return None
    if not environment.get("SLURM_STEP_NUM_TASKS"):
        raise errors.ConfigError(f"Slurm: this job has {tasks} tasks but the command was not started by srun. Start "
                                 f"it as `srun dl4cells ...` (one process per task), or ask for --ntasks=1.")
    index = int(environment.get("SLURM_PROCID", 0))
    return ClusterRole(workers=tasks, index=index, is_chief=index == 0, source="Slurm")


def cluster_role(environment: dict | None = None) -> ClusterRole | None:
    """This process's role when it is one of several training processes, else None (``TF_CONFIG`` wins over Slurm).

    Args:
        environment: the variables to read (None = ``os.environ``).

    Raises:
        ConfigError: ``TF_CONFIG`` is malformed, or a Slurm job with several tasks was not started by ``srun``.
    """
    environment = os.environ if environment is None else environment
    if environment.get("TF_CONFIG", "").strip():
        return _role_from_tf_config(environment["TF_CONFIG"])
    return _role_from_slurm(environment)


def _copy_resume_record(chief_root: pathlib.Path, worker_root: pathlib.Path) -> None:
    """Copy the chief's checkpoints, split and history (if it has trained before) into the worker's folder."""
    checkpoints = chief_root / "checkpoints"
    if not (chief_root / "config.yaml").is_file() or not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return  # a fresh run: the chief writes nothing training needs before the first epoch, which waits for us
    for name in RESUME_RECORD:
        source, target = chief_root / name, worker_root / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.tmp", "*.tmp.keras"), dirs_exist_ok=True)
        elif source.is_file():
            shutil.copyfile(source, target)


def open_run_folder(model_path: str | pathlib.Path, model_name: str, config: Any,
                    role: ClusterRole | None = None) -> runs.RunFolder:
    """``runs.open_run_folder`` for this process: the user's run folder, or a temporary one on a non-chief worker.

    Args:
        model_path, model_name, config: as ``runs.open_run_folder``.
        role: this process's role (None = ``cluster_role()``).

    Returns:
        The chief's (or a single process's) run folder; on another worker a run folder of the same name in
        a temporary folder, holding the chief's resume record, deleted when the process ends.
    """
    role = role or cluster_role()
    if role is None or role.is_chief:
        return runs.open_run_folder(model_path, model_name, config)
    temporary = tempfile.TemporaryDirectory(prefix=f"dl4cells_worker{role.index}_")
    _TEMPORARY_FOLDERS.append(temporary)  # deleted at exit (TemporaryDirectory's own finaliser)
    worker_root = pathlib.Path(temporary.name) / str(model_name).strip()
    worker_root.mkdir()
    _copy_resume_record(pathlib.Path(model_path).expanduser() / str(model_name).strip(), worker_root)
    if (worker_root / "checkpoints").is_dir():
        config_module.save_config(config, worker_root / "config.yaml")  # makes the copy a resumable run
    run = runs.open_run_folder(temporary.name, model_name, config)
    print(f"Worker {role.index} of {role.workers}: the chief writes the run folder; this worker's files go to "
          f"{run.root} (deleted at the end).")
    return run
