"""Executes the grading notebook end to end with papermill (quick preset), as a user would.

On a patient-grouped subset of ../shared/data/dr_srahim when present (images symlinked into
tmp_path, never copied into the repository; the subset's CSV written in tmp_path), otherwise on
generated ordinal data. Then checks what a user gets: both PDFs with config and kappa text,
history.csv with one row per epoch and the validation kappa, predictions.csv with a grade and a
score per grade, and the QC command's JSON equal to the QC the notebook did.
"""

import collections
import csv
import json
import pathlib

import pytest

from helpers import demo, history
from helpers.grading import demo_data
from tests.conftest import REPOSITORY_ROOT, SHARED_DATA
from tests.notebook_outputs import nbval_lax, pdf_text, qc_command_metrics, unexpected_tracebacks

pytestmark = pytest.mark.slow

NOTEBOOK = REPOSITORY_ROOT / "notebooks" / "grading.ipynb"
TRAIN_PATIENTS_PER_GRADE = 6
TEST_PATIENTS_PER_GRADE = 1


def link_dr_subset(source: pathlib.Path, tmp_path: pathlib.Path) -> dict:
    """Symlink whole patients (both eyes) into train/ and test/, stratified by the patient's worst grade."""
    with (source / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    eyes = collections.defaultdict(list)
    for row in rows:
        eyes[row["patient_id"]].append(row)
    by_grade = collections.defaultdict(list)
    for patient in sorted(eyes):
        by_grade[max(int(row["dr_grade"]) for row in eyes[patient])].append(patient)
    chosen = {"train": [], "test": []}
    for grade in sorted(by_grade):
        patients = by_grade[grade]
        chosen["test"] += patients[:TEST_PATIENTS_PER_GRADE]
        chosen["train"] += patients[TEST_PATIENTS_PER_GRADE:TEST_PATIENTS_PER_GRADE + TRAIN_PATIENTS_PER_GRADE]
    folders = {}
    for name, patients in chosen.items():
        images = tmp_path / name / "images"
        images.mkdir(parents=True)
        labels = tmp_path / name / "labels.csv"
        with labels.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "grade", "patient_id"])
            for patient in patients:
                for row in eyes[patient]:
                    (images / row["image"]).symlink_to(source / "images" / row["image"])
                    writer.writerow([row["image"], row["dr_grade"], patient])
        folders[name] = (images, labels)
    return folders


def notebook_data(tmp_path: pathlib.Path) -> tuple[dict, str]:
    """{"train": (images, csv), "test": (images, csv)} and a description: DR fundus subset or synthetic."""
    source = SHARED_DATA / "dr_srahim"
    if (source / "labels.csv").is_file():
        return link_dr_subset(source, tmp_path), "dr_srahim subset"
    return ({"train": demo_data.make_grading_demo(tmp_path / "train", patients_per_grade=6),
             "test": demo_data.make_grading_demo(tmp_path / "test", patients_per_grade=1, seed=1)}, "synthetic")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grading_notebook")
    folders, description = notebook_data(tmp_path)
    parameters = {"Training_images": str(folders["train"][0]), "Labels_csv": str(folders["train"][1]),
                  "filename_column": "filename", "grade_column": "grade", "group_column": "patient_id",
                  "num_grades": 5, "referable_threshold": 2, "Test_images": str(folders["test"][0]),
                  "Test_labels_csv": str(folders["test"][1]), "Prediction_images": "",
                  "model_path": str(tmp_path / "models"), "model_name": "ci_run", "preset": "quick",
                  "number_of_epochs": None}
    output = demo.execute_notebook(NOTEBOOK, tmp_path / "executed.ipynb", parameters)
    return {"run": tmp_path / "models" / "ci_run", "notebook": output, "folders": folders,
            "description": description, "parameters": parameters}


def test_training_report_has_config_and_kappa(executed):
    text = pdf_text(executed["run"] / "training_report.pdf")
    assert "GradingConfig" in text and "image_size: 64" in text and "head: regression" in text
    assert "group_column: patient_id" in text and "Grouped by" in text
    assert "quadratic weighted kappa" in text and "Methods" in text
    assert "MobileNetV3Small" in text and "trained from scratch" in text
    assert "Decision thresholds" in text


