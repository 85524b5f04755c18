"""Grading runs resume and continue like classification and detection runs.

* A second session with more epochs resumes after the last finished epoch (custom head and loss reloaded).
* A real interruption: a subprocess training a grader is killed (SIGKILL) in the middle of epoch 2;
  running the same settings again ends with every epoch and a history.csv that agrees with
  checkpoints/state.json (mirroring tests/test_classification_resume.py and the detection kill test).
* ``continue_from`` refuses a wrong folder before creating anything, and otherwise starts from the
  earlier run's exported weights (checked equal when training begins) and says so in its records.
"""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from helpers import errors, history
from helpers.classification import model as classification_model
from helpers.classification import train as classification_train
from helpers.grading import demo_data, workflow
from helpers.grading import train as grading_train
from tests.conftest import REPOSITORY_ROOT
from tests.notebook_outputs import pdf_text

pytestmark = pytest.mark.slow


def start(data, model_path, **settings):
    images_dir, labels_csv = data
    session = workflow.start("quick", images_dir=str(images_dir), labels_csv=str(labels_csv),
                             model_path=str(model_path), **settings)
    session.check_data()
    session.prepare_backbone()
    return session


def train(images_dir, labels_csv, model_path, epochs):
    session = start((images_dir, labels_csv), model_path, model_name="resumed", group_column="patient_id",
                    head="cumulative", epochs=epochs, batch_size=8, image_size=32)
    return session, session.train()


def test_second_session_resumes_after_the_last_finished_epoch(tmp_path):
    images_dir, labels_csv = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=2, image_size=32)
    first_session, first = train(images_dir, labels_csv, tmp_path / "models", epochs=1)
    first_rows = history.read_history(first_session.run.history_path)
    session, second = train(images_dir, labels_csv, tmp_path / "models", epochs=2)
    rows = history.read_history(session.run.history_path)
    assert session.run.resumed and second.result.resumed_from_epoch == 1 and second.result.epochs_completed == 2
    assert [row["epoch"] for row in rows] == [1, 2] and rows[0] == first_rows[0]
    assert "validation_kappa" in rows[1]
    assert (session.run.exported_model / "grading.json").is_file()


# The settings of the killed run and of its rerun (the same, or the rerun would be refused).
KILLED_SETTINGS = dict(model_name="killed", group_column="patient_id", head="cumulative", epochs=3, batch_size=8,
                       image_size=32, reduce_lr_patience=1)

KILLED_TRAINING = textwrap.dedent("""
    import json, os, signal, sys
    import keras
    from helpers.classification import pipeline
    from helpers.grading import train as grading_train
    from helpers.grading import workflow

    class KillMidEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2:  # after the first step of epoch 2, as a Colab disconnect would
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    images_dir, labels_csv, model_path, settings = sys.argv[1:5]
    session = workflow.start("quick", images_dir=images_dir, labels_csv=labels_csv, model_path=model_path,
                             **json.loads(settings))
    session.check_data()
    steps = pipeline.steps_per_epoch(len(session.split.train), session.config.batch_size, 0)
    print(f"steps per epoch: {steps}", flush=True)
    grading_train.train_grader(session.config, session.run, session.items_named(session.split.train),
                        session.items_named(session.split.validation), callbacks=[KillMidEpoch()])
""")


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory):
    """Train in a subprocess killed mid-epoch 2, then rerun the same settings here (export and report included)."""
    import json

    tmp_path = tmp_path_factory.mktemp("killed")
    data = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=2, image_size=32)
    script = tmp_path / "killed_training.py"
    script.write_text(KILLED_TRAINING, encoding="utf-8")
    completed = subprocess.run([sys.executable, str(script), str(data[0]), str(data[1]), str(tmp_path / "models"),
                                json.dumps(KILLED_SETTINGS)], cwd=REPOSITORY_ROOT, capture_output=True, text=True,
                               timeout=600, env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)})
    run_folder = tmp_path / "models" / "killed"
    after_kill = {"returncode": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr[-3000:],
                  "history": history.read_history(run_folder / "history.csv") if (run_folder / "history.csv").is_file()
                  else [],
                  "state": json.loads((run_folder / "checkpoints" / "state.json").read_text(encoding="utf-8"))
                  if (run_folder / "checkpoints" / "state.json").is_file() else None}
    session = start(data, tmp_path / "models", **KILLED_SETTINGS)
    training = session.train()
    return {"data": data, "tmp_path": tmp_path, "after_kill": after_kill, "session": session, "training": training}


