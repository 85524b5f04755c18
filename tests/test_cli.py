"""``dl4cells TASK config|train|qc|predict`` (helpers/cli.py): the notebooks' steps from a terminal.

Fast tests call ``helpers.cli.main`` in this process (parsing, the settings file's round trip, user
errors as one line and exit status 2); one subprocess checks ``python -m helpers.cli``. The
``slow`` tests train each task end to end through the command line on generated demo data at the
smallest budget the engine tests use (one epoch of two steps), then run ``qc`` and ``predict``.
"""

import argparse
import csv
import dataclasses
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from helpers import cli, errors
from helpers import config as config_module
from helpers import workflow as shared_workflow
from tests.conftest import REPOSITORY_ROOT

TASK_CONFIGS = {task: cli.task_steps(task).config_class for task in cli.TASKS}


def template(task: str, preset: str, capsys) -> str:
    """What ``dl4cells TASK config --preset PRESET`` prints (stdout only; nothing on stderr)."""
    assert cli.main([task, "config", "--preset", preset]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    return printed.out


def settings_file(folder: pathlib.Path, task: str, capsys, preset: str = "quick", **values) -> pathlib.Path:
    """The ``config`` template written to ``folder/my_run.yaml`` with ``values`` filled in (commented ones uncommented)."""
    text = template(task, preset, capsys)
    for name, value in values.items():
        line = yaml.safe_dump({name: value}, width=10**9).strip()
        text, replaced = re.subn(rf"^(# )?{name}: .*$", lambda match: line, text, count=1, flags=re.MULTILINE)
        assert replaced == 1, name
    path = folder / "my_run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_command(arguments: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``dl4cells ARGUMENTS`` run in this process."""
    status = cli.main([str(argument) for argument in arguments])
    printed = capsys.readouterr()
    return status, printed.out, printed.err


# ----- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize("task", cli.TASKS)
def test_each_task_has_the_four_commands_with_their_options(task):
    parser = cli.build_parser()
    labels_option = cli.TEST_LABELS[task][0]
    parsed = parser.parse_args([task, "qc", "--model", "m", "--images", "i", f"--{labels_option}", "l"])
    assert (parsed.function, parsed.model, parsed.images, getattr(parsed, labels_option)) == (cli.run_qc, "m", "i", "l")
    parsed = parser.parse_args([task, "predict", "--model", "m", "--images", "i", "--output", "o"])
    assert (parsed.function, parsed.images, parsed.output) == (cli.run_predict, "i", "o")
    assert parser.parse_args([task, "train", "--config", "s.yaml"]).function is cli.run_train
    assert parser.parse_args([task, "config"]).preset == "default"
    assert parser.parse_args([task, "config", "--preset", "quick"]).function is cli.run_config


@pytest.mark.parametrize("arguments", [["classification", "qc", "--model", "m", "--annotations", "a"],
                                       ["detection", "qc", "--model", "m", "--labels", "l.csv"],
                                       ["grading", "predict", "--model", "m", "--images", "i"],
                                       ["grading", "config", "--preset", "fast"], ["segmentation", "train"]])
def test_an_option_of_another_task_or_a_missing_one_is_a_usage_error(arguments, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(arguments)
    assert stopped.value.code == cli.USER_ERROR_EXIT_CODE and "usage: dl4cells" in capsys.readouterr().err


def test_the_help_says_what_each_command_writes_with_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["detection", "predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # as one line: argparse wraps the description
    assert "predictions.csv, counts.csv" in text and "example:" in text and "dl4cells detection predict --model" in text


def test_python_m_helpers_cli_and_the_console_script(tmp_path):
    scripts = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"dl4cells": "helpers.cli:main"}
    finished = subprocess.run([sys.executable, "-m", "helpers.cli", "--help"], cwd=REPOSITORY_ROOT,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.startswith("usage: dl4cells")
    assert all(f"{command} " in finished.stdout for command in ("config", "train", "qc", "predict"))


# ----- the settings file --------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["default", "quick"])
@pytest.mark.parametrize("task", cli.TASKS)
def test_the_settings_file_loads_back_to_exactly_the_presets_config(task, preset, tmp_path, capsys):
    config_class = TASK_CONFIGS[task]
    text = template(task, preset, capsys)
    path = tmp_path / "my_run.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli.load_run_config(config_class, path) == config_module.config_from_form(config_class, preset)
    comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    for item in dataclasses.fields(config_class):  # every field, with its help text
        assert re.search(rf"^(# )?{item.name}: ", text, flags=re.MULTILINE), item.name
        assert item.metadata["help"] in comments, item.name


def test_a_changed_setting_is_used_even_when_it_is_the_default_presets_value(tmp_path, capsys):
    default_epochs = config_module.config_from_form(TASK_CONFIGS["classification"], "default").epochs
    path = settings_file(tmp_path, "classification", capsys, epochs=default_epochs, image_size=48)
    config = cli.load_run_config(TASK_CONFIGS["classification"], path)
    quick = config_module.config_from_form(TASK_CONFIGS["classification"], "quick")
    assert (config.preset, config.epochs, config.image_size) == ("quick", default_epochs, 48)
    assert quick.epochs != default_epochs
    assert dataclasses.replace(config, epochs=quick.epochs, image_size=quick.image_size) == quick
    # train opens the session with these values, not the notebooks' "a default means the preset" rule.
    session = shared_workflow.open_session(
        cli.task_steps("classification").session_class, TASK_CONFIGS["classification"], "quick",
        dict(images_dir=str(tmp_path), model_path=str(tmp_path / "models"), model_name="run", epochs=default_epochs),
        defaults_mean_preset=False)
    assert session.config.epochs == default_epochs


@pytest.mark.parametrize("line, message", [("epoch: 5", "Did you mean 'epochs'"),
                                           ("epochs: many", "epochs: expected a whole number"),
                                           ("epochs: [5", "not readable as settings (line")])
def test_a_wrong_setting_is_one_line_naming_the_file_and_exit_status_2(line, message, tmp_path, capsys):
    path = settings_file(tmp_path, "classification", capsys, images_dir=str(tmp_path), model_path=str(tmp_path),
                         model_name="run")
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    status, out, err = run_command(["classification", "train", "--config", path], capsys)
    assert status == 2 and err.startswith(f"ConfigError: {path}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_train_names_an_empty_data_field_before_making_a_run_folder(tmp_path, capsys):
    path = settings_file(tmp_path, "detection", capsys, images_dir=str(tmp_path), model_path=str(tmp_path / "models"),
                         model_name="run")
    status, _, err = run_command(["detection", "train", "--config", path], capsys)
    assert status == 2 and err.startswith(f"ConfigError: {path}: annotations_dir is empty.") and err.count("\n") == 1
    assert not (tmp_path / "models").exists()
    status, _, err = run_command(["grading", "train", "--config", tmp_path / "missing.yaml"], capsys)
    assert status == 2 and "--config: " in err and "dl4cells TASK config" in err


# ----- user errors --------------------------------------------------------------------------
def test_errors_shared_with_the_notebooks_name_the_settings_file_and_options_not_the_forms(capsys, monkeypatch):
    from helpers import workflow

    def refuse(arguments):
        workflow.require_folder("Training_images", "/nowhere/images")

    class Parser:  # any command whose step raises the notebooks' message
        def parse_args(self, argv):
            return argparse.Namespace(function=refuse)

    monkeypatch.setattr(cli, "build_parser", Parser)
    status, _, err = run_command(["grading", "qc", "--model", "/nowhere"], capsys)
    assert status == 2 and err == ("DatasetError: images_dir: folder /nowhere/images does not exist. Check the path "
                                   "in the settings file (--config).\n")
    assert cli.command_line_wording("Fix the Training_images path in form 1.1; Test_labels_csv; Finish training "
                                    "(section 4) first.") == ("Fix the images_dir path in the settings file (--config); "
                                                              "--labels; Finish training (dl4cells TASK train) first.")


def test_a_missing_images_folder_is_one_line_on_stderr_and_exit_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(errors.FULL_TRACEBACK_VARIABLE, raising=False)
    arguments = ["classification", "predict", "--model", tmp_path, "--images", tmp_path / "missing",
                 "--output", tmp_path / "results"]
    status, out, err = run_command(arguments, capsys)
    assert (status, out) == (2, "")
    assert err == f"DatasetError: --images: folder {tmp_path / 'missing'} does not exist. Check the path.\n"
    monkeypatch.setenv(errors.FULL_TRACEBACK_VARIABLE, "1")  # developers get the exception itself
    with pytest.raises(errors.DatasetError):
        cli.main([str(argument) for argument in arguments])


def test_qc_wants_test_images_and_their_labels_together(tmp_path, capsys):
    status, _, err = run_command(["detection", "qc", "--model", tmp_path, "--images", tmp_path], capsys)
    assert status == 2 and err.startswith("ConfigError: --annotations: missing.")
    status, _, err = run_command(["grading", "qc", "--model", tmp_path, "--labels", tmp_path / "l.csv"], capsys)
    assert status == 2 and err.startswith("ConfigError: --labels: given without --images.")
    status, _, err = run_command(["detection", "qc", "--model", tmp_path], capsys)  # validation images: no test options
    assert status == 2 and err.startswith(f"ModelError: {tmp_path}: not a DL4Cells run folder")


def test_predict_never_writes_into_a_folder_that_holds_files(tmp_path, capsys):
    output = tmp_path / "results"
    output.mkdir()
    (output / "predictions.csv").write_text("mine", encoding="utf-8")
    status, _, err = run_command(["grading", "predict", "--model", tmp_path, "--images", tmp_path, "--output", output],
                                 capsys)
    assert status == 2 and err.startswith("ConfigError: --output: ") and "nothing in it was touched" in err
    assert (output / "predictions.csv").read_text(encoding="utf-8") == "mine"


# ----- end to end (slow) --------------------------------------------------------------------
def train_qc_predict(task, settings, model, qc_arguments, predict_images, output, capsys, rerun=True):
    """Run train, train again (``rerun``: it resumes the finished run), qc and predict; their stdout texts."""
    status, trained, _ = run_command([task, "train", "--config", settings], capsys)
    assert status == 0, trained
    if rerun:
        status, resumed, _ = run_command([task, "train", "--config", settings], capsys)
        assert status == 0 and f"Resuming the run in {model}" in resumed
    status, checked, err = run_command([task, "qc", "--model", model, *qc_arguments], capsys)
    assert status == 0, err
    status, predicted, err = run_command([task, "predict", "--model", model, "--images", predict_images,
                                          "--output", output], capsys)
    assert status == 0, err
    return trained, checked, predicted


def csv_rows(path: pathlib.Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check_run_folder(model: pathlib.Path, exported: str, **settings) -> None:
    """The run folder holds the training record and report; config.yaml holds ``settings``."""
    from helpers import history

    assert (model / "exported_model" / exported).is_file() and (model / "training_report.pdf").is_file()
    assert (model / "qc_report.pdf").is_file() and (model / "split.json").is_file()
    assert [row["epoch"] for row in history.read_history(model / "history.csv")] == [1]  # a rerun added none
    recorded = yaml.safe_load((model / "config.yaml").read_text(encoding="utf-8"))
    assert {name: recorded[name] for name in settings} == settings


@pytest.mark.slow
def test_classification_trains_checks_and_predicts_from_the_command_line(tmp_path, capsys):
    from helpers.classification import demo_data

    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=6, image_size=32)
    test = demo_data.make_classification_demo(tmp_path / "test", images_per_class=2, image_size=32, seed=1)
    # validation_fraction 0.15 is the default preset's value: the quick preset's 0.2 must not replace it.
    settings = settings_file(tmp_path, "classification", capsys, images_dir=str(data), model_path=str(tmp_path / "models"),
                             model_name="run", epochs=1, image_size=32, steps_per_epoch=2, validation_fraction=0.15)
    model = tmp_path / "models" / "run"
    _, checked, predicted = train_qc_predict("classification", settings, model, ["--images", test], test,
                                             tmp_path / "results", capsys)
    check_run_folder(model, "classifier.keras", preset="quick", epochs=1, validation_fraction=0.15)
    assert f"test images in {test} (6 images" in checked
    assert len(csv_rows(tmp_path / "results" / "predictions.csv")) == 6


@pytest.mark.slow
def test_grading_trains_checks_and_predicts_from_the_command_line(tmp_path, capsys):
    from helpers.grading import demo_data

    images, labels = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=2, image_size=32)
    test_images, test_labels = demo_data.make_grading_demo(tmp_path / "test", patients_per_grade=1, image_size=32,
                                                           seed=1)
    settings = settings_file(tmp_path, "grading", capsys, images_dir=str(images), labels_csv=str(labels),
                             model_path=str(tmp_path / "models"), model_name="run", group_column="patient_id",
                             epochs=1, image_size=32, batch_size=8, steps_per_epoch=2)
    model = tmp_path / "models" / "run"
    _, checked, _ = train_qc_predict("grading", settings, model, ["--images", test_images, "--labels", test_labels],
                                     test_images, tmp_path / "results", capsys)
    check_run_folder(model, "grading.json", group_column="patient_id", image_size=32)
    assert "kappa" in checked.lower()
    rows = csv_rows(tmp_path / "results" / "predictions.csv")
    assert len(rows) == len(csv_rows(test_labels)) and {row["grade"] for row in rows} <= set("01234")


@pytest.mark.slow
def test_detection_trains_checks_and_predicts_from_the_command_line(tmp_path, capsys):
    from helpers.detection import demo_data

    data = demo_data.make_detection_demo(tmp_path / "data", number_of_images=8, image_size=(160, 128))
    test = demo_data.make_detection_demo(tmp_path / "test", number_of_images=2, image_size=(160, 128), seed=1)
    settings = settings_file(tmp_path, "detection", capsys, images_dir=str(data / "images"),
                             annotations_dir=str(data / "annotations"), model_path=str(tmp_path / "models"),
                             model_name="run", epochs=1, image_size=128, steps_per_epoch=2)
    model = tmp_path / "models" / "run"
    _, checked, predicted = train_qc_predict(
        "detection", settings, model, ["--images", test / "images", "--annotations", test / "annotations"],
        test / "images", tmp_path / "results", capsys, rerun=False)  # the rerun (the same cli code) would re-export
    # the SavedModel (30 s): classification and grading rerun here, the detection engine tests resume.
    check_run_folder(model, "saved_model.pb", image_size=128, steps_per_epoch=2)
    assert f"held-out test folder {test / 'images'} (2 images)" in checked and "mAP50" in checked
    assert "2 images," in predicted and (tmp_path / "results" / "counts.csv").is_file()
    assert sorted(row["filename"] for row in csv_rows(tmp_path / "results" / "counts.csv")) == \
        ["synthetic_000.png", "synthetic_001.png"]
