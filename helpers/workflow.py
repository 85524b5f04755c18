"""The session pattern every notebook follows: ``start`` → a session → one method per cell.

A task's ``workflow`` module (``helpers.detection.workflow``, ``helpers.classification.workflow``,
``helpers.grading.workflow``) has:

* ``start(preset, **form_fields)``: validates the form into the task's config, opens the run
  folder (new or resumed) and returns the task's session (``open_session`` here);
* the session, a subclass of ``Session``: the state carried from cell to cell (config, run
  folder, checked dataset, split, pretrained weights, training outcome) and one method per
  cell (``check_data``, the augmentation preview, ``prepare_backbone``, ``train``). What every
  task does alike (items by key, the split written once and reused, the pretrained-weights
  step) is here; a task fills in small ``_``-hooks;
* ``quality_control(...)`` and ``predict(...)``: work from a run folder alone
  (``open_trained_run``, ``predict_with``), so they also serve models trained in an earlier session.

Nothing here imports a task package or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable

from helpers import config as config_module
from helpers import errors, runs
from helpers import split as split_module
from helpers import training_cluster

DRIVE_HINT = " On Colab, Drive folders start with /content/gdrive/MyDrive/ (run section 2 first)."


def require_folder(field_name: str, folder: str) -> pathlib.Path:
    """The folder typed in a form field, or DatasetError naming the field and the fix."""
    path = pathlib.Path(str(folder)).expanduser()
    if not str(folder).strip():
        raise errors.DatasetError(f"{field_name}: empty. Type the folder of your images in form 1.1.")
    if not path.is_dir():
        raise errors.DatasetError(f"{field_name}: folder {path} does not exist. Check the path in form 1.1.{DRIVE_HINT}")
    return path


def names_listed(text: str) -> list[str]:
    """The names of a comma-separated form field (``"a.png, b.png"`` -> ["a.png", "b.png"]; blank -> [])."""
    return [name.strip() for name in str(text).split(",") if name.strip()]


@dataclasses.dataclass
class Session:
    """State carried from cell to cell of one run (a task's session subclasses it).

    Attributes:
        config: the validated settings (also in ``run.config_path``).
        run: the run folder.
        started_at: when the session started (seconds since the epoch; the reports state the duration).
        dataset: the checked training dataset (after ``check_data``).
        split: the train/validation split (after ``check_data``).
        pretrained: the downloaded pretrained weights (after ``prepare_backbone``), or None.
        training: the training outcome (after ``train``).

    Class attributes a task sets: ``PRETRAINED_SOURCE``, what its pretrained weights were
    trained on ("COCO", "ImageNet"), named in the from-scratch note.
    """

    config: Any
    run: runs.RunFolder
    started_at: float = dataclasses.field(default_factory=time.time)
    dataset: Any = None
    split: Any = None
    pretrained: Any = None
    training: Any = None

    PRETRAINED_SOURCE = "pretrained"

    @classmethod
    def require_inputs(cls, config: Any) -> None:
        """Check the input folders of the form before a run folder is made (raises DatasetError)."""
        require_folder("Training_images", config.images_dir)

    # ----- data (3.1) ----------------------------------------------------------------------
    def _item_key(self, item: Any) -> str:
        """The name an item has in ``split.json`` (a file stem, or a path relative to the images folder)."""
        return item.key

    def _split_labels(self) -> list:
        """Per dataset item, what the split is stratified by."""
        raise NotImplementedError

    def _split_groups(self) -> list[str] | None:
        """Per dataset item, the group it must stay with (e.g. a patient), or None for no groups."""
        return None

    def _group_name(self) -> str:
        """What a group is called in split.json and the reports."""
        return "group"

    def items_named(self, keys: list[str]) -> list:
        """Dataset items of the given keys, in that order."""
        by_key = {self._item_key(item): item for item in self._require_dataset().items}
        return [by_key[key] for key in keys]

    def _require_dataset(self) -> Any:
        if self.dataset is None:
            raise errors.ConfigError("session: the data has not been checked yet. Run cell 3.1 first.")
        return self.dataset

    def _write_problems(self, rows: list[dict]) -> pathlib.Path:
        """Save the data check's findings (one dict per problem) as ``dataset_problems.json`` in the run folder."""
        path = self.run.path("dataset_problems.json")
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    def _split(self) -> split_module.Split:
        """Reuse the run's split when resuming (the record wins); otherwise make and save one."""
        keys = [self._item_key(item) for item in self.dataset.items]
        if self.run.split_path.is_file():
            recorded = split_module.load_split(self.run.split_path)
            missing = sorted(set(recorded.train + recorded.validation) - set(keys))
            if missing:
                raise errors.DatasetError(f"{self.run.split_path}: lists images that are no longer usable "
                                          f"({', '.join(missing[:3])}). Restore them, or choose a new model_name.")
            return recorded
        result = split_module.split_dataset(keys, self._split_labels(), self.config.validation_fraction,
                                            seed=self.config.split_seed, groups=self._split_groups(),
                                            group_name=self._group_name())
        result.save(self.run.split_path)
        return result

    # ----- backbone (3.3) ------------------------------------------------------------------
    def _backbone_spec(self) -> Any:
        """The registry entry of ``config.backbone`` (the task's ``backbones.get_backbone``)."""
        raise NotImplementedError

    def _backbone_name(self, spec: Any) -> str:
        """How messages name the backbone."""
        return spec.name

    def _download_pretrained(self, spec: Any) -> Any:
        """Download (or find in the cache) the pretrained weights of ``spec``; they become ``self.pretrained``."""
        raise NotImplementedError

    def _pretrained_ready(self, spec: Any) -> str:
        """The line printed once ``self.pretrained`` is ready (names the weights and their checksum)."""
        raise NotImplementedError

    def prepare_backbone(self) -> Any:
        """Download the pretrained weights (or note 'from scratch' / the model continued from)."""
        spec = self._backbone_spec()
        if self.config.continue_from:
            previous = runs.existing_run(self.config.continue_from)
            print(f"Training continues from the model in {previous.root}.")
        elif self.config.pretrained != "none":
            self.pretrained = self._download_pretrained(spec)
            print(self._pretrained_ready(spec))
        else:
            print(f"{self._backbone_name(spec)} will be trained from scratch (pretrained = 'none'): expect to need "
                  f"more images and epochs than with {self.PRETRAINED_SOURCE} weights.")
        return self.pretrained


def open_session(session_class: type, config_class: type, preset: str, form_fields: dict,
                 defaults_mean_preset: bool = True) -> Any:
    """``session_class(config, run)`` for the validated form (a ``config_class``) and its run folder (new or resumed).

    The form's input folders are checked (``session_class.require_inputs``) before the run folder is made.
    ``defaults_mean_preset``: the notebooks' rule (``helpers.config.config_from_form``); the command line
    (``helpers.cli``) passes False, since its YAML file holds the chosen preset's values, not the default's.
    """
    config = config_module.config_from_form(config_class, preset, defaults_mean_preset=defaults_mean_preset,
                                            **form_fields)
    session_class.require_inputs(config)
    if not config.model_path.strip():
        raise errors.ConfigError("model_path: empty. Type the folder where the run folder should be created.")
    # One of several training processes (TF_CONFIG / Slurm): only the chief writes the user's run folder.
    run = training_cluster.open_run_folder(config.model_path, config.model_name, config)
    state = "Resuming the run in" if run.resumed else "New run folder:"
    print(f"{state} {run.root}\n{config_module.settings_summary(config)}\n")
    return session_class(config=config, run=run)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str, exported_file: str,
                     what: str = "model") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``.

    Args:
        exported_file: the file in ``exported_model/`` that proves training finished (e.g. ``saved_model.pb``).
        what: the model's name in the error message ("model", "classifier", "grader").

    Raises:
        ModelError: the run holds no exported model yet.
    """
    folder = other_model_folder.strip() if other_model_folder else ""
    run = runs.existing_run(folder or pathlib.Path(model_path) / model_name)
    if not (run.exported_model / exported_file).is_file():
        raise errors.ModelError(f"{run.root}: holds no exported {what} yet. Finish training (section 4) first, "
                                f"or give QC_model_folder of a trained {what}.")
    return run


def predict_with(predict_folder: Callable, run: runs.RunFolder, config_class: type, images_dir: str = "",
                 results_folder: str = "", verb: str = "predicting on") -> Any:
    """``predict_folder(run root, images folder, output folder)`` on ``images_dir`` (empty = the training images).

    The output folder is ``results_folder``, or a new time-stamped folder in the run's ``predictions/``.
    """
    if not str(images_dir).strip():
        images_dir = config_module.load_config(config_class, run.config_path).images_dir
        print(f"No Prediction_images or Test_images given: {verb} the training images folder {images_dir}.")
    source = require_folder("Prediction_images", images_dir)
    output = pathlib.Path(results_folder) if str(results_folder).strip() else \
        run.predictions / time.strftime("%Y%m%d-%H%M%S")
    return predict_folder(run.root, source, output)
