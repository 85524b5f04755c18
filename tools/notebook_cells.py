"""Cell-building helpers shared by the notebook builder scripts (``tools/build_*_notebook.py``).

A builder calls ``markdown()`` and ``code()`` in order, then ``save(path)``, which writes a
clean notebook (no outputs, Colab form view, GPU runtime) and empties the list for the next one.
Cell ids are stable: a cell whose type and text are unchanged keeps the id it has in the notebook
already on disk, and a new cell gets an id derived from its position and text, so rebuilding an
unchanged notebook gives an identical file (an empty ``git diff``).

Cell groups that read the same in several notebooks (the run-folder part of form 1.1, and the
install, GPU and Google Drive cells of sections 1.2 to 2) are written by ``run_folder_form`` and
``setup_cells``, so that a fix to them reaches every notebook.

Dropdowns are not typed here: a form line ``name = "" #@param CHOICES`` gets the choices of the
config field ``name`` (``with_choices``), so the notebook offers exactly what the config accepts.
"""

import dataclasses
import hashlib
import json
import pathlib
import re
import sys

import nbformat

import repository

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the builders read the configs of this checkout's helpers
CHOICES_MARKER = re.compile(r'^(\w+) = "(\w*)" #@param CHOICES$', re.M)
HELPERS_VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "helpers" / "__init__.py").read_text(encoding="utf-8"),
                            re.M).group(1)

CELLS = []


def markdown(text):
    """Append a markdown cell (surrounding blank lines stripped)."""
    CELLS.append(nbformat.v4.new_markdown_cell(text.strip()))


def code(text, tags=()):
    """Append a code cell shown as a Colab form; ``tags`` e.g. ("parameters",) for papermill."""
    cell = nbformat.v4.new_code_cell(text.strip())
    cell.metadata["cellView"] = "form"
    if tags:
        cell.metadata["tags"] = list(tags)
    CELLS.append(cell)


def _stable_ids(cells, path):
    """Give each cell the id of the same cell (same position, type and text) in the file at ``path``, or a hash."""
    existing = nbformat.read(str(path), as_version=4).cells if path.is_file() else []
    for index, cell in enumerate(cells):
        old = existing[index] if index < len(existing) else None
        if old is not None and old.cell_type == cell.cell_type and old.source == cell.source and "id" in old:
            cell.id = old.id
        else:
            cell.id = hashlib.sha256(f"{index}:{cell.cell_type}:{cell.source}".encode("utf-8")).hexdigest()[:8]


def save(path):
    """Write the cells collected so far as a notebook at ``path``; returns the path."""
    path = pathlib.Path(path)
    _stable_ids(CELLS, path)
    notebook = nbformat.v4.new_notebook(cells=list(CELLS))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["colab"] = {"provenance": [], "toc_visible": True}
    notebook.metadata["accelerator"] = "GPU"
    nbformat.write(notebook, str(path))
    CELLS.clear()
    return path


def dropdown(config_class, name, blank=True):
    """The Colab dropdown list of config field ``name``: ``["", "a", "b"]`` (``""`` = the preset's value)."""
    choices = {item.name: item for item in dataclasses.fields(config_class)}[name].metadata["choices"]
    return json.dumps(([""] if blank else []) + list(choices))


def with_choices(text, config_class):
    """``text`` with each ``name = "" #@param CHOICES`` line given the choices of ``config_class``'s field ``name``."""
    return CHOICES_MARKER.sub(lambda match: f'{match[1]} = "{match[2]}" #@param '
                              f'{dropdown(config_class, match[1], blank=not match[2])}', text)


def run_folder_form(model_name, config_class):
    """The end of form 1.1: run folder (``model_path``/``model_name``), preset, epochs and helpers source."""
    return f"""#@markdown **Where to keep the model**: the run folder is `model_path/model_name`; use the same name again to resume.
model_path = "/content/gdrive/MyDrive/DL4Cells_models" #@param {{type:"string"}}
model_name = "{model_name}" #@param {{type:"string"}}
preset = "default" #@param {dropdown(config_class, "preset", blank=False)}
number_of_epochs = None #@param {{type:"raw"}}
#@markdown **Where the helpers are installed from** (leave as it is; the README says how a lab uses its own copy):
helpers_source = "{repository.install_source()}" #@param {{type:"string"}}
"""


def setup_cells():
    """Append sections 1.2 (install and check), 1.3 (GPU) and 2 (Google Drive).

    The install cell runs pip only when this notebook's version of the helpers is not the one
    installed (not merely when some module called ``helpers`` can be imported), and keeps pip's
    output visible: Colab's "Restart session" prompt reacts to it. It records the runtime's
    packages before pip runs, so that ``check_installation`` can say which of them pip replaced.
    """
    markdown("""
### 1.2 Install and check
Installs the helpers and what they need (a few minutes on Colab; skipped when this version is
already installed) and checks them. On Colab nothing that Colab preinstalls is changed. If it says
the runtime must be restarted, choose *Runtime → Restart session* and run the notebook again from
the top.
""")
    code(f"""
#@title 1.2 Install and check the versions
import importlib.metadata
preinstalled = {{package.metadata["Name"]: package.version for package in importlib.metadata.distributions()}}
if preinstalled.get("dl4cells-helpers") != "{HELPERS_VERSION}":
    !pip install --progress-bar off "{{helpers_source}}"
import helpers.notebook as notebook
installation_problems = notebook.check_installation(preinstalled, expected_version="{HELPERS_VERSION}")
""")
    code("""
#@title 1.3 Is there a GPU?
gpu = notebook.check_gpu()
""")
    markdown("""
## 2. Google Drive
On Colab this connects your Google Drive (a window asks for permission) so that the notebook can
read your images and save the run folder there; anywhere else it uses the local folders you typed.
""")
    code("""
#@title 2. Connect Google Drive
storage = notebook.connect_storage()
""")
