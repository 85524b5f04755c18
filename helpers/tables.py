"""Small table helpers shared by QC, reports and prediction files: JSON-safe values, metric text,
plain-text tables and a CSV reader that names the file, line and missing column.
"""

from __future__ import annotations

import csv
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from helpers import errors


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python types, keys as text and non-finite floats as None (recursively)."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def format_value(value: Any) -> str:
    """A metric as text for tables: 3 decimals for floats, 'n/a' for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def text_table(rows: list[list[Any]]) -> str:
    """Rows (the first is the header) as left-aligned columns separated by two spaces."""
    cells = [[format_value(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)


def read_csv_rows(path: str | pathlib.Path,
                  required_columns: Sequence[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and rows of a UTF-8 CSV, each row with its line number.

    Args:
        path: the CSV file.
        required_columns: columns that must be in the header (names are stripped of spaces).

    Returns:
        (columns, [(line number, {column: text})]); blank lines are skipped.

    Raises:
        DatasetError: missing file, not UTF-8, or a required column absent (named).
    """
    path = pathlib.Path(path)
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required_columns if name not in columns]
            if missing:
                raise errors.DatasetError(
                    f"{path}: line 1: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}). "
                    f"The header must contain {','.join(required_columns)}.")
            reader.fieldnames = columns
            return columns, [(reader.line_num, row) for row in reader]
    except FileNotFoundError as error:
        raise errors.DatasetError(f"{path}: file not found. Check the path.") from error
    except UnicodeDecodeError as error:
        raise errors.DatasetError(f"{path}: is not UTF-8 text ({error.reason}). Save it as UTF-8 CSV.") from error
    except OSError as error:
        raise errors.DatasetError(f"{path}: cannot be read ({error.strerror or error}). Check the path.") from error
