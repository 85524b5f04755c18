"""``python -m helpers.demo``: the parts that run in seconds (the full demo is bench/demo_time.py's row)."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from helpers import demo, errors

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import demo_time  # noqa: E402


def test_the_demo_trains_long_enough_to_learn():
    """The quick preset's 2 epochs gave QC mAP50 0.000; the demo overrides them (docs/benchmarks.md)."""
    parameters = demo.detection_parameters(pathlib.Path("data"), pathlib.Path("models"),
                                           number_of_epochs=demo.DEMO_EPOCHS)
    assert parameters["preset"] == "quick"
    assert parameters["number_of_epochs"] == demo.DEMO_EPOCHS >= 20


def test_latest_qc_metrics_reads_the_newest_result(tmp_path):
    for stamp, value in (("20260101-000000", 0.1), ("20261201-120000", 0.9)):
        folder = tmp_path / "qc" / stamp
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"map50": value, "map50_95": value / 2, "number_of_images": 6}))
    assert demo.latest_qc_metrics(tmp_path)["map50"] == 0.9


def test_latest_qc_metrics_names_the_folder_when_qc_has_not_run(tmp_path):
    with pytest.raises(errors.ModelError, match=r"qc: no QC result"):
        demo.latest_qc_metrics(tmp_path)


def test_benchmark_table_marks_a_failed_run():
    rows = [{"epochs": 30, "wall_seconds": 300.0, "cpu_seconds": 500.0, "load_average_before": 0.1,
             "load_average_after": 1.9, "map50": 0.99, "map50_95": 0.7},
            {"epochs": 20, "wall_seconds": 5.0, "cpu_seconds": 4.0, "load_average_before": 0.1,
             "load_average_after": 0.2, "returncode": 1}]
    table = demo_time.markdown(rows).splitlines()
    assert table[2] == "| 30 | 300.0 | 500.0 | 0.1/1.9 | 0.99 | 0.7 |"
    assert table[3].endswith("| failed | failed |")


def test_the_demo_ends_with_where_every_output_is(tmp_path):
    run = tmp_path / "models" / "demo_retinanet"
    for relative in ("training_report.pdf", "qc_report.pdf", "qc/20261207-001214/metrics.json",
                     "predictions/20261201-000000/predictions.csv", "predictions/20261207-001222/predictions.csv",
                     "predictions/20261207-001222/counts.csv"):
        (run / relative).parent.mkdir(parents=True, exist_ok=True)
        (run / relative).write_text("x", encoding="utf-8")
    lines = demo.where_outputs_are(run, tmp_path / "missing.ipynb").splitlines()
    assert [line.split("  ")[1].strip() for line in lines] == [
        "run folder", "training report", "QC report", "QC tables and figures", "predictions", "counts per image"]
    assert lines[4].endswith("predictions/20261207-001222/predictions.csv")  # the newest, never the older run
    assert lines[5].endswith("predictions/20261207-001222/counts.csv")
