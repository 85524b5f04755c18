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