def test_qc_report_has_kappa_and_referable_table(executed):
    text = pdf_text(executed["run"] / "qc_report.pdf")
    metrics = json.loads((executed["run"] / "qc" / "metrics.json").read_text(encoding="utf-8"))
    assert "Quadratic weighted kappa" in text and "Referable disease (grade >= 2)" in text
    assert "sensitivity" in text and "specificity" in text and "ROC AUC" in text
    kappa = metrics["quadratic_kappa"]
    assert (f"{kappa:.3f}" if kappa is not None else "n/a") in text
    assert "GradingConfig" in text


def test_history_has_one_row_per_epoch_with_kappa(executed):
    rows = history.read_history(executed["run"] / "history.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["train_loss"] > 0 and -1 <= row["validation_kappa"] <= 1 for row in rows)
    assert all(0 <= row["validation_mean_absolute_error"] <= 4 for row in rows)


def test_predictions_csv_has_a_grade_and_a_score_per_grade(executed):
    latest = sorted((executed["run"] / "predictions").iterdir())[-1]
    with (latest / "predictions.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    test_images = executed["folders"]["test"][0]
    assert sorted(row["filename"] for row in rows) == sorted(path.name for path in test_images.iterdir())
    for row in rows:
        scores = [float(row[f"score_{grade}"]) for grade in range(5)]
        assert abs(sum(scores) - 1) < 1e-3 and 0 <= int(row["grade"]) <= 4


def test_qc_explains_grades_with_gradcam_and_the_browser_ran(executed):
    qc = executed["run"] / "qc"
    figures = sorted(qc.glob("gradcam_*.png"))
    assert figures and all(path.stat().st_size > 1000 for path in figures)
    assert (qc / "browser_current.png").is_file()  # cell 5.2 drew the first image
    assert "Grad-CAM: where the model looked" in pdf_text(executed["run"] / "qc_report.pdf")


def test_qc_command_json_matches_the_notebook_qc(executed):
    metrics, saved = qc_command_metrics("grading", executed["run"] / "qc", "--num-grades", "5",
                                        "--referable-threshold", "2")
    assert {"quadratic_kappa", "accuracy", "mean_absolute_error", "confusion_matrix", "referable"} <= set(metrics)
    assert metrics["quadratic_kappa"] == saved["quadratic_kappa"]
    assert metrics["referable"]["sensitivity"] == pytest.approx(saved["referable"]["sensitivity"])
    test_images = list(executed["folders"]["test"][0].iterdir())
    assert sum(map(sum, metrics["confusion_matrix"])) == len(test_images)


def test_model_zoo_package_validates_with_the_grading_settings(executed):
    """Section 5.3 wrote a BioImage Model Zoo package that bioimageio.spec accepts, decodable with grading.json."""
    import zipfile

    from helpers import model_zoo

    package = executed["run"] / "bioimageio" / "ci_run.zip"
    description = model_zoo.validate_package(package)
    assert [str(name) for name in description.outputs[0].axes[-1].channel_names] == ["grade"]  # regression head
    grading = json.loads((executed["run"] / "exported_model" / "grading.json").read_text(encoding="utf-8"))
    assert description.config.model_extra["dl4cells"]["grading"] == grading
    metrics = json.loads((executed["run"] / "qc" / "metrics.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(package) as archive:
        readme = archive.read("README.md").decode("utf-8")
    assert "quadratic weighted kappa" in readme and "held-out test folder" in readme
    if metrics["quadratic_kappa"] is not None:
        assert f"| quadratic weighted kappa | {metrics['quadratic_kappa']:.3f} |" in readme


def test_executed_notebook_passes_nbval_lax(executed):
    completed = nbval_lax(executed["notebook"])
    assert completed.returncode == 0, completed.stdout[-3000:]


def test_no_library_traceback_or_tensorflow_log_reaches_the_cells(executed):
    assert unexpected_tracebacks(executed["notebook"]) == []


def test_quality_control_and_prediction_run_after_sections_1_and_2_alone(executed, tmp_path):
    """Section 0's "check a grader" and "use a grader" ways: sections 1–2, 5 and 6 on the trained run."""
    from tests import notebook_paths

    notebook_paths.check_sections_1_2_5_6(NOTEBOOK, executed, tmp_path)
