"""One place names the repository (pyproject.toml); the notebooks, the README's badges and the
citation follow it, and the version the notebooks install is the package's own."""

import json
import pathlib
import re
import sys

import yaml

import helpers
from tests.conftest import REPOSITORY_ROOT

sys.path.insert(0, str(REPOSITORY_ROOT / "tools"))
import repository  # noqa: E402

NOTEBOOKS = sorted((REPOSITORY_ROOT / "notebooks").glob("*.ipynb"))


def notebook_sources(path: pathlib.Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for cell in cells if cell["cell_type"] == "code"]


def test_every_notebook_installs_from_the_repository_and_expects_this_version():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        text = "\n".join(notebook_sources(path))
        sources = re.findall(r'^helpers_source = "([^"]+)"', text, re.M)
        assert sources == [repository.install_source()], path.name
        expected = re.findall(r'expected_version="([^"]+)"', text)
        compared = re.findall(r'preinstalled.get\("dl4cells-helpers"\) != "([^"]+)"', text)
        assert expected == compared == [helpers.__version__], f"{path.name}: rebuild it with tools/build_*_notebook.py"


def test_the_readme_badges_open_these_notebooks_of_the_repository():
    readme = (REPOSITORY_ROOT / "README.md").read_text(encoding="utf-8")
    badges = re.findall(r"\(https://colab\.research\.google\.com/github/[^)]+\)", readme)
    assert len(badges) == len(NOTEBOOKS)
    for path in NOTEBOOKS:
        assert f"({repository.colab_url(path.name)})" in badges, path.name


def test_the_repository_is_named_nowhere_else():
    owner_and_name, _branch = repository.read_repository()
    places = []
    for path in [*REPOSITORY_ROOT.glob("helpers/**/*.py"), *REPOSITORY_ROOT.glob("tools/*.py")]:
        if owner_and_name in path.read_text(encoding="utf-8"):
            places.append(str(path.relative_to(REPOSITORY_ROOT)))
    assert not places, f"{owner_and_name} is written out in {places}: derive it from tools/repository.py"


def test_citation_and_licence_are_there_and_agree():
    citation = yaml.safe_load((REPOSITORY_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["version"] == helpers.__version__
    assert citation["license"] == "MIT" and "MIT License" in (REPOSITORY_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert citation["repository-code"] == "https://github.com/" + repository.read_repository()[0]
    titles = " | ".join(reference["title"] for reference in citation["references"])
    for cited in ("Focal Loss for Dense Object Detection", "TensorFlow Model Garden", "ZeroCostDL4Mic"):
        assert cited in titles
