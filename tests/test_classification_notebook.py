"""Executes the classification notebook end to end with papermill (quick preset), as a user would.

On a small subset of ../shared/data/wbc_bccd_crops when present (symlinked into tmp_path, never
copied into the repository), otherwise on generated synthetic data. Then checks what a user gets:
both PDFs with config and metrics text, history.csv with one row per epoch, predictions.csv with a
score per class, and the QC command's JSON equal to the QC the notebook did.
"""

import csv
import json
import pathlib

import pytest

from helpers import demo, history
from helpers.classification import demo_data
from tests.conftest import REPOSITORY_ROOT, SHARED_DATA
from tests.notebook_outputs import nbval_lax, pdf_text, qc_command_metrics, unexpected_tracebacks

pytestmark = pytest.mark.slow

NOTEBOOK = REPOSITORY_ROOT / "notebooks" / "classification.ipynb"
TRAIN_PER_CLASS = 8
TEST_PER_CLASS = 2


def link_wbc_subset(source: pathlib.Path, train: pathlib.Path, test: pathlib.Path) -> None:
    """Symlink a few crops per class: the first ones for training, the last ones for testing."""
    for class_folder in sorted(path for path in source.iterdir() if path.is_dir()):
        files = sorted(class_folder.glob("*.jpg"))
        test_files = files[-min(TEST_PER_CLASS, len(files) // 2):]
        train_files = [path for path in files if path not in test_files][:TRAIN_PER_CLASS]
        for target, chosen in ((train, train_files), (test, test_files)):
            (target / class_folder.name).mkdir(parents=True, exist_ok=True)
            for path in chosen:
                (target / class_folder.name / path.name).symlink_to(path)


def notebook_data(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str]:
    """(training folder, test folder, description): white-cell crops if available, else synthetic."""
    crops = SHARED_DATA / "wbc_bccd_crops" / "BCCD_cropped"
    if crops.is_dir():
        link_wbc_subset(crops, tmp_path / "train", tmp_path / "test")
        return tmp_path / "train", tmp_path / "test", "white-cell crops"
    return (demo_data.make_classification_demo(tmp_path / "train", images_per_class=10),
            demo_data.make_classification_demo(tmp_path / "test", images_per_class=3, seed=1), "synthetic")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("classification_notebook")
    train_dir, test_dir, description = notebook_data(tmp_path)
    parameters = {"Training_images": str(train_dir), "Labels_csv": "", "Test_images": str(test_dir),
                  "Test_labels_csv": "", "Prediction_images": "", "model_path": str(tmp_path / "models"),
                  "model_name": "ci_run", "preset": "quick", "number_of_epochs": None}
    output = demo.execute_notebook(NOTEBOOK, tmp_path / "executed.ipynb", parameters)
    classes = sorted(path.name for path in test_dir.iterdir() if path.is_dir())
    return {"run": tmp_path / "models" / "ci_run", "notebook": output, "test": test_dir, "classes": classes,
            "description": description, "parameters": parameters}


def test_training_report_has_config_and_metrics(executed):
    text = pdf_text(executed["run"] / "training_report.pdf")
    assert "ClassificationConfig" in text and "batch_size: 16" in text and "image_size: 64" in text
    assert "balanced accuracy" in text and "Methods" in text
    assert "MobileNetV3Small" in text and "trained from scratch" in text
    assert "dl4cells-helpers" in text and "0.2.0" in text  # the helpers' own version, with the git commit


def test_qc_report_has_metrics_and_their_meaning(executed):
    text = pdf_text(executed["run"] / "qc_report.pdf")
    assert "Balanced accuracy" in text and "Macro F1" in text and "ROC AUC" in text
    assert "chance level is 1 / number of classes" in " ".join(text.split())  # the glossary wraps it
    assert "Grad-CAM" in text and "ClassificationConfig" in text


def test_history_has_one_row_per_epoch(executed):
    rows = history.read_history(executed["run"] / "history.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["train_loss"] > 0 and 0 <= row["validation_balanced_accuracy"] <= 1 for row in rows)


def test_predictions_csv_has_a_score_per_class(executed):
    latest = sorted((executed["run"] / "predictions").iterdir())[-1]
    with (latest / "predictions.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = sorted(path.relative_to(executed["test"]).as_posix() for path in executed["test"].rglob("*")
                      if path.suffix.lower() in (".jpg", ".png"))
    assert sorted(row["filename"] for row in rows) == expected
    model_classes = json.loads((executed["run"] / "label_map.json").read_text(encoding="utf-8"))["classes"]
    for row in rows:
        scores = {name: float(row[f"score_{name}"]) for name in model_classes}
        assert abs(sum(scores.values()) - 1) < 1e-3
        assert row["label"] == max(scores, key=scores.get)


def test_qc_command_json_matches_the_notebook_qc(executed):
    metrics, saved = qc_command_metrics("classification", executed["run"] / "qc")
    assert {"accuracy", "balanced_accuracy", "macro_f1", "classes", "confusion_matrix", "per_class"} <= set(metrics)
    assert metrics["balanced_accuracy"] == pytest.approx(saved["balanced_accuracy"])
    test_images = [path for path in executed["test"].rglob("*") if path.suffix.lower() in (".jpg", ".png")]
    assert sum(map(sum, metrics["confusion_matrix"])) == len(test_images)


def test_model_zoo_package_validates_with_the_classes_in_output_order(executed):
    """Section 5.3 wrote a BioImage Model Zoo package that bioimageio.spec accepts, with the held-out QC numbers."""
    import zipfile

    from helpers import model_zoo

    package = executed["run"] / "bioimageio" / "ci_run.zip"
    description = model_zoo.validate_package(package)
    channels = [str(name) for name in description.outputs[0].axes[-1].channel_names]
    assert channels == [model_zoo.channel_identifier(name) for name in executed["classes"]]
    metrics = json.loads((executed["run"] / "qc" / "metrics.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(package) as archive:
        readme = archive.read("README.md").decode("utf-8")
    assert f"| balanced accuracy | {metrics['balanced_accuracy']:.3f} |" in readme and "held-out test folder" in readme


def test_executed_notebook_passes_nbval_lax(executed):
    completed = nbval_lax(executed["notebook"])
    assert completed.returncode == 0, completed.stdout[-3000:]


def test_no_library_traceback_or_tensorflow_log_reaches_the_cells(executed):
    assert unexpected_tracebacks(executed["notebook"]) == []


def test_quality_control_and_prediction_run_after_sections_1_and_2_alone(executed, tmp_path):
    """Section 0's "check a classifier" and "use a classifier" ways: sections 1–2, 5 and 6 on the trained run."""
    from tests import notebook_paths

    notebook_paths.check_sections_1_2_5_6(NOTEBOOK, executed, tmp_path)
