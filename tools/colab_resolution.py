"""What installing the helpers on a Colab runtime would change there, found by pip's own resolver.

A throw-away virtual environment gets Colab's pip and, for every package of a Colab ``pip freeze``,
a metadata-only ``.dist-info`` folder at Colab's version, so that pip believes it is on that
runtime. ``pip install --dry-run --report`` of the project then lists what pip would install: a
listed package that Colab already has is an upgrade or a downgrade of Colab's own copy; the rest
are new packages. Nothing is installed and nothing outside the temporary folder is written.

Limitation: the stand-in packages declare no dependencies of their own, so pip cannot notice a
conflict between a package we pull in and the requirements of one of Colab's packages that is not
in our dependency tree (pip does not check those on Colab either; it only warns afterwards).

Run by hand (the test ``tests/test_colab_resolution.py`` calls the same functions):

    .venv/bin/python tools/colab_resolution.py constraints/colab-gpu.txt
    .venv/bin/python tools/colab_resolution.py constraints/colab-gpu-runtime-2026.04.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_constraints  # noqa: E402  (a sibling script, not a package)

COLAB_PIP_FALLBACK = "24.1.2"
OUR_DISTRIBUTION = "dl4cells-helpers"
NETWORK_FAILURE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
                             r"Max retries exceeded|ConnectTimeoutError|ProxyError", re.I)


@dataclasses.dataclass
class Resolution:
    """What pip would do on the runtime.

    Attributes:
        changed: ``{name: (colab_version, new_version)}`` for Colab's packages pip would replace.
        added: ``{name: version}`` of packages Colab does not have.
        python: the interpreter version the resolution ran under, e.g. ``"3.13.0"``.
    """

    changed: dict[str, tuple[str, str]]
    added: dict[str, str]
    python: str


class IndexUnreachable(RuntimeError):
    """pip could not reach the package index (no network): the resolution could not run."""


def read_pins(path: str | pathlib.Path) -> dict[str, str]:
    """``{normalised name: version}`` of a constraints file or a ``pip freeze``."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return {colab_constraints.normalised(name): version
            for name, version in colab_constraints.pinned_packages(text)}


def header_value(path: str | pathlib.Path, key: str) -> str | None:
    """The value of a ``# key: value`` header line of a constraints file, or None."""
    match = re.search(rf"^# {re.escape(key)}: (\S+)", pathlib.Path(path).read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else None


def write_stand_ins(site_packages: pathlib.Path, pins: dict[str, str], skip: set[str]) -> int:
    """Write a metadata-only ``.dist-info`` per pinned package (except ``skip``); returns how many."""
    count = 0
    for name, version in pins.items():
        if name in skip:
            continue
        folder = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                         encoding="utf-8")
        (folder / "INSTALLER").write_text("colab-stand-in\n", encoding="utf-8")
        (folder / "RECORD").write_text("", encoding="utf-8")
        count += 1
    return count


def _run(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run a command; IndexUnreachable on a network failure, RuntimeError naming ``what`` otherwise."""
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        output = completed.stdout[-4000:] + completed.stderr[-4000:]
        if NETWORK_FAILURE.search(output):
            raise IndexUnreachable(f"{what}: the package index could not be reached.\n{output}")
        raise RuntimeError(f"{what} failed (exit {completed.returncode}):\n{output}")
    return completed


def make_runtime(python: str, pins: dict[str, str], folder: pathlib.Path) -> pathlib.Path:
    """A virtual environment in ``folder`` that looks to pip like the runtime of ``pins``; returns its python."""
    _run([python, "-m", "venv", str(folder)], "creating the virtual environment")
    venv_python = folder / "bin" / "python"
    pip_version = pins.get("pip", COLAB_PIP_FALLBACK)
    _run([str(venv_python), "-m", "pip", "install", "--quiet", f"pip=={pip_version}"], f"installing pip {pip_version}")
    site_packages = pathlib.Path(_run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                      "finding site-packages").stdout.strip())
    write_stand_ins(site_packages, pins, skip={"pip"})
    return venv_python


def resolve(python: str, pins: dict[str, str], project: pathlib.Path = ROOT) -> Resolution:
    """Ask pip, on a stand-in of the runtime of ``pins``, what installing ``project`` would change."""
    with tempfile.TemporaryDirectory(prefix="colab-resolution-") as temporary:
        temporary = pathlib.Path(temporary)
        venv_python = make_runtime(python, pins, temporary / "venv")
        report_path = temporary / "report.json"
        _run([str(venv_python), "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report_path),
              str(project)], "pip install --dry-run of the project")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        python_version = _run([str(venv_python), "-c", "import platform; print(platform.python_version())"],
                              "reading the Python version").stdout.strip()
    changed, added = {}, {}
    for item in report["install"]:
        name = colab_constraints.normalised(item["metadata"]["name"])
        version = item["metadata"]["version"]
        if name == OUR_DISTRIBUTION:
            continue
        if name in pins:
            changed[name] = (pins[name], version)
        else:
            added[name] = version
    return Resolution(changed=changed, added=added, python=python_version)


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` (e.g. "3.13") that runs: pyenv's newest, else ``pythonX.Y`` on PATH, else None.

    pyenv's shims are on PATH even for versions that are not selected (they then fail), so each
    candidate is run once before it is chosen.
    """
    installed = sorted(pathlib.Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"),
                       key=lambda path: [int(part) for part in re.findall(r"\d+", path.parts[-3])])
    candidates = [str(path) for path in reversed(installed)] + [shutil.which(f"python{version}") or ""]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def main(argv=None) -> None:
    """Command line: print what installing the project would change on the runtime of a constraints file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("constraints", type=pathlib.Path, help="constraints/colab-*.txt (or a pip freeze)")
    parser.add_argument("--python", help="interpreter to resolve under (default: Colab's X.Y from the header)")
    arguments = parser.parse_args(argv)
    colab_python = header_value(arguments.constraints, "colab-python") or "3.13"
    python = arguments.python or find_python(".".join(colab_python.split(".")[:2]))
    if python is None:
        sys.exit(f"No Python {colab_python} found: give --python.")
    resolution = resolve(python, read_pins(arguments.constraints))
    print(f"Resolved under Python {resolution.python} against {arguments.constraints}")
    print(f"Colab packages that would change ({len(resolution.changed)}):")
    for name, (before, after) in sorted(resolution.changed.items()):
        print(f"  {name} {before} -> {after}")
    print(f"New packages ({len(resolution.added)}): " + ", ".join(f"{n} {v}" for n, v in sorted(resolution.added.items())))


if __name__ == "__main__":
    main()
