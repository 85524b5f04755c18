"""Notebooks stay thin and papermill-safe: checked by parsing every committed notebook."""

import ast
import builtins
import json
import pathlib
import re

import pytest

from helpers import demo

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
    assert typed == [], f"{builder.name} types the choices of {typed}; let settings_form or dropdown write them"


# ---------------------------------------------------------------- every cell runs after sections 1–2 alone

def title_section(cell):
    """The top-level section of a code cell's ``#@title`` ("6.2 Rank ..." -> "6"), or None."""
    first = source(cell).split("\n", 1)[0]
    return first.split()[1].split(".")[0] if first.startswith("#@title ") else None


def names_defined_and_read(text):
    """(names a cell defines, names it reads) from its source; ``!`` shell lines are left out."""
    tree = ast.parse(re.sub(r"^(\s*)[!%].*$", r"\1pass", text, flags=re.M))
    defined, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return defined, read


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_every_code_cell_has_a_numbered_title(path):
    for index, cell in enumerate(code_cells(path)):
        assert title_section(cell) in {str(number) for number in range(1, 7)}, f"{path.name} cell {index}: no #@title N"


@pytest.mark.parametrize("way", sorted(demo.NOTEBOOK_PATHS))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_each_cell_reads_only_names_defined_earlier_on_its_path(path, way):
    """Sections 1–2 and then 5 (or 6) alone: no cell may need a name from a section that was skipped."""
    known = set(dir(builtins))
    for cell in code_cells(path):
        if title_section(cell) not in demo.NOTEBOOK_PATHS[way]:
            continue
        defined, read = names_defined_and_read(source(cell))
        missing = read - known - defined
        assert not missing, (f"{path.name}, path '{way}': cell '{source(cell).splitlines()[0]}' reads {sorted(missing)}, "
                             f"defined only in a section this path skips")
        known |= defined


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_raw_form_fields(path):
    """A raw field shows None, a cleared one is a syntax error in Colab and "0,001" becomes a tuple: none are left."""
    for cell in code_cells(path):
        assert 'type:"raw"' not in source(cell), f"{path.name}: {source(cell).splitlines()[0]} has a raw field"
        assert not re.search(r"^\w+ = None #@param", source(cell), re.M), f"{path.name}: a form field shows None"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_cell_ends_in_an_object_that_jupyter_would_display(path):
    """A bare call at the top level of a cell must be a show/print: any other value (a path, a dataclass, a widget
    shown a second time) would be displayed as Python's repr under the cell."""
    for cell in code_cells(path):
        text = re.sub(r"^(\s*)[!%].*$", r"\1pass", source(cell), flags=re.M)
        for statement in ast.parse(text).body:
            if isinstance(statement, ast.Expr):
                call = statement.value
                name = getattr(getattr(call, "func", None), "attr", getattr(getattr(call, "func", None), "id", ""))
                assert isinstance(call, ast.Call) and (name.startswith("show") or name == "print"), \
                    f"{path.name}: '{source(cell).splitlines()[0]}' ends in {ast.unparse(statement)}: assign it to a name"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_expert_settings_come_after_the_everyday_ones_and_show_the_default_values(path):
    module_name, class_name = CONFIG_OF_NOTEBOOK[path.name].split(":")
    import dataclasses
    import importlib

    defaults = {item.name: item.default
                for item in dataclasses.fields(getattr(importlib.import_module(module_name), class_name))}
    check = next(source(cell) for cell in code_cells(path) if source(cell).startswith("#@title 3.1 Check the data"))
    everyday, expert = check.split("#@markdown **Expert settings (leave as they are)**", 1)
    assert FORM_FIELD.findall(everyday) and FORM_FIELD.findall(expert)
    for name, literal in re.findall(r'^(\w+) = (.+?) #@param', check, re.M):
        value = ast.literal_eval(literal)
        assert value == defaults[name] or value == f"{defaults[name]:.10g}", f"{path.name}: {name} shows {value!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_section_0_says_which_sections_to_run_for_each_path(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = " ".join(source(cell) for cell in cells if cell["cell_type"] == "markdown").replace("\n", " ")
    assert "sections 1 and 2, then 5" in text and "sections 1 and 2, then 6" in text and "from top to bottom" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_the_example_cell_assigns_the_task_form_fields_in_order(path):
    from helpers import example_data

    task = {"detection_retinanet.ipynb": "detection"}.get(path.name, path.stem)
    cell = next(source(cell) for cell in code_cells(path) if "notebook.use_example(" in source(cell))
    assignment = next(node for node in ast.parse(cell).body if isinstance(node, ast.Assign))
    call = assignment.value
    assert [name.id for name in assignment.targets[0].elts] == list(example_data.FORM_FIELDS[task])
    assert [name.id for name in call.args[2:]] == list(example_data.FORM_FIELDS[task])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_for_path_keeps_sections_1_2_and_the_chosen_sections_with_the_parameters_tag(path, tmp_path):
    written = demo.notebook_for_path(path, "predict", tmp_path / path.name)
    cells = code_cells(written)
    assert {title_section(cell) for cell in cells} == {"1", "2", "6"}
    assert "parameters" in cells[0]["metadata"]["tags"]
    assert [source(cell) for cell in cells] == [source(cell) for cell in code_cells(path)
                                                if title_section(cell) in ("1", "2", "6")]
