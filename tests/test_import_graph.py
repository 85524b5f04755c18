"""The layers of helpers/: no import cycle, and the three task packages are peers over one shared layer.

The graph is read from the source (``ast``), every ``import`` counted, also those inside functions:
a cycle closed by an import deferred into a function is still a cycle in the design.
"""

import ast
import pathlib

import pytest

HELPERS = pathlib.Path(__file__).resolve().parents[1] / "helpers"
TASKS = ("detection", "classification", "grading")
# Grading is built on classification (docs/ARCHITECTURE.md): its config extends ClassificationConfig,
# its session extends ClassificationSession, its training fills classification's TrainingTask, and it
# reuses classification's data check, model, prediction, figures and report sections. These are the
# classification modules it may import; any other task -> task import fails below.
GRADING_EXTENSION_POINTS = {
    "augmentation", "backbones", "browser", "config", "dataset", "gradcam", "model", "model_zoo", "plots", "predict",
    "quality", "reports", "train", "workflow",
}
# Shared modules that may import a task module, and why.
SHARED_TO_TASK = {
    ("helpers.demo", "helpers.detection.demo_data"): "`make demo` runs the detection notebook on synthetic data",
    **{("helpers.cli", f"helpers.{task}.workflow"): "the `dl4cells TASK ...` command line calls the task's notebook "
       "steps (imported inside `cli.task_steps`, only for the task asked)" for task in TASKS},
}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """module -> the modules of the package at ``root`` it imports (anywhere in the file)."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def task_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in TASKS else None


def edges(graph):
    return [(source, target) for source, targets in sorted(graph.items()) for target in sorted(targets)]


GRAPH = import_graph(HELPERS)


def test_the_graph_is_read_with_imports_inside_functions():
    assert {"helpers.workflow", "helpers.detection.dataset"} <= GRAPH["helpers.detection.workflow"]
    assert "helpers.detection.train" in GRAPH["helpers.detection.workflow"]  # imported inside DetectionSession.train
    assert "helpers.classification.workflow" in GRAPH["helpers.grading.workflow"]


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_no_task_package_imports_another_except_grading_on_classification():
    wrong = [(source, target) for source, target in edges(GRAPH)
             if task_of(source) and task_of(target) and task_of(source) != task_of(target)
             and not (task_of(source) == "grading" and task_of(target) == "classification"
                      and target.split(".")[2] in GRADING_EXTENSION_POINTS)]
    assert wrong == []


def test_the_shared_layer_imports_no_task_package():
    wrong = [(source, target) for source, target in edges(GRAPH)
             if task_of(source) is None and task_of(target) and (source, target) not in SHARED_TO_TASK]
    assert wrong == []


@pytest.fixture
def cyclic_package(tmp_path):
    """helpers/detection/{predict,workflow}.py as they were: workflow imports predict inside a function."""
    package = tmp_path / "helpers"
    (package / "detection").mkdir(parents=True)
    for path in (package / "__init__.py", package / "detection" / "__init__.py"):
        path.write_text("", encoding="utf-8")
    (package / "detection" / "predict.py").write_text(
        "def show():\n    from helpers.detection.workflow import _display\n", encoding="utf-8")
    (package / "detection" / "workflow.py").write_text(
        "def predict():\n    from helpers.detection import predict as predict_module\n", encoding="utf-8")
    (package / "classification.py").write_text("from .detection import workflow\n", encoding="utf-8")
    return package


def test_a_cycle_through_deferred_imports_is_found(cyclic_package):
    graph = import_graph(cyclic_package)
    assert graph["helpers.classification"] == {"helpers.detection.workflow"}  # relative import resolved
    assert cycles(graph) == [["helpers.detection.predict", "helpers.detection.workflow"]]
