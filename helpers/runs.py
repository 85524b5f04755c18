"""Run folders: the record of one training run, ``<model_path>/<model_name>/``.

Layout (every task)::

    config.yaml      the validated config, verbatim in every report
    split.json       file lists and seed
    history.csv      one row per completed epoch
    label_map.json   class names in model order
    checkpoints/     one per epoch (+ best)
    exported_model/  the model a user reloads for QC and prediction
    plots/           PNGs (the PDFs embed these)
    augmented/       augmented training copies (never next to the user's data)
    records/         input-pipeline files (e.g. TFRecords)
    qc/, predictions/, training_report.pdf, qc_report.pdf

Re-opening an existing run with compatible settings resumes it; with different settings it is
refused with a message naming the differences. Nothing here ever deletes a file.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Iterable

from helpers import config as config_module
from helpers import errors

SUBFOLDERS = ("checkpoints", "plots", "augmented", "records", "qc", "predictions")


@dataclasses.dataclass
class RunFolder:
    """Paths of one run folder.

    Attributes:
        root: the run folder ``<model_path>/<model_name>``.
        resumed: True when the folder already held a run with the same settings.
    """

    root: pathlib.Path
    resumed: bool = False

    def path(self, name: str) -> pathlib.Path:
        """Path of a file or subfolder inside the run folder (no existence check)."""
        return self.root / name

    @property
    def config_path(self) -> pathlib.Path:
        return self.root / "config.yaml"

    @property
    def split_path(self) -> pathlib.Path:
        return self.root / "split.json"

    @property
    def history_path(self) -> pathlib.Path:
        return self.root / "history.csv"

    @property
    def label_map_path(self) -> pathlib.Path:
        return self.root / "label_map.json"

    @property
    def checkpoints(self) -> pathlib.Path:
        return self.root / "checkpoints"

    @property
    def exported_model(self) -> pathlib.Path:
        return self.root / "exported_model"

    @property
    def plots(self) -> pathlib.Path:
        return self.root / "plots"

    @property
    def augmented(self) -> pathlib.Path:
        return self.root / "augmented"

    @property
    def records(self) -> pathlib.Path:
        return self.root / "records"

    @property
    def qc(self) -> pathlib.Path:
        return self.root / "qc"

    @property
    def predictions(self) -> pathlib.Path:
        return self.root / "predictions"

    def write_label_map(self, class_names: Iterable[str]) -> pathlib.Path:
        """Write ``label_map.json``: ``{"classes": [...]}``, model id = index + 1 (0 is background)."""
        self.label_map_path.write_text(
            json.dumps({"classes": list(class_names)}, ensure_ascii=False, indent=2), encoding="utf-8")
        return self.label_map_path

    def read_label_map(self) -> list[str]:
        """Class names saved by ``write_label_map``; ModelError when the file is missing."""
        if not self.label_map_path.is_file():
            raise errors.ModelError(f"{self.label_map_path}: missing. This folder holds no trained model; "
                                    f"choose the folder of a finished training run.")
        return json.loads(self.label_map_path.read_text(encoding="utf-8"))["classes"]


# Settings a user may change between two sessions of the same run (e.g. add epochs after a
# disconnect, or point at the same data mounted at another path) without starting a new run.
RESUMABLE_CHANGES = frozenset({"epochs", "number_of_epochs", "validation_interval", "images_dir", "annotations_dir",
                               "labels_csv", "model_path", "test_images_dir", "test_annotations_dir",
                               "test_labels_csv"})


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable ``field: old → new`` lines for settings that forbid resuming."""
    lines = []
    for key in sorted(set(saved) | set(new)):
        if key in RESUMABLE_CHANGES:
            continue
        if saved.get(key) != new.get(key):
            lines.append(f"{key}: {saved.get(key)!r} → {new.get(key)!r}")
    return lines


def open_run_folder(model_path: str | pathlib.Path, model_name: str, config: Any) -> RunFolder:
    """Create a new run folder, or reopen an existing one with compatible settings.

    Args:
        model_path: parent folder chosen by the user (created if missing).
        model_name: the run's name; letters, digits, ``-``, ``_`` and ``.`` only.
        config: the validated task config; written to ``config.yaml`` (updated on resume,
            so a raised epoch count is recorded).

    Returns:
        The run folder, with ``resumed`` True when an earlier session is continued.

    Raises:
        ConfigError: bad name, or the folder holds a run with different settings.
    """
    name = str(model_name).strip()
    if not name or any(not (character.isalnum() or character in "-_.") for character in name) or name.startswith("."):
        raise errors.ConfigError(f"model_name: {model_name!r} is not a valid folder name. "
                                 f"Use letters, digits, '-', '_' or '.', e.g. 'cells_retinanet_1'.")
    root = pathlib.Path(model_path).expanduser() / name
    run = RunFolder(root=root)
    new_values = config_module.config_to_dict(config)
    if run.config_path.is_file():
        import yaml  # local: only needed on resume

        saved_values = yaml.safe_load(run.config_path.read_text(encoding="utf-8")) or {}
        differences = config_differences(saved_values, new_values)
        if differences:
            raise errors.ConfigError(
                f"model_name: {root} already holds a run with other settings ({'; '.join(differences)}). "
                f"Choose a new model_name, or restore these settings to resume that run.")
        run.resumed = True
    elif root.exists() and any(root.iterdir()):
        raise errors.ConfigError(f"model_name: {root} exists and is not a DL4Cells run folder (no config.yaml). "
                                 f"Choose a new model_name; nothing in that folder was touched.")
    root.mkdir(parents=True, exist_ok=True)
    for subfolder in SUBFOLDERS:
        (root / subfolder).mkdir(exist_ok=True)
    config_module.save_config(config, run.config_path)
    return run


def existing_run(folder: str | pathlib.Path) -> RunFolder:
    """A finished or interrupted run folder given by the user (e.g. to continue training or for QC)."""
    root = pathlib.Path(folder).expanduser()
    if not (root / "config.yaml").is_file():
        raise errors.ModelError(f"{root}: not a DL4Cells run folder (no config.yaml). "
                                f"Give the folder <model_path>/<model_name> of an earlier training run.")
    return RunFolder(root=root, resumed=True)
