"""Steps every notebook shares (sections 1–2): installation check, GPU, Drive, the example dataset of form 1.1.

Each function is what one notebook cell calls; it prints plain-language text for the user and
returns data for the next cell.
"""

from __future__ import annotations

import pathlib
from typing import Any

from helpers import environment, errors


def check_installation(preinstalled: dict[str, str] | None = None, expected_version: str | None = None) -> list[str]:
    """Print the versions in use and everything about the installation that needs the user's action.

    Args:
        preinstalled: ``{distribution: version}`` recorded by the install cell before pip ran
            (None: not recorded); used to say which of the runtime's own packages pip replaced and
            to recognise Colab's TPU runtime, which comes without TensorFlow.
        expected_version: the helpers version this notebook was written for.

    Returns:
        The problems found (empty when everything matches the tested ranges).

    Raises:
        RuntimeProblem: a module already imported is not the installed version (the session must be
            restarted), or this is a Colab runtime without TensorFlow (choose a GPU runtime).
    """
    versions = environment.versions()
    print(f"DL4Cells helpers {versions[environment.PACKAGE_NAME]}")
    print("Versions in use: " + ", ".join(f"{name} {version}" for name, version in versions.items()
                                          if name in ("python", "tensorflow", "tf-models-official", "keras", "numpy")))
    if preinstalled is not None and environment.in_colab() and not any(
            environment.normalised_name(name) == "tensorflow" for name in preinstalled):
        raise errors.RuntimeProblem(environment.NO_TENSORFLOW_MESSAGE)
    problems = []
    installed_version = versions[environment.PACKAGE_NAME].split(" ", 1)[0]
    if expected_version is not None and installed_version != expected_version:
        problems.append(f"dl4cells-helpers {installed_version} installed, this notebook was written for "
                        f"{expected_version}: open the notebook of that version, or check helpers_source in 1.1")
    if preinstalled is not None:
        changed = environment.changed_distributions(preinstalled, environment.installed_distributions())
        changed.pop(environment.PACKAGE_NAME, None)
        message = environment.install_changes_message(changed)
        if message:
            print(message)
    stale = environment.stale_modules()
    if stale:
        raise errors.RuntimeProblem(f"Some packages were replaced after they were imported ({'; '.join(stale)}): "
                                    f"choose {environment.restart_message()}")
    problems += environment.check_requirements()
    if problems:
        print("Some installed versions differ from the tested ones:")
        for problem in problems:
            print(f"  - {problem}")
        if environment.in_colab():
            print(f"Choose {environment.RESTART_MESSAGE}")
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


def use_example(name: str, model_path: str, *form_values: Any) -> tuple:
    """Cell 2.1: the data fields of form 1.1, replaced by the example dataset's when one is chosen there.

    Args:
        name: form 1.1's ``Example_dataset``: a manifest entry name, or ``"none"`` (the user's own data).
        model_path: the user's model folder; the example goes into its ``example_data`` subfolder
            (downloaded once; a second run finds it there).
        *form_values: the current values of the fields ``example_data.FORM_FIELDS[task]``, in that order.

    Returns:
        The values of those fields to use: ``form_values`` unchanged for ``"none"``, else the example's.

    Raises:
        ConfigError: unknown name, or the cell passes another number of fields than the task's form has.
    """
    if not name or name == "none":
        print("Example_dataset is none: the data folders of form 1.1 are used.")
        return form_values
    from helpers import example_data  # local: only this optional step needs it

    example = example_data.prepare_example(name, pathlib.Path(model_path) / "example_data")  # ConfigError lists names
    fields = example_data.FORM_FIELDS[example.entry.task]
    if len(form_values) != len(fields):
        raise errors.ConfigError(f"Example_dataset: {name!r} is a {example.entry.task} dataset, for the "
                                 f"{example.entry.task} notebook. Choose one this notebook's form offers.")
    entry = example.entry
    print(f"Example dataset {name}: {entry.description}\nLicence: {entry.licence}. Cite: {entry.citation}")
    if entry.notes:
        print(f"Note: {entry.notes}")
    if example.written is not None:
        print(f"Labels converted for this notebook into {example.written} (the downloaded files are unchanged).")
    print("Form 1.1's data fields are replaced by the example's (set Example_dataset to none to use your own):")
    print("\n".join(f"  {line}" for line in example_data.form_lines(example.form_values)))
    return tuple(example.form_values[field] for field in fields)