def test_killed_mid_epoch_then_rerun_ends_with_all_epochs_and_a_consistent_history(killed_and_rerun):
    after_kill, session, training = (killed_and_rerun[key] for key in ("after_kill", "session", "training"))
    assert after_kill["returncode"] == -signal.SIGKILL, after_kill["stderr"]
    steps = int(after_kill["stdout"].split("steps per epoch: ")[1].split()[0])
    assert steps >= 2  # so the kill after step 1 of epoch 2 was mid-epoch
    assert [row["epoch"] for row in after_kill["history"]] == [1] and after_kill["state"]["epochs_completed"] == 1
    assert session.run.resumed
    assert training.result.resumed_from_epoch == 1 and training.result.epochs_completed == 3
    rows = history.read_history(session.run.history_path)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[0] == after_kill["history"][0]  # epoch 1 is the row written before the kill, not a rerun of it
    state = classification_train.read_state(session.run)
    assert [row["epoch"] for row in state["rows"]] == [1, 2, 3] and {row["phase"] for row in state["rows"]} == {"all"}
    for saved, written in zip(state["rows"], rows):  # history.csv agrees with state.json
        for column in grading_train.HISTORY_COLUMNS:
            assert written[column] == pytest.approx(saved[column], nan_ok=True), column
    assert all(np.isfinite(row["train_loss"]) and -1 <= row["validation_kappa"] <= 1 for row in rows)
    checkpoints = session.run.checkpoints
    assert sorted(path.name for path in checkpoints.glob("epoch_*.keras")) == ["epoch_0002.keras", "epoch_0003.keras"]
    assert (checkpoints / classification_train.BEST_FILE).is_file() and 1 <= state["best_epoch"] <= 3
    assert not list(checkpoints.glob("*.tmp*"))  # nothing half-written was left behind by the kill
    assert (session.run.exported_model / grading_train.GRADING_FILE).is_file()


def test_continue_from_a_wrong_folder_is_refused_before_a_run_folder_is_made(killed_and_rerun):
    data, tmp_path = killed_and_rerun["data"], killed_and_rerun["tmp_path"]
    source = killed_and_rerun["session"].run.root
    unfinished = tmp_path / "models" / "unfinished"
    (unfinished / "exported_model").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("head: cumulative\n", encoding="utf-8")
    cases = [(tmp_path / "nowhere", {}, "not a DL4Cells run folder"),
             (unfinished, {}, "holds no exported grader"),
             (source, {"head": "regression"}, "trained with head 'cumulative' \\(here 'regression'\\)"),
             (source, {"image_size": 64}, "image_size 32 \\(here 64\\)")]
    for index, (folder, changes, message) in enumerate(cases):
        settings = {**KILLED_SETTINGS, "head": "cumulative", "model_name": f"refused_{index}", **changes}
        with pytest.raises(errors.ConfigError, match="^continue_from: .*" + message):
            start(data, tmp_path / "models", continue_from=str(folder), **settings)
        assert not (tmp_path / "models" / f"refused_{index}").exists()


class WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(weight) for weight in self.model.get_weights()]


def test_continue_from_starts_from_the_saved_weights_and_says_so(killed_and_rerun):
    data, tmp_path, source = killed_and_rerun["data"], killed_and_rerun["tmp_path"], killed_and_rerun["session"].run
    settings = {**KILLED_SETTINGS, "model_name": "continued", "epochs": 1, "fine_tune_learning_rate": 1e-3}
    session = start(data, tmp_path / "models", continue_from=str(source.root), **settings)
    snapshot = WeightsAtStart()
    grading_train.train_grader(session.config, session.run, session.items_named(session.split.train),
                        session.items_named(session.split.validation), callbacks=[snapshot],
                        initial_model_path=grading_train.continued_model_path(session.config))
    saved = classification_model.load_classifier(source.exported_model / classification_model.MODEL_FILE_NAME)
    assert len(snapshot.weights) == len(saved.get_weights())
    for at_start, exported in zip(snapshot.weights, saved.get_weights()):
        np.testing.assert_array_equal(at_start, exported)  # training began from the earlier run's weights
    latest = classification_model.load_classifier(session.run.checkpoints / "epoch_0001.keras")
    assert any(not np.array_equal(after, before) for after, before in zip(latest.get_weights(), saved.get_weights()))

    training = session.train()  # nothing left to train: exports and writes the report of the continued run
    assert training.result.epochs_completed == 1 and training.result.resumed_from_epoch == 1
    assert [row["phase"] for row in classification_train.read_state(session.run)["rows"]] == ["fine_tune"]
    assert f"continue_from: {source.root}" in session.run.config_path.read_text(encoding="utf-8")
    text = " ".join(pdf_text(session.run.root / "training_report.pdf").split())
    assert "continued from the model in" in text and "continued from an earlier grader" in text
    assert source.root.name in text
