"""The one place that names the repository: ``[project.urls] Repository`` and ``[tool.dl4cells] branch``
in ``pyproject.toml``. The notebooks' install source and the README's "Open in Colab" badges are
derived from it (``tests/test_repository.py`` ties them together).

A lab that keeps its own copy (a fork) points everything at it with one command, then commits:

    .venv/bin/python tools/repository.py my-lab/dl4cells --branch main

which rewrites pyproject.toml, the README's badges and CITATION.cff and rebuilds the three notebooks.
"""

import argparse
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
CITATION = ROOT / "CITATION.cff"
NOTEBOOK_BUILDERS = ("build_detection_notebook.py", "build_classification_notebook.py", "build_grading_notebook.py")
GITHUB = "https://github.com/"
BADGE_URL = re.compile(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/([^/\s]+)/notebooks/")
OWNER_AND_NAME = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")


def read_repository(pyproject=PYPROJECT):
    """``("owner/name", "branch")`` from pyproject.toml."""
    data = tomllib.loads(pathlib.Path(pyproject).read_text(encoding="utf-8"))
    url = data["project"]["urls"]["Repository"]
    if not url.startswith(GITHUB):
        raise ValueError(f"{pyproject}: [project.urls] Repository must start with {GITHUB}, not {url!r}")
    return url[len(GITHUB):].rstrip("/"), data["tool"]["dl4cells"]["branch"]


def install_source(pyproject=PYPROJECT):
    """What the notebooks' install cell gives pip, e.g. ``git+https://github.com/OWNER/NAME@main``."""
    repository, branch = read_repository(pyproject)
    return f"git+{GITHUB}{repository}@{branch}"


def colab_url(notebook_file, pyproject=PYPROJECT):
    """The "Open in Colab" address of ``notebooks/<notebook_file>``."""
    repository, branch = read_repository(pyproject)
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/{notebook_file}"


def set_repository(repository, branch):
    """Point pyproject.toml, the README's badges and CITATION.cff at ``repository``/``branch``; rebuild the notebooks."""
    if not OWNER_AND_NAME.match(repository):
        sys.exit(f"{repository!r}: give the repository as OWNER/NAME, e.g. my-lab/dl4cells")
    text = PYPROJECT.read_text(encoding="utf-8")
    text = re.sub(r'^(Repository|Homepage) = ".*"$', lambda m: f'{m.group(1)} = "{GITHUB}{repository}"', text, flags=re.M)
    text = re.sub(r'^(branch) = ".*"$', f'branch = "{branch}"', text, flags=re.M)
    PYPROJECT.write_text(text, encoding="utf-8")
    readme = BADGE_URL.sub(f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/",
                           README.read_text(encoding="utf-8"))
    README.write_text(readme, encoding="utf-8")
    citation = re.sub(r'^repository-code: ".*"$', f'repository-code: "{GITHUB}{repository}"',
                      CITATION.read_text(encoding="utf-8"), flags=re.M)
    CITATION.write_text(citation, encoding="utf-8")
    for builder in NOTEBOOK_BUILDERS:
        subprocess.run([sys.executable, str(ROOT / "tools" / builder)], check=True)
    print(f"Now pointing at {GITHUB}{repository} (branch {branch}): pyproject.toml, README.md, CITATION.cff and notebooks/ "
          f"were rewritten; review and commit them.")


def main(argv=None):
    """Command line: print the repository, or set a new one."""
    parser = argparse.ArgumentParser(description="Show or change the repository the notebooks install from.")
    parser.add_argument("repository", nargs="?", help="OWNER/NAME on GitHub (omit to show the current one)")
    parser.add_argument("--branch", default="main")
    arguments = parser.parse_args(argv)
    if arguments.repository:
        set_repository(arguments.repository, arguments.branch)
    else:
        print(install_source())


if __name__ == "__main__":
    main()
