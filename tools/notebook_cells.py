"""Cell-building helpers shared by the notebook builder scripts (``tools/build_*_notebook.py``).

A builder calls ``markdown()`` and ``code()`` in order, then ``save(path)``, which writes a
clean notebook (no outputs, Colab form view, GPU runtime) and empties the list for the next one.
Cell ids are stable: a cell whose type and text are unchanged keeps the id it has in the notebook
already on disk, and a new cell gets an id derived from its position and text, so rebuilding an
unchanged notebook gives an identical file (an empty ``git diff``).

Cell groups that read the same in several notebooks (the example and run-folder part of form 1.1,
and the install, GPU, Google Drive and example-dataset cells of sections 1.2 to 2.1) are written by
``run_folder_form`` and ``setup_cells``, so that a fix to them reaches every notebook. The settings
of a check cell are written by ``settings_form`` from the config's defaults, so a form shows the
value that will be used, never ``None``; every cell imports what it calls, so that it runs after
sections 1–2 alone.

Dropdowns are not typed here: ``setting_line`` gives a config field with choices the dropdown of
exactly those choices (``dropdown``), so the notebook offers exactly what the config accepts.
"""

import dataclasses
import hashlib
import json
import pathlib
import re
import sys
import textwrap

import nbformat

import repository

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the builders read the configs of this checkout's helpers
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


def field_default(config_class, name):
    """The value field ``name`` of ``config_class`` has in the ``default`` preset."""
    return {item.name: item for item in dataclasses.fields(config_class)}[name].default


def setting_line(config_class, name):
    """One form line showing the ``default`` preset's value of field ``name``, typed so that Colab can never
    write a syntax error: numbers are text fields (a cleared one is ``""``, the preset's value; a decimal comma
    is read by ``helpers.config``), yes/no a checkbox, choices a dropdown, text a text field."""
    item = {item.name: item for item in dataclasses.fields(config_class)}[name]
    value = item.default
    if item.metadata.get("choices"):
        return f'{name} = "{value}" #@param {dropdown(config_class, name, blank=False)}'
    if isinstance(value, bool):
        return f'{name} = {value} #@param {{type:"boolean"}}'
    if isinstance(value, (int, float)):
        return f'{name} = "{value:.10g}" #@param {{type:"string"}}'
    return f'{name} = {json.dumps(value)} #@param {{type:"string"}}'


def settings_form(config_class, everyday, expert):
    """Form lines for the settings of a check cell: the ``everyday`` fields, then the ``expert`` ones under
    their own heading (Colab forms cannot fold a group, so a heading and the order keep them apart)."""
    lines = ["#@markdown **Settings** (they show the default preset's values; the preset's value is used for a field "
             "you leave as it is):"]
    lines += [setting_line(config_class, name) for name in everyday]
    lines += ["#@markdown **Expert settings (leave as they are)**:"]
    lines += [setting_line(config_class, name) for name in expert]
    return "\n".join(lines)


def example_choices(task):
    """The Example_dataset dropdown of a task: ``["none", <the manifest's datasets of that task>]``."""
    from helpers import downloads

    return json.dumps(["none"] + [name for name, entry in downloads.load_manifest().items() if entry.task == task])


def run_folder_form(model_name, config_class, task):
    """The end of form 1.1: the example dataset, run folder (``model_path``/``model_name``), preset, epochs and
    helpers source."""
    return f"""#@markdown **Or try an example dataset** (downloaded by cell 2.1 into `model_path/example_data`; it replaces the data folders above; `none` = your own data):
Example_dataset = "none" #@param {example_choices(task)}
#@markdown **Where to keep the model**: the run folder is `model_path/model_name`; use the same name again to resume.
model_path = "/content/gdrive/MyDrive/DL4Cells_models" #@param {{type:"string"}}
model_name = "{model_name}" #@param {{type:"string"}}
preset = "default" #@param {dropdown(config_class, "preset", blank=False)}
number_of_epochs = "{field_default(config_class, "epochs")}" #@param {{type:"string"}}
#@markdown **Where the helpers are installed from** (leave as it is; the README says how a lab uses its own copy):
helpers_source = "{repository.install_source()}" #@param {{type:"string"}}
"""


