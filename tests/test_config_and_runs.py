"""Config validation (form fields -> typed config) and run folders (resume or refuse, never delete)."""

import pathlib

import pytest

from helpers import config, environment, errors, runs
from helpers.detection.config import DetectionConfig


def make_config(**fields):
    return config.config_from_form(DetectionConfig, "quick", images_dir="imgs", annotations_dir="xml", **fields)


def test_blank_fields_take_the_preset_and_typed_fields_win():
    quick = make_config(batch_size=None, epochs="5")
    assert quick.batch_size == DetectionConfig.PRESETS["quick"]["batch_size"]
    assert quick.epochs == 5 and isinstance(quick.epochs, int)
    assert quick.preset == "quick"
    default = config.config_from_form(DetectionConfig, "default", epochs=None)
    assert default.epochs == 50


@pytest.mark.parametrize("fields, message", [
    ({"epoch": 3}, "Did you mean 'epochs'"),
    ({"epochs": 0}, "epochs: 0 is outside"),
    ({"epochs": 2.5}, "whole number"),
    ({"learning_rate": "fast"}, "learning_rate: expected a number"),
    ({"backbone": "yolo"}, "backbone: 'yolo' is not one of"),
    ({"image_size": 300}, "multiple of 128"),
    ({"random_flip": "maybe"}, "random_flip"),
])
def test_bad_form_values_name_the_field(fields, message):
    with pytest.raises(errors.ConfigError, match=message):
        make_config(**fields)


def test_unknown_preset_is_refused():
    with pytest.raises(errors.ConfigError, match="preset"):
        config.config_from_form(DetectionConfig, "fastest")


def test_yaml_round_trip(tmp_path):
    original = make_config(learning_rate=3e-4, random_flip="false")
    path = config.save_config(original, tmp_path / "config.yaml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# DetectionConfig\n# written by dl4cells-helpers ")
    assert environment.helpers_version() in text.splitlines()[1]
    assert config.load_config(DetectionConfig, path) == original
    assert original.random_flip is False


def test_run_folder_resumes_with_same_settings_and_refuses_others(tmp_path):
    first = runs.open_run_folder(tmp_path, "cells_1", make_config())
    assert not first.resumed and first.checkpoints.is_dir() and first.config_path.is_file()
    marker = first.checkpoints / "ckpt-1.index"
    marker.write_text("x")
    again = runs.open_run_folder(tmp_path, "cells_1", make_config(epochs=7))  # more epochs: resumable
    assert again.resumed and marker.read_text() == "x"
    assert "epochs: 7" in again.config_path.read_text(encoding="utf-8")
    with pytest.raises(errors.ConfigError, match=r"batch_size: 2 → 4"):
        runs.open_run_folder(tmp_path, "cells_1", make_config(batch_size=4))
    assert marker.read_text() == "x"


def test_run_folder_refuses_foreign_folder_and_bad_names(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.docx").write_text("precious")
    with pytest.raises(errors.ConfigError, match="not a DL4Cells run folder"):
        runs.open_run_folder(tmp_path, "thesis", make_config())
    assert (foreign / "chapter1.docx").read_text() == "precious"
    for name in ("", "../escape", "a/b", ".hidden"):
        with pytest.raises(errors.ConfigError, match="model_name"):
            runs.open_run_folder(tmp_path, name, make_config())


def test_label_map_round_trip(tmp_path):
    run = runs.open_run_folder(tmp_path, "r", make_config())
    run.write_label_map(["RBC", "WBC", "Plättchen"])
    assert run.read_label_map() == ["RBC", "WBC", "Plättchen"]
    with pytest.raises(errors.ModelError, match="label_map.json"):
        runs.RunFolder(root=tmp_path / "empty").read_label_map()
