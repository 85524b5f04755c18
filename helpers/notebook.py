"""Steps every notebook shares (sections 1–3.0): installation check, GPU, Drive, example data.

Each function is what one notebook cell calls; it prints plain-language text for the user and
returns data for the next cell.
"""

from __future__ import annotations

import pathlib
import sys

from helpers import environment


def check_installation() -> list[str]:
    """Print the versions in use and any installed package that does not match requirements.txt.

    Returns:
        The problems found (empty when everything matches).
    """
    versions = environment.versions()
    print("Versions in use: " + ", ".join(f"{name} {version}" for name, version in versions.items()
                                          if name in ("python", "tensorflow", "tf-models-official", "numpy")))
    problems = environment.check_requirements()
    if problems:
        print("Some installed versions differ from the tested ones:")
        for problem in problems:
            print(f"  - {problem}")
        if environment.in_colab():
            print("Choose Runtime → Restart session, then run the notebook again from the top.")
    else:
        print("All packages match the tested versions.")
    return problems


def check_gpu() -> "environment.GpuStatus":
    """Print whether a GPU is available, in plain language, and return the status."""
    status = environment.gpu_check()
    print(status.message)
    return status


def connect_storage() -> pathlib.Path:
    """Mount Google Drive on Colab (or use the current folder elsewhere); returns the base folder."""
    return environment.prepare_storage()


def download_example(name: str, model_path: str) -> pathlib.Path | None:
    """Download an example dataset from the manifest into ``<model_path>/example_data``.

    Args:
        name: a manifest entry name, or ``"none"`` to do nothing.
        model_path: the user's model folder; the data goes into its ``example_data`` subfolder.

    Returns:
        The dataset's root folder, or None when ``name`` is ``"none"``.
    """
    if not name or name == "none":
        print("No example dataset requested.")
        return None
    from helpers import downloads  # local: only this optional cell needs it

    root = downloads.fetch_example(name, pathlib.Path(model_path) / "example_data")  # ConfigError lists the names
    entry = downloads.load_manifest()[name]
    print(f"{name}: {entry.description}\nLicence: {entry.licence}. Cite: {entry.citation}")
    for label, subfolder in (("Training_images", entry.images_subdir), ("Training_annotations", entry.annotations_subdir)):
        if subfolder:
            print(f'{label} = "{root / subfolder}"')
    print("Paste these into 1.1 and run the notebook again from 1.1.", file=sys.stdout)
    return root
