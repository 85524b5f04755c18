"""Form values as a biologist types them (issue 23, point 5): decimal commas, fields left at the value they
show, and the short table of settings that differ from the preset that the data check prints."""

import pytest

from helpers import config, errors, notebook
from helpers.classification.config import ClassificationConfig
from helpers.detection.config import DetectionConfig


def form(preset="default", **values):
    """``config_from_form`` as the notebooks call it (``workflow.open_session``)."""
    return config.config_from_form(DetectionConfig, preset, defaults_mean_preset=True, images_dir="images", **values)


@pytest.mark.parametrize("typed, expected", [("0,001", 0.001), (" 0.0005 ", 0.0005), ("0,5", 0.5), ("1", 1.0)])
def test_a_decimal_comma_or_point_gives_the_number(typed, expected):
    assert form(learning_rate=typed).learning_rate == pytest.approx(expected)


def test_integers_typed_as_text_are_read_and_a_comma_in_one_is_named():
    assert form(batch_size=" 4 ").batch_size == 4
    with pytest.raises(errors.ConfigError, match="batch_size: expected a whole number, got '2,5'"):
        form(batch_size="2,5")


def test_the_tuple_a_raw_field_makes_of_a_decimal_comma_is_named_as_such():
    with pytest.raises(errors.ConfigError, match=r"learning_rate: got \(0, 1\).*decimal comma.*0\.001"):
        form(learning_rate=(0, 1))


def test_text_that_is_no_number_names_the_field():
    with pytest.raises(errors.ConfigError, match="focal_gamma: expected a number, got '1.5,2'"):
        form(focal_gamma="1.5,2")


def test_a_field_left_at_the_value_it_shows_takes_the_quick_preset_and_a_changed_one_wins():
    shown = {"batch_size": "8", "image_size": "384", "pretrained": "coco", "epochs": "50"}
    quick = form("quick", **shown)
    assert (quick.batch_size, quick.image_size, quick.pretrained, quick.epochs) == (2, 256, "none", 2)
    changed = form("quick", **{**shown, "batch_size": "4", "epochs": 40})
    assert (changed.batch_size, changed.epochs, changed.image_size) == (4, 40, 256)
    assert form("default", **shown).batch_size == 8


def test_programs_keep_the_value_they_pass_even_when_it_is_the_default():
    assert config.config_from_form(DetectionConfig, "quick", batch_size=8).batch_size == 8


def test_the_summary_lists_only_what_differs_from_the_preset():
    summary = config.settings_summary(form("quick", learning_rate="0,0005", remove_background=True, batch_size="8",
                                           model_path="/models", model_name="run"))
    lines = summary.splitlines()
    assert lines[0] == "Preset: quick (it sets pretrained none, epochs 2, batch_size 2, image_size 256, warmup_epochs 0.5)"
    assert lines[1] == "Settings that differ from the quick preset:"
    table = lines[2:-1]
    assert table[0].split() == ["setting", "value", "used", "preset", "value"]
    assert [row.split() for row in table[1:]] == [["learning_rate", "0.0005", "0.001"],
                                                  ["remove_background", "True", "False"]]
    assert lines[-1] == "All settings are in config.yaml in the run folder."
    assert len(lines) < 10  # not the 33 lines of YAML it replaced


def test_the_summary_of_an_unchanged_default_run_is_three_lines():
    summary = config.settings_summary(config.config_from_form(ClassificationConfig, "default", images_dir="x"))
    assert summary.splitlines() == ["Preset: default", "Every other setting is the default preset's.",
                                    "All settings are in config.yaml in the run folder."]


def test_no_example_dataset_keeps_the_form_values(capsys):
    assert notebook.use_example("none", "/models", "images", "annotations", "", "") == ("images", "annotations", "", "")
    assert "Example_dataset is none" in capsys.readouterr().out
