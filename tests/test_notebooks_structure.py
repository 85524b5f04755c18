"""Notebooks stay thin and papermill-safe: checked by parsing every committed notebook."""

import ast
import json
import pathlib
import re

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
FORM_FIELD = re.compile(r"^(\w+)\s*=\s*.+#@param", re.M)


def code_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [cell for cell in cells if cell["cell_type"] == "code"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_function_or_class_definitions(path):
    for index, cell in enumerate(code_cells(path)):
        # Colab shell escapes (!pip, %cd) are not Python; blank them before parsing.
        text = re.sub(r"^(\s*)[!%].*$", r"\1pass", source(cell), flags=re.M)
        tree = ast.parse(text)
        defined = [node for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defined, f"{path.name} cell {index} defines {type(defined[0]).__name__}: move it to helpers/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_without_outputs(path):
    for index, cell in enumerate(code_cells(path)):
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} cell {index} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_first_form_cell_is_the_only_parameters_cell_and_later_forms_do_not_reassign(path):
    cells = code_cells(path)
    form_cells = [cell for cell in cells if FORM_FIELD.search(source(cell))]
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    assert form_cells[0] is tagged[0], "the first form cell must be the one tagged 'parameters'"
    parameter_names = set(FORM_FIELD.findall(source(tagged[0])))
    for cell in form_cells[1:]:
        reassigned = parameter_names & set(FORM_FIELD.findall(source(cell)))
        assert not reassigned, f"a later form cell reassigns {reassigned}: papermill's values would be undone"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_code_cells_are_a_few_statements(path):
    for index, cell in enumerate(code_cells(path)):
        text = re.sub(r"^(\s*)[!%].*$", r"\1pass", source(cell), flags=re.M)
        form_assignments = len(FORM_FIELD.findall(source(cell)))
        statements = len(ast.parse(text).body) - form_assignments
        assert statements <= 8, f"{path.name} cell {index} has {statements} statements; move logic to helpers/"


# ---------------------------------------------------------------- dropdowns come from the configs

DROPDOWN = re.compile(r'^(\w+) = "(\w*)" #@param (\[.*\])$', re.M)
CONFIG_OF_NOTEBOOK = {"detection_retinanet.ipynb": "helpers.detection.config:DetectionConfig",
                      "classification.ipynb": "helpers.classification.config:ClassificationConfig",
                      "grading.ipynb": "helpers.grading.config:GradingConfig"}
BUILDERS = sorted((pathlib.Path(__file__).resolve().parents[1] / "tools").glob("build_*_notebook.py"))


def config_choices(notebook_name):
    """Config field name -> its choices, for the config of a notebook."""
    import dataclasses
    import importlib

    module_name, class_name = CONFIG_OF_NOTEBOOK[notebook_name].split(":")
    config_class = getattr(importlib.import_module(module_name), class_name)
    return {item.name: list(item.metadata["choices"]) for item in dataclasses.fields(config_class)
            if item.metadata.get("choices")}


def test_every_notebook_has_its_config():
    assert sorted(CONFIG_OF_NOTEBOOK) == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_dropdowns_offer_exactly_the_config_choices(path):
    choices = config_choices(path.name)
    dropdowns = [match for cell in code_cells(path) for match in DROPDOWN.findall(source(cell))]
    checked = [(name, default, json.loads(offered)) for name, default, offered in dropdowns if name in choices]
    assert {name for name, _, _ in checked} >= {"preset", "backbone", "pretrained"}
    for name, default, offered in checked:
        # "" = the preset's value; a field with a form default (preset) offers the choices alone.
        assert offered == ([""] if default == "" else []) + choices[name], f"{path.name}: dropdown {name}"


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda path: path.name)
def test_builders_do_not_type_the_choices_of_a_config_field(builder):
    notebook = {"build_detection_notebook.py": "detection_retinanet.ipynb"}.get(builder.name,
                                                                               builder.name[6:-12] + ".ipynb")
    typed = [name for name, _, _ in DROPDOWN.findall(builder.read_text(encoding="utf-8"))
             if name in config_choices(notebook)]
    assert typed == [], f"{builder.name} types the choices of {typed}; write '#@param CHOICES' (with_choices)"
