"""Training on several machines: the cluster role from TF_CONFIG / Slurm, and two worker processes training together.

The two-process test starts two CPU processes on 127.0.0.1 (``TF_CONFIG`` each), which train one
classifier through the notebook's session steps (``MultiWorkerMirroredStrategy``), and checks that
they end with the same weights, that the chief alone wrote the run folder, and that the other worker's
temporary run folder is gone.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import config as config_module
from helpers import errors, runs, training_cluster
from helpers.classification.config import ClassificationConfig

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
# A worker whose partner died waits for it at every step: the bound ends such a test. Not a speed check:
# the detection test takes about 450 s on an idle 2-core machine, and 600 s ended it while other jobs
# shared the cores (2026-12-07); CI machines are shared too.
WORKER_SECONDS = 1500

# What each worker process runs: the notebook's steps 1-4, then its final weights saved to argv[2].
WORKER_SCRIPT = """
import sys
import numpy as np
from helpers.classification import workflow
data, weights_file, models = sys.argv[1:4]
session = workflow.start("quick", images_dir=data, model_path=models, model_name="run", image_size=32, epochs=1,
                         batch_size=8, steps_per_epoch=2)
session.check_data()
session.prepare_backbone()
session.train()
model = session.training.model
np.savez(weights_file, trainable=np.array([w.path for w in model.trainable_weights]),
         **{w.path: np.asarray(w) for w in model.weights})
print("RUN_ROOT", session.run.root, flush=True)
print("STRATEGY", session.training.strategy, flush=True)
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def _tf_config(index: int, ports: list[int]) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


# ----- the role, from the environment (no TensorFlow) ---------------------------------------------------


def test_tf_config_names_the_chief_and_the_workers():
    assert training_cluster.cluster_role({"TF_CONFIG": _tf_config(0, [1, 2])}) == training_cluster.ClusterRole(
        workers=2, index=0, is_chief=True, source="TF_CONFIG")
    assert not training_cluster.cluster_role({"TF_CONFIG": _tf_config(1, [1, 2])}).is_chief
    with_chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}})
    assert training_cluster.cluster_role({"TF_CONFIG": with_chief}) == training_cluster.ClusterRole(2, 1, False, "TF_CONFIG")
    assert training_cluster.cluster_role({"TF_CONFIG": _tf_config(0, [1])}) is None  # one task: not a cluster
    assert training_cluster.cluster_role({}) is None
    with pytest.raises(errors.ConfigError, match="TF_CONFIG"):
        training_cluster.cluster_role({"TF_CONFIG": "{not json"})


