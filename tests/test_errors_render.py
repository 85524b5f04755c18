"""Our errors show in IPython/Jupyter as their one line (message and fix), not under a Python traceback."""

import pytest
from IPython.core.interactiveshell import InteractiveShell

from helpers import errors

MESSAGE = "Training_images: /nope does not exist. Type the folder that holds your training images."


@pytest.fixture
def shell():
    """An IPython shell like the notebook kernel's (same showtraceback), torn down after the test."""
    instance = InteractiveShell.instance()
    yield instance
    InteractiveShell.clear_instance()


def shown(shell, capsys, code: str) -> str:
    """What IPython prints when a cell runs ``code``, colours off."""
    shell.colors = "NoColor"
    shell.InteractiveTB.set_colors("NoColor")
    shell.run_cell(code)
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_helpers_error_renders_as_its_one_line(shell, capsys, monkeypatch):
    monkeypatch.delenv(errors.FULL_TRACEBACK_VARIABLE, raising=False)
    text = shown(shell, capsys, f"from helpers import errors\nraise errors.ConfigError({MESSAGE!r})")
    assert text.strip() == f"ConfigError: {MESSAGE}"


def test_str_is_the_message_alone():
    assert str(errors.DatasetError(MESSAGE)) == MESSAGE


def test_other_errors_keep_their_traceback(shell, capsys):
    text = shown(shell, capsys, "raise ValueError('plain')")
    assert "Traceback (most recent call last)" in text and "ValueError: plain" in text


def test_developers_can_ask_for_the_full_traceback(shell, capsys, monkeypatch):
    monkeypatch.setenv(errors.FULL_TRACEBACK_VARIABLE, "1")
    text = shown(shell, capsys, f"from helpers import errors\nraise errors.ModelError({MESSAGE!r})")
    assert "Traceback (most recent call last)" in text and f"ModelError: {MESSAGE}" in text
