"""Colab is the test environment: its versions are the ones we build with, and installing the
helpers on Colab changes none of Colab's own packages (pip's resolver, on a stand-in of the runtime).

The resolution tests need the package index (pip reads package metadata there) and skip with the
reason when it cannot be reached; CI reaches it.
"""

import datetime
import importlib.metadata
import os
import pathlib
import platform
import sys
import warnings

import pytest

from helpers import environment
from tests.conftest import REPOSITORY_ROOT

sys.path.insert(0, str(REPOSITORY_ROOT / "tools"))
import colab_constraints  # noqa: E402
import colab_resolution  # noqa: E402

CONSTRAINTS = REPOSITORY_ROOT / "constraints" / "colab-gpu.txt"
OLDER_RUNTIME = REPOSITORY_ROOT / "constraints" / "colab-gpu-runtime-2026.04.txt"
SHARED_COLAB = REPOSITORY_ROOT.parent / "shared" / "colab"
FRESHNESS_DAYS = 120
# What the tests run against: Colab's version of each must be the installed one.
HEADLINE_PACKAGES = ("tensorflow", "keras", "tf-keras", "numpy", "ipywidgets", "ipython", "ipykernel",
                     "scikit-learn", "pandas", "protobuf", "matplotlib")


def resolve_or_skip(python, pins, project=REPOSITORY_ROOT):
    """``colab_resolution.resolve``, skipping the test (with pip's words) when the index is unreachable."""
    try:
        return colab_resolution.resolve(python, pins, project)
    except colab_resolution.IndexUnreachable as error:
        pytest.skip(f"the package index cannot be reached, so pip cannot resolve: {str(error).splitlines()[0]}")


def python_or_skip(constraints):
    """An interpreter of the constraints' Colab Python (X.Y), or skip naming the version."""
    wanted = ".".join(colab_resolution.header_value(constraints, "colab-python").split(".")[:2])
    python = colab_resolution.find_python(wanted)
    if python is None:
        pytest.skip(f"no Python {wanted} on this machine (pyenv install {wanted} provides it)")
    return python


def test_constraints_header_names_its_source():
    assert colab_resolution.header_value(CONSTRAINTS, "source-commit") == "a724079"
    assert colab_resolution.header_value(CONSTRAINTS, "colab-python") == "3.13.15"
    datetime.date.fromisoformat(colab_resolution.header_value(CONSTRAINTS, "source-date"))
    pins = colab_resolution.read_pins(CONSTRAINTS)
    assert pins["tensorflow"] == "2.20.0" and pins["numpy"] == "2.1.3" and "pip" not in pins


@pytest.mark.parametrize("freeze, constraints", [("pip-freeze.gpu.txt", CONSTRAINTS),
                                                 ("pip-freeze.gpu.runtime-2026.04.txt", OLDER_RUNTIME)])
def test_constraints_are_generated_from_the_vendored_freeze(freeze, constraints):
    """A refreshed ../shared/colab without a regenerated constraints file fails here, naming the script."""
    path = SHARED_COLAB / freeze
    if not path.is_file():
        pytest.skip(f"{path} is absent (Colab's freezes live beside the repository)")
    expected = colab_constraints.pinned_packages(path.read_text(encoding="utf-8"))
    found = colab_constraints.pinned_packages(constraints.read_text(encoding="utf-8"))
    assert found == expected, f"{constraints.name} is out of date: run tools/colab_constraints.py (see its docstring)"


def test_pip_freeze_lines_from_urls_and_pip_itself_are_not_constraints():
    freeze = ("numpy==2.1.3\npip==24.1.2\ngoogle-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n"
              "torch==2.11.0+cu128\n# a comment\nPyYAML==6.0.3\n")
    assert colab_constraints.pinned_packages(freeze) == [("numpy", "2.1.3"), ("torch", "2.11.0+cu128"),
                                                         ("PyYAML", "6.0.3")]


def freeze_age_warning(source_date, today):
    """The warning text when the vendored freeze is older than FRESHNESS_DAYS, else None."""
    age = (today - datetime.date.fromisoformat(source_date)).days
    if age <= FRESHNESS_DAYS:
        return None
    return (f"constraints/colab-gpu.txt comes from Colab's freeze of {source_date}, {age} days ago: Colab may have "
            f"moved on. Copy the newest pip-freeze.gpu.txt and os-info-gpu.txt from googlecolab/backend-info into "
            f"../shared/colab/ (update its SOURCE.md), run tools/colab_constraints.py, then make test.")


