"""Issue 23 point 4: a quick run says, when training ends, that it only checks that everything works."""

import pytest

from helpers import config as config_module
from helpers.classification.config import ClassificationConfig
from helpers.detection.config import DetectionConfig
from helpers.grading.config import GradingConfig


@pytest.mark.parametrize("config_class", [DetectionConfig, ClassificationConfig, GradingConfig])
def test_quick_runs_say_so_and_default_runs_do_not(config_class):
    quick = config_module.config_from_form(config_class, "quick")
    notice = config_module.quick_run_notice(quick)
    assert notice.startswith(f"This was a quick run (preset = quick, {quick.epochs} epochs)")
    assert "not how well a model can learn" in notice and "preset = default" in notice
    assert config_module.quick_run_notice(config_module.config_from_form(config_class, "default")) == ""


def test_the_notice_states_the_epochs_actually_trained():
    longer = config_module.config_from_form(DetectionConfig, "quick", epochs=40)
    assert "(preset = quick, 40 epochs)" in config_module.quick_run_notice(longer)
