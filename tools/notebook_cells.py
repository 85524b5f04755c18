"""Cell-building helpers shared by the notebook builder scripts (``tools/build_*_notebook.py``).

A builder calls ``markdown()`` and ``code()`` in order, then ``save(path)``, which writes a
clean notebook (no outputs, Colab form view, GPU runtime) and empties the list for the next one.
Cell ids are stable: a cell whose type and text are unchanged keeps the id it has in the notebook
already on disk, and a new cell gets an id derived from its position and text, so rebuilding an
unchanged notebook gives an identical file (an empty ``git diff``).
"""

import hashlib
import pathlib

import nbformat

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