def test_freshness_of_the_vendored_freeze():
    """Warns (does not fail) when Colab's freeze is more than 120 days old."""
    message = freeze_age_warning(colab_resolution.header_value(CONSTRAINTS, "source-date"), datetime.date.today())
    if message:
        warnings.warn(message)


def test_freshness_warning_says_how_to_refresh():
    assert freeze_age_warning("2026-08-19", datetime.date(2026, 12, 16)) is None  # 119 days
    message = freeze_age_warning("2026-08-19", datetime.date(2026, 12, 18))
    assert "121 days ago" in message and "tools/colab_constraints.py" in message


def test_this_environment_has_colabs_versions():
    """`make test` builds with the constraints: every package Colab pins is at Colab's version here."""
    pins = colab_resolution.read_pins(CONSTRAINTS)
    installed = environment.installed_distributions()
    differing = {name: (installed[name], version) for name, version in pins.items()
                 if name in installed and installed[name] != version and name != "dl4cells-helpers"}
    assert not differing, f"installed differently from Colab (installed, Colab): {differing}; run make test"
    for name in HEADLINE_PACKAGES:
        assert importlib.metadata.version(name) == pins[name], name


def test_this_environment_runs_colabs_python():
    colab_python = colab_resolution.header_value(CONSTRAINTS, "colab-python").split(".")[:2]
    running = platform.python_version_tuple()[:2]
    if list(running) != colab_python and not os.environ.get("CI"):
        pytest.skip(f"Python {platform.python_version()} here, Colab has {'.'.join(colab_python)} "
                    f"(PYTHON=... make test chose another interpreter; CI always runs Colab's)")
    assert list(running) == colab_python


@pytest.mark.network
def test_installing_the_helpers_on_colab_changes_none_of_its_packages():
    pins = colab_resolution.read_pins(CONSTRAINTS)
    resolution = resolve_or_skip(python_or_skip(CONSTRAINTS), pins)
    changed = [f"{name} {before} -> {after}" for name, (before, after) in sorted(resolution.changed.items())]
    assert not changed, f"installing the helpers on Colab would replace Colab's: {', '.join(changed)}"
    assert "tf-models-official" in resolution.added  # the one large package Colab lacks
    test_tools = {"nbval", "papermill", "pypdf"} & set(resolution.added)
    assert not test_tools, f"test tooling would be installed on the user's runtime: {test_tools}"


@pytest.mark.network
def test_the_resolution_sees_a_package_that_would_be_upgraded(tmp_path):
    """The check can fail: a project asking for ipywidgets 8 (as ours once did) is caught by name."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "needs-new-widgets"\nversion = "1"\ndependencies = ["ipywidgets>=8"]\n'
        '[tool.setuptools]\npy-modules = []\n', encoding="utf-8")
    pins = colab_resolution.read_pins(CONSTRAINTS)
    resolution = resolve_or_skip(python_or_skip(CONSTRAINTS), pins, project)
    assert resolution.changed["ipywidgets"][0] == "7.7.1"
    assert resolution.changed["ipywidgets"][1].startswith("8.")


@pytest.mark.network
def test_older_runtime_2026_04_records_what_would_change_and_the_message_says_what_to_do():
    pins = colab_resolution.read_pins(OLDER_RUNTIME)
    resolution = resolve_or_skip(python_or_skip(OLDER_RUNTIME), pins)
    recorded = ", ".join(f"{name} {before} -> {after}" for name, (before, after) in sorted(resolution.changed.items()))
    warnings.warn(f"On Colab's runtime 2026.04 (Python {resolution.python}) installing the helpers "
                  f"replaces: {recorded}")
    assert resolution.changed["tensorflow"][0] == "2.19.0"
    assert resolution.changed["tensorflow"][1].startswith("2.20.")
    message = environment.install_changes_message(resolution.changed)
    assert "came with TensorFlow 2.19.0" in message and "Runtime version: Latest" in message
    assert f"replaced {len(resolution.changed)} of the runtime's packages" in message
