"""Executes the detection notebook end to end with papermill (quick preset), as a user would.

On a small subset of ../shared/data/bccd when present (linked into tmp_path, never copied into
the repository), otherwise on generated synthetic data. Then checks what a user gets: both PDFs
with config and metrics text (count agreement included), history.csv with one row per epoch,
predictions and counts.csv that parse, and the QC command's JSON. The executed notebook is also
checked with nbval (--nbval-lax).
"""

import json
import pathlib
import subprocess
import sys

import pytest

from helpers import demo, history, voc
from helpers.detection import demo_data
from helpers import prediction_formats
from tests import notebook_outputs
from tests.conftest import REPOSITORY_ROOT, SHARED_DATA

pytestmark = pytest.mark.slow


def link_bccd_subset(target: pathlib.Path, stems: list[str]) -> pathlib.Path:
    """Symlink a few BCCD image/XML pairs into target/images and target/annotations."""
    for subfolder, source, suffix in (("images", "JPEGImages", ".jpg"), ("annotations", "Annotations", ".xml")):
        (target / subfolder).mkdir(parents=True)
        for stem in stems:
            (target / subfolder / f"{stem}{suffix}").symlink_to(SHARED_DATA / "bccd" / source / f"{stem}{suffix}")
    return target


def notebook_data(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str]:
    """(training folder, test folder, description): BCCD subset if available, else synthetic."""
    bccd = SHARED_DATA / "bccd"
    if bccd.is_dir():
        stems = sorted(path.stem for path in (bccd / "Annotations").glob("*.xml"))
        return (link_bccd_subset(tmp_path / "train", stems[:14]), link_bccd_subset(tmp_path / "test", stems[-4:]),
                "BCCD subset")
    return (demo_data.make_detection_demo(tmp_path / "train", number_of_images=14),
            demo_data.make_detection_demo(tmp_path / "test", number_of_images=4, seed=1), "synthetic")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("detection_notebook")
    train_dir, test_dir, description = notebook_data(tmp_path)
    parameters = demo.detection_parameters(train_dir, tmp_path / "models", model_name="ci_run",
                                           test_images=str(test_dir / "images"),
                                           test_annotations=str(test_dir / "annotations"))
    output_notebook = demo.execute_notebook(demo.DETECTION_NOTEBOOK, tmp_path / "executed.ipynb", parameters)
    return {"run": tmp_path / "models" / "ci_run", "notebook": output_notebook, "test": test_dir,
            "description": description, "parameters": parameters}


def pdf_text(path: pathlib.Path) -> str:
    import pypdf

    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)


def test_training_report_has_config_and_metrics(executed):
    text = pdf_text(executed["run"] / "training_report.pdf")
    assert "DetectionConfig" in text and "batch_size: 2" in text
    assert "mAP50" in text and "Methods" in text
    assert "spinenet49_mobile" in text
    assert "dl4cells-helpers" in text  # the helpers' own version, with the git commit


def test_qc_report_has_metrics_with_thresholds(executed):
    text = pdf_text(executed["run"] / "qc_report.pdf")
    assert "mAP50-95" in text and "IoU" in text and "score ≥" in text
    assert "DetectionConfig" in text
    flat = text.replace("\n", " ")  # pypdf breaks lines where the PDF wraps them
    assert "Counts: predicted vs annotated objects per image" in flat and "Bland-Altman bias" in flat
    assert "Best count agreement at score threshold" in flat and "chosen on these QC images (optimistic)" in flat


