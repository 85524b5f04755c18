"""requirements.txt is pyproject.toml's runtime dependencies, written by tools/requirements.py (one source of truth)."""

import sys

from packaging.requirements import Requirement

from tests.conftest import REPOSITORY_ROOT

sys.path.insert(0, str(REPOSITORY_ROOT / "tools"))
import requirements as requirements_tool  # noqa: E402  (tools/requirements.py)


def requirement_lines(text: str) -> list[Requirement]:
    """The requirements of a requirements.txt text (comments and blank lines left out)."""
    return [Requirement(line.split("#")[0].strip()) for line in text.splitlines() if line.split("#")[0].strip()]


def test_requirements_txt_is_pyprojects_dependencies_as_the_tool_writes_them():
    written = (REPOSITORY_ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert written == requirements_tool.requirements_text(), \
        "requirements.txt is out of date: run .venv/bin/python tools/requirements.py"
    assert [str(requirement) for requirement in requirement_lines(written)] == \
        [str(Requirement(text)) for text in requirements_tool.dependencies()]


def test_no_test_tool_is_a_runtime_requirement():
    import tomllib

    extras = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    test_tools = {Requirement(text).name for text in extras["test"]}
    names = {requirement.name for requirement in requirement_lines(requirements_tool.requirements_text())}
    assert "pytest" in test_tools and not names & test_tools


def test_the_tool_follows_pyproject_and_keeps_each_bounds_reason(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = [\n    "numpy>=1.26,<2.4",  # 2.4 breaks COCO\n'
                         '    "tqdm>=4.66",\n]\n[project.optional-dependencies]\ntest = ["pytest>=8"]\n', encoding="utf-8")
    text = requirements_tool.requirements_text(pyproject)
    assert text.startswith(requirements_tool.HEADER)
    assert text[len(requirements_tool.HEADER):] == "numpy>=1.26,<2.4  # 2.4 breaks COCO\ntqdm>=4.66\n"
