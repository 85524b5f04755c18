"""A grading run interrupted after epoch 1 resumes at epoch 2 through the classification loop (custom head and loss reloaded)."""

import pytest

from helpers import history
from helpers.grading import demo_data, workflow

pytestmark = pytest.mark.slow


def train(images_dir, labels_csv, model_path, epochs):
    session = workflow.start("quick", images_dir=str(images_dir), labels_csv=str(labels_csv), model_path=str(model_path),
                             model_name="resumed", group_column="patient_id", head="cumulative", epochs=epochs,
                             batch_size=8)
    session.check_data()
    session.prepare_backbone()
    return session, session.train()


def test_second_session_resumes_after_the_last_finished_epoch(tmp_path):
    images_dir, labels_csv = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=2)
    first_session, first = train(images_dir, labels_csv, tmp_path / "models", epochs=1)
    first_rows = history.read_history(first_session.run.history_path)
    session, second = train(images_dir, labels_csv, tmp_path / "models", epochs=2)
    rows = history.read_history(session.run.history_path)
    assert session.run.resumed and second.result.resumed_from_epoch == 1 and second.result.epochs_completed == 2
    assert [row["epoch"] for row in rows] == [1, 2] and rows[0] == first_rows[0]
    assert "validation_kappa" in rows[1]
    assert (session.run.exported_model / "grading.json").is_file()
