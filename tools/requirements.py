"""``requirements.txt`` from ``pyproject.toml``: the runtime requirements for ``pip install -r requirements.txt``.

``pyproject.toml``'s ``[project] dependencies`` stay the one source of truth; ``requirements.txt`` is
written from them (with their comments), never edited by hand, and ``tests/test_requirements.py``
checks that it is up to date. Test tools (the ``[test]`` extra) are not in it.

    .venv/bin/python tools/requirements.py            # write requirements.txt
    .venv/bin/python tools/requirements.py --check    # exit 1 when requirements.txt differs
"""

import argparse
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements.txt"
HEADER = """\
# The runtime requirements of the DL4Cells helpers, for a lab machine:
#   pip install -r requirements.txt && pip install -e .
# Written by tools/requirements.py from pyproject.toml's [project] dependencies (the one source of
# truth); do not edit: change pyproject.toml, then run `python tools/requirements.py`.
"""
# A requirement line of the dependencies array with its comment: `    "numpy>=1.26,<2.4",  # why`.
REQUIREMENT_LINE = re.compile(r'^\s*"(?P<requirement>[^"]+)",?\s*(?:#\s*(?P<comment>.*))?$')


def dependencies(pyproject: pathlib.Path = PYPROJECT) -> list[str]:
    """``[project] dependencies`` of ``pyproject``, in their order (as pip reads them)."""
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]


def comments(pyproject: pathlib.Path = PYPROJECT) -> dict[str, str]:
    """requirement -> the comment on its line in ``pyproject`` (tomllib drops comments; they say why a bound is there)."""
    found = {}
    for line in pyproject.read_text(encoding="utf-8").splitlines():
        match = REQUIREMENT_LINE.match(line)
        if match and match["comment"]:
            found[match["requirement"]] = match["comment"].strip()
    return found


def requirements_text(pyproject: pathlib.Path = PYPROJECT) -> str:
    """The text of ``requirements.txt``: the header, then one requirement per line (with its comment)."""
    notes = comments(pyproject)
    lines = [f"{requirement}  # {notes[requirement]}" if requirement in notes else requirement
             for requirement in dependencies(pyproject)]
    return HEADER + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Write ``requirements.txt`` (0), or with ``--check`` report whether it is up to date (0 yes, 1 no)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that requirements.txt is up to date")
    arguments = parser.parse_args(argv)
    expected = requirements_text()
    if arguments.check:
        current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.is_file() else ""
        if current != expected:
            print(f"{REQUIREMENTS.name} differs from pyproject.toml's dependencies. "
                  f"Run: python tools/requirements.py", file=sys.stderr)
            return 1
        return 0
    REQUIREMENTS.write_text(expected, encoding="utf-8")
    print(f"Wrote {REQUIREMENTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