def test_history_has_one_row_per_epoch(executed):
    rows = history.read_history(executed["run"] / "history.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["train_total_loss"] > 0 for row in rows)


def test_predictions_parse_with_our_readers(executed):
    prediction_dirs = sorted((executed["run"] / "predictions").iterdir())
    assert prediction_dirs, "section 6 wrote no predictions folder"
    latest = prediction_dirs[-1]
    rows = prediction_formats.read_predictions_csv(latest / "predictions.csv")
    xml_files = sorted((latest / "voc").glob("*.xml"))
    assert len(xml_files) == len(list((executed["test"] / "images").iterdir()))
    for path in xml_files:
        annotation = voc.read_voc(path)
        assert all(obj.score is not None for obj in annotation.objects)
    assert all(row.xmax >= row.xmin and row.ymax >= row.ymin for row in rows)


def test_counts_csv_has_one_row_per_image_with_the_threshold(executed):
    import csv

    latest = sorted((executed["run"] / "predictions").iterdir())[-1]
    with (latest / "counts.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(row["filename"] for row in table) == sorted(path.name for path in (executed["test"] / "images").iterdir())
    assert len({row["score_threshold"] for row in table}) == 1
    detections = prediction_formats.read_predictions_csv(latest / "predictions.csv")
    settings = json.loads((latest / "prediction_settings.json").read_text(encoding="utf-8"))
    assert settings["count_each_object_once"] is True and "counted once" in settings["count_rule"]
    # predictions.csv keeps every box; counts.csv counts each object once
    merged = prediction_formats.merge_across_classes(detections, settings["count_merge_iou"])
    assert sum(int(row["total"]) for row in table) == len(merged) <= len(detections)


def test_annotation_loop_refuses_the_test_images_without_an_error(executed):
    """On the defaults section 6 predicts the test images: 6.2 must not offer them for annotation (a leak).

    The ranking of new images is covered by tests/test_annotation_loop.py.
    """
    import json

    latest = sorted((executed["run"] / "predictions").iterdir())[-1]
    assert not (latest / "annotate_next.csv").exists() and not (latest / "pre_annotations").exists()
    notebook = json.loads(executed["notebook"].read_text(encoding="utf-8"))
    text = "".join("".join(output.get("text", "")) for cell in notebook["cells"] for output in cell.get("outputs", []))
    assert f"{len(list((executed['test'] / 'images').iterdir()))} predicted images are your Test_images" in text
    assert "Put new, unannotated images in Prediction_images and run section 6 again." in text
    assert "This was a quick run (preset = quick, 2 epochs)" in text


def test_qc_command_prints_json(executed):
    predictions = sorted((executed["run"] / "predictions").iterdir())[-1] / "predictions.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "helpers.qc", "detection", "--ground-truth", str(executed["test"] / "annotations"),
         "--predictions", str(predictions), "--json"],
        cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True)
    metrics = json.loads(completed.stdout)
    assert {"map50", "map50_95", "map75", "per_class", "count_agreement"} <= set(metrics)
    assert 0.0 <= metrics["map50"] <= 1.0
    counts = metrics["count_agreement"]
    assert counts["best_threshold_note"] == "chosen on these QC images (optimistic)"
    assert {"mean_absolute_error", "pearson_r", "bias", "lower_limit_of_agreement"} <= set(
        next(iter(counts["per_class"].values())))


def test_executed_notebook_passes_nbval_lax(executed):
    completed = notebook_outputs.nbval_lax(executed["notebook"])
    assert completed.returncode == 0, completed.stdout[-3000:]


def test_no_library_traceback_or_tensorflow_log_reaches_the_cells(executed):
    """No protobuf traceback (tensorflow_datasets), absl ERROR or TensorFlow C++ log line in any cell's output."""
    assert notebook_outputs.unexpected_tracebacks(executed["notebook"]) == []


def test_quality_control_and_prediction_run_after_sections_1_and_2_alone(executed, tmp_path):
    """Section 0's "check a model" and "use a model" ways: sections 1–2, 5 and 6 on the trained run."""
    from tests import notebook_paths

    ran = notebook_paths.check_sections_1_2_5_6(demo.DETECTION_NOTEBOOK, executed, tmp_path)
    assert any(title.startswith("#@title 6.2") for title in ran["titles"]) and "mAP50" in ran["text"]