def test_slurm_tasks_started_by_srun_are_workers_and_task_0_is_the_chief():
    step = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}
    assert training_cluster.cluster_role(step) == training_cluster.ClusterRole(2, 1, False, "Slurm")
    assert training_cluster.cluster_role({**step, "SLURM_PROCID": "0"}).is_chief
    assert training_cluster.cluster_role({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
    with pytest.raises(errors.ConfigError, match="srun"):  # the batch script itself, not a task of srun
        training_cluster.cluster_role({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"})
    assert training_cluster.cluster_role({**step, "TF_CONFIG": _tf_config(0, [1, 2])}).source == "TF_CONFIG"


def test_slurm_resolver_lists_one_worker_per_task_on_nodes_without_gpus(monkeypatch):
    from helpers import strategy

    for name, value in {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2",
                        "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(strategy.shutil, "which", lambda name: None)  # no nvidia-smi on this node
    resolver = strategy.cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["node01:8888", "node02:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators().get("GPU", 0) == 0


def test_a_worker_resumes_from_a_copy_of_the_chiefs_record_and_never_writes_there(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    config = config_module.config_from_form(ClassificationConfig, "quick", images_dir=str(tmp_path),
                                            model_path=str(tmp_path / "models"), model_name="run")
    chief = runs.open_run_folder(config.model_path, config.model_name, config)
    (chief.checkpoints / "state.json").write_text('{"epochs_completed": 1}', encoding="utf-8")
    chief.split_path.write_text("{}", encoding="utf-8")
    before = {path: path.stat().st_mtime_ns for path in chief.root.rglob("*")}
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    worker = training_cluster.open_run_folder(config.model_path, "run", config, training_cluster.ClusterRole(2, 1, False, "TF_CONFIG"))
    assert worker.root.parent.parent == tmp_path / "temporary" and worker.resumed
    assert (worker.checkpoints / "state.json").read_text(encoding="utf-8") == '{"epochs_completed": 1}'
    assert worker.split_path.is_file()
    assert {path: path.stat().st_mtime_ns for path in chief.root.rglob("*")} == before
    chief_again = training_cluster.open_run_folder(config.model_path, "run", config, training_cluster.ClusterRole(2, 0, True, "TF_CONFIG"))
    assert chief_again.root == chief.root


def test_grading_sessions_of_a_non_chief_worker_write_to_a_temporary_run_folder(tmp_path, monkeypatch):
    from helpers.grading import demo_data, workflow

    images_dir, labels_csv = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=1, num_grades=3,
                                                         image_size=32)
    monkeypatch.setenv("TF_CONFIG", _tf_config(1, [1, 2]))
    session = workflow.start("quick", images_dir=str(images_dir), labels_csv=str(labels_csv), num_grades=3,
                             referable_threshold=1, model_path=str(tmp_path / "models"), model_name="run")
    assert (session.run.root / "config.yaml").is_file() and tmp_path not in session.run.root.parents
    assert not (tmp_path / "models").exists()  # the chief makes the user's run folder, this worker does not


# ----- two processes training together ---------------------------------------------------------------


def train_on_two_workers(tmp_path: pathlib.Path, script: str, data_arguments: list[str]) -> tuple[list[str], list]:
    """Run ``script`` as two workers of one TF_CONFIG cluster on 127.0.0.1; check what both must show.

    Returns:
        (the two processes' outputs, their final weights as two ``np.load`` archives).
    """
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    ports = _free_ports(2)
    processes = []
    for index in range(2):
        environment = {**os.environ, "TF_CONFIG": _tf_config(index, ports), "TMPDIR": str(temporary),
                       "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                       "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
        environment.pop("SLURM_JOB_ID", None)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", script, *data_arguments, str(tmp_path / f"weights_{index}.npz"),
             str(tmp_path / "models")], cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=WORKER_SECONDS)[0])
    finally:
        for process in processes:  # never leave a worker waiting for its peer
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    roots = [next(line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("RUN_ROOT"))
             for output in outputs]
    assert roots[0] == str(tmp_path / "models" / "run")
    assert not pathlib.Path(roots[1]).exists() and not any(temporary.iterdir())  # the worker's files are gone
    assert "Training on 2 machines at once (MultiWorkerMirroredStrategy" in outputs[0]
    assert "this is worker 0 (the chief" in outputs[0] and "this is worker 1 (not the chief" in outputs[1]
    return outputs, [np.load(tmp_path / f"weights_{index}.npz") for index in range(2)]


@pytest.mark.slow
def test_two_worker_processes_train_the_same_classifier_and_only_the_chief_writes(tmp_path):
    from helpers.classification import demo_data

    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=6, image_size=32)
    _, (chief, worker) = train_on_two_workers(tmp_path, WORKER_SCRIPT, [str(data)])
    trainable = list(chief["trainable"])
    assert trainable and all(np.array_equal(chief[name], worker[name]) for name in trainable)
    # Batch-norm moving statistics are each worker's own (Keras's batch norm is not synchronised): the chief's are kept.
    run = tmp_path / "models" / "run"
    for name in ("config.yaml", "split.json", "history.csv", "label_map.json", "training_report.pdf",
                 "checkpoints/best.keras", "checkpoints/state.json", "exported_model"):
        assert (run / name).exists(), name
    assert len((run / "history.csv").read_text(encoding="utf-8").splitlines()) == 2  # header + 1 epoch, written once
    assert not list(run.rglob("*.tmp*"))


# The detection notebook's steps on each worker: 2 epochs of 2 steps, validated, so that the best-epoch
# decision and both checkpoint saves run on both workers; then every weight (batch norm included) saved.
DETECTION_WORKER_SCRIPT = """
import sys
import numpy as np
from helpers.detection import workflow
data, weights_file, models = sys.argv[1:4]
session = workflow.start("quick", images_dir=data + "/images", annotations_dir=data + "/annotations", model_path=models,
                         model_name="run", image_size=128, epochs=2, batch_size=4, steps_per_epoch=2,
                         validation_interval=1)
session.check_data()
session.train()
np.savez(weights_file, *[np.asarray(weight) for weight in session.training.model.weights])
print("RUN_ROOT", session.run.root, flush=True)
"""


@pytest.mark.slow
def test_two_worker_processes_train_the_same_detector_and_only_the_chief_writes(tmp_path):
    from helpers.detection import demo_data

    data = demo_data.make_detection_demo(tmp_path / "data", number_of_images=8, image_size=(160, 128))
    outputs, (chief, worker) = train_on_two_workers(tmp_path, DETECTION_WORKER_SCRIPT, [str(data)])
    # Model Garden's batch norm is synchronised over the replicas: every weight agrees, moving statistics too.
    assert len(chief.files) > 500 and all(np.array_equal(chief[name], worker[name]) for name in chief.files)
    assert outputs[0].count("validation mAP50") == 2 and outputs[1].count("validation mAP50") == 2
    run = tmp_path / "models" / "run"
    for name in ("config.yaml", "split.json", "history.csv", "pixel_scale.json", "training_report.pdf",
                 "checkpoints/checkpoint", "checkpoints/best/checkpoint", "exported_model/saved_model.pb"):
        assert (run / name).exists(), name
    assert [row.split(",")[0] for row in (run / "history.csv").read_text(encoding="utf-8").splitlines()] == \
        ["epoch", "1", "2"]


# The grading notebook's steps on each worker (the classifier's loop with the CORAL head and thresholds).
GRADING_WORKER_SCRIPT = """
import sys
import numpy as np
from helpers.grading import workflow
images, labels, weights_file, models = sys.argv[1:5]
session = workflow.start("quick", images_dir=images, labels_csv=labels, num_grades=3, referable_threshold=1,
                         model_path=models, model_name="run", image_size=32, epochs=1, batch_size=8, steps_per_epoch=2)
session.check_data()
session.prepare_backbone()
session.train()
model = session.training.result.model
np.savez(weights_file, trainable=np.array([w.path for w in model.trainable_weights]),
         thresholds=np.asarray(session.training.thresholds or [], dtype=float), **{w.path: np.asarray(w) for w in model.weights})
print("RUN_ROOT", session.run.root, flush=True)
print("STRATEGY", session.training.result.strategy, flush=True)  # the training report's hardware sentence
"""


@pytest.mark.slow
def test_two_worker_processes_train_the_same_grader_and_only_the_chief_writes(tmp_path):
    from helpers.grading import demo_data

    images_dir, labels_csv = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=3, num_grades=3,
                                                         image_size=32)
    _, (chief, worker) = train_on_two_workers(tmp_path, GRADING_WORKER_SCRIPT, [str(images_dir), str(labels_csv)])
    trainable = list(chief["trainable"])
    assert trainable and all(np.array_equal(chief[name], worker[name]) for name in trainable)
    assert np.array_equal(chief["thresholds"], worker["thresholds"])  # chosen on the same validation predictions
    run = tmp_path / "models" / "run"
    for name in ("config.yaml", "split.json", "history.csv", "grading.json", "training_report.pdf"):
        assert (run / name).exists(), name
    assert len((run / "history.csv").read_text(encoding="utf-8").splitlines()) == 2  # header + 1 epoch, written once