def which_sections(model_word, predict_word):
    """Section 0's paragraph saying which sections to run to train, to check a model, or to use one."""
    return f"""
**Which sections to run.** Every cell runs after sections 1 and 2 alone, so there are three ways through:
- **to train a {model_word}**: every section, from top to bottom (1 → 6);
- **to check a {model_word} you trained before** (quality control only): sections 1 and 2, then 5, with
  that run's `model_path` and `model_name` in form 1.1 (or its run folder in `QC_model_folder`);
- **to {predict_word} new images with a {model_word} you trained before**: sections 1 and 2, then 6, with that
  run's `model_path` and `model_name` in form 1.1 (or its run folder in `Prediction_model_folder`) and
  the new images in `Prediction_images`.

Sections 3 and 4 are needed only to train. Inside a section run the cells in order: a cell numbered
5.2 shows what 5.1 measured.
"""


def setup_cells(task):
    """Append sections 1.2 (install and check), 1.3 (GPU), 2 (Google Drive) and 2.1 (the example dataset of 1.1).

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
import helpers.notebook as notebook
gpu = notebook.check_gpu()
""")
    markdown("""
## 2. Google Drive
On Colab this connects your Google Drive (a window asks for permission) so that the notebook can
read your images and save the run folder there; anywhere else it uses the local folders you typed.
""")
    code("""
#@title 2. Connect Google Drive
import helpers.notebook as notebook
storage = notebook.connect_storage()
""")
    from helpers import example_data

    fields = textwrap.fill(", ".join(example_data.FORM_FIELDS[task]), 100, subsequent_indent="    ")
    code(f"""
#@title 2.1 The example dataset chosen in 1.1 (nothing to do when Example_dataset is none)
import helpers.notebook as notebook
({fields}) = notebook.use_example(
    Example_dataset, model_path, {fields})
""")


def model_zoo_cells(model_word, task):
    """Append section 5.3: share the run's model as a BioImage Model Zoo package (``workflow.export_model_zoo``).

    Args:
        model_word: "classifier" or "grader".
        task: the workflow module's package, "classification" or "grading".
    """
    from helpers import model_zoo

    markdown(f"""
### 5.3 Share the model (BioImage Model Zoo)
Writes the {model_word} as a **BioImage Model Zoo package**: one zip (`bioimageio/<model_name>.zip` in the run
folder; an earlier zip is never replaced, the next is `<model_name>_2.zip`) with the model (Keras 3
`.keras`), a description (`rdf.yaml`, format 0.5), one of your images with the model's answer as a
test, a cover picture and a README built from this run: the training data, the settings, the
quality-control numbers of 5.1 (run 5.1 first), the preprocessing, the limits of the model and what to
cite. It is checked with `bioimageio.spec`, the model zoo's own validator. Upload the zip at
[bioimage.io](https://bioimage.io/#/upload) to share the model, or send it to a colleague: the README
in it says how to load it with Keras. The README names the folder of your images but not its full
path; your images themselves are not included, only the one test image. `Authors`: names separated by
commas (empty = "{model_zoo.DEFAULT_AUTHOR}"); `Model_description`: one sentence (empty = written for you).
""")
    code(f"""
#@title 5.3 Share the model as a BioImage Model Zoo package
Authors = "" #@param {{type:"string"}}
Licence = "{model_zoo.DEFAULT_LICENCE}" #@param {json.dumps(list(model_zoo.LICENCE_CHOICES))}
Model_description = "" #@param {{type:"string"}}
import helpers.{task}.workflow as workflow
model_zoo_package = workflow.export_model_zoo(model_path, model_name, Test_images, other_model_folder=QC_model_folder, authors=Authors, licence=Licence, description=Model_description)
""")
