"""The classification notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``ClassificationSession``
then checks the data, previews the augmentation, prepares the backbone and trains.
``quality_control`` and ``predict`` work from a run folder alone, so they also serve models
trained in an earlier session. Shared pieces come from the detection workflow
(``require_folder``, ``_display``) and ``helpers.runs``.

The grading workflow (``helpers.grading.workflow``) subclasses ``ClassificationSession`` and
overrides its small ``_``-hooks (how the dataset is read, split labels, image loader, training),
and opens runs, QC and prediction through ``open_session``, ``open_trained_run`` and
``predict_with``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

from helpers import config as config_module
from helpers import errors, runs
from helpers import split as split_module
from helpers.classification import backbones
from helpers.classification import dataset as dataset_module
from helpers.classification.config import ClassificationConfig
from helpers.detection.workflow import _display, require_folder

PREVIEW_IMAGES_PER_CLASS = 1
PREVIEW_ROWS = 4


@dataclasses.dataclass
class ClassificationSession:
    """State carried from cell to cell of one classification run.

    Attributes:
        config: the validated settings (also in ``run.config_path``).
        run: the run folder.
        dataset: the checked training dataset (after ``check_data``).
        split: the train/validation split (after ``check_data``).
        pretrained: the downloaded ImageNet weights (after ``prepare_backbone``), or None.
        training: the ``train.TrainingResult`` (after ``train``).
    """

    config: ClassificationConfig
    run: runs.RunFolder
    started_at: float = dataclasses.field(default_factory=time.time)
    dataset: Any = None
    split: Any = None
    pretrained: Any = None
    training: Any = None

    # ----- 3.1 ---------------------------------------------------------------------------
    def check_data(self) -> dataset_module.ClassificationDataset:
        """Run the doctor, show its findings and plots, and write or reuse ``split.json``."""
        self.dataset = self._load_dataset()
        self.dataset.show_summary(self.run.plots)
        self._require_two_classes()
        rows = self.dataset.problems_table()
        self.run.path("dataset_problems.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        self.split = self._split()
        print(f"Split (seed {self.split.seed}, stratified by {self.split.stratified_by}"
              f"{', grouped by ' + self.split.grouped_by if self.split.grouped_by else ''}): {len(self.split.train)} "
              f"training, {len(self.split.validation)} validation images. Saved in {self.run.split_path}.")
        return self.dataset

    def _load_dataset(self) -> dataset_module.ClassificationDataset:
        """The checked dataset of the form's images (and labels CSV)."""
        return dataset_module.load_classification_dataset(
            self.config.images_dir, self.config.labels_csv or None, self.config.minimum_images_per_class)

    def _require_two_classes(self) -> None:
        if len(self.dataset.classes) < 2:
            raise errors.DatasetError(f"{self.config.images_dir}: {len(self.dataset.classes)} usable class(es); a "
                                      f"classifier needs at least 2. Fix the problems listed above and run this cell again.")

    def _split_labels(self) -> list:
        """Per dataset item, the label the split is stratified by."""
        return [item.label for item in self.dataset.items]

    def _group_name(self) -> str:
        """What a group is called in split.json and the reports."""
        return "group"

    def _split(self) -> split_module.Split:
        """Reuse the run's split when resuming (the record wins); otherwise make and save one."""
        keys = [item.key for item in self.dataset.items]
        if self.run.split_path.is_file():
            recorded = split_module.load_split(self.run.split_path)
            missing = sorted(set(recorded.train + recorded.validation) - set(keys))
            if missing:
                raise errors.DatasetError(f"{self.run.split_path}: lists images that are no longer usable "
                                          f"({', '.join(missing[:3])}). Restore them, or choose a new model_name.")
            return recorded
        groups = [item.group or item.key for item in self.dataset.items] if self.dataset.has_groups else None
        result = split_module.split_dataset(keys, self._split_labels(), self.config.validation_fraction,
                                            seed=self.config.split_seed, groups=groups, group_name=self._group_name())
        result.save(self.run.split_path)
        return result

    def items_named(self, keys: list[str]) -> list[dataset_module.ClassificationItem]:
        by_key = self._require_dataset().items_by_key()
        return [by_key[key] for key in keys]

    def _require_dataset(self) -> dataset_module.ClassificationDataset:
        if self.dataset is None:
            raise errors.ConfigError("session: the data has not been checked yet. Run cell 3.1 first.")
        return self.dataset

    def image_loader(self):
        """``(path, image_size) -> uint8 [S, S, 3]``: how this task reads an image (plain resize here)."""
        from helpers.classification import pipeline

        return pipeline.load_resized

    # ----- 3.2 ---------------------------------------------------------------------------
    def preview_augmentation(self) -> pathlib.Path:
        """Save and show training images next to augmented versions of them (nothing is written elsewhere)."""
        from helpers.classification import augmentation

        train_items = self.items_named(self.split.train)
        chosen = []
        for name in self.dataset.classes:
            chosen += [item for item in train_items if item.label == name][:PREVIEW_IMAGES_PER_CLASS]
        chosen = chosen[:PREVIEW_ROWS]
        print(augmentation.describe(self.config))
        path = augmentation.preview(self.config, [item.path for item in chosen], [item.label for item in chosen],
                                    self.run.plots / "augmentation_preview.png", loader=self.image_loader())
        _display(path)
        return path

    # ----- 3.3 ---------------------------------------------------------------------------
    def prepare_backbone(self) -> Any:
        """Download the ImageNet weights (or note 'from scratch' / the model continued from)."""
        spec = backbones.get_backbone(self.config.backbone)
        if self.config.continue_from:
            previous = runs.existing_run(self.config.continue_from)
            print(f"Training continues from the model in {previous.root}.")
        elif self.config.pretrained == "imagenet":
            self.pretrained = backbones.download_weights(spec)
            print(f"ImageNet weights of {spec.constructor} ready: {self.pretrained.path} (sha256 "
                  f"{self.pretrained.sha256}).")
        else:
            print(f"{spec.constructor} will be trained from scratch (pretrained = 'none'): expect to need more images "
                  f"and epochs than with ImageNet weights.")
        return self.pretrained

    # ----- 4 -----------------------------------------------------------------------------
    def train(self) -> Any:
        """Train (or resume), export the best model and write the training report PDF."""
        self._require_dataset()
        self.run.write_label_map(self.class_names())
        result, exported = self._train_and_export(self.pretrained.path if self.pretrained is not None else None)
        print(f"Epochs completed: {result.epochs_completed} (kept epoch {result.best_epoch}). "
              f"Exported model: {exported}")
        print(f"Training report: {self._training_report()}")
        return self.training

    def class_names(self) -> list[str]:
        """The model's classes in output order."""
        return self._require_dataset().classes

    def _train_and_export(self, weights_path) -> tuple[Any, pathlib.Path]:
        """Set ``self.training``; return the loop's ``train.TrainingResult`` and the exported model's path."""
        from helpers.classification import model, predict, train

        initial = (runs.existing_run(self.config.continue_from).exported_model / model.MODEL_FILE_NAME
                   if self.config.continue_from else None)
        self.training = train.train_classifier(
            self.config, self.run, self.items_named(self.split.train), self.items_named(self.split.validation),
            self.class_names(), callbacks=(train.ProgressCallback(self.config.epochs), train.LivePlotCallback(self.run)),
            weights_path=weights_path, initial_model_path=initial)
        return self.training, predict.export_model(self.training.model, self.class_names(), self.run)

    def _training_report(self) -> pathlib.Path:
        from helpers.classification import reports

        return reports.training_report(self)


def start(preset: str, **form_fields: Any) -> ClassificationSession:
    """Validate the form fields (blank = preset) and open the run folder (new or resumed).

    Args:
        preset: ``"default"`` or ``"quick"``.
        **form_fields: ClassificationConfig field values from the notebook's forms.
    """
    return open_session(ClassificationSession, ClassificationConfig, preset, form_fields)


def open_session(session_class: type, config_class: type, preset: str, form_fields: dict) -> Any:
    """``session_class(config, run)`` for the validated form (a ``config_class``) and its run folder (new or resumed)."""
    config = config_module.config_from_form(config_class, preset, **form_fields)
    require_folder("Training_images", config.images_dir)
    if not config.model_path.strip():
        raise errors.ConfigError("model_path: empty. Type the folder where the run folder should be created.")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    state = "Resuming the run in" if run.resumed else "New run folder:"
    print(f"{state} {run.root}\nSettings used (also in config.yaml):\n{config_module.config_to_yaml(config)}")
    return session_class(config=config, run=run)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "", exported_file: str = "",
                     what: str = "classifier") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``.

    Args:
        exported_file: the file in ``exported_model/`` that proves training finished (empty = the classifier).
        what: the model's name in the error message ("classifier", "grader").
    """
    from helpers.classification import model

    folder = other_model_folder.strip() if other_model_folder else ""
    run = runs.existing_run(folder or pathlib.Path(model_path) / model_name)
    if not (run.exported_model / (exported_file or model.MODEL_FILE_NAME)).is_file():
        raise errors.ModelError(f"{run.root}: holds no exported {what} yet. Finish training (section 4) first, "
                                f"or give QC_model_folder of a trained {what}.")
    return run


def quality_control(model_path: str, model_name: str, test_images: str = "", test_labels_csv: str = "",
                    other_model_folder: str = "", gradcam_images: str = "") -> Any:
    """Section 5: evaluate the exported model on the test (or validation) images; writes the QC report.

    Args:
        gradcam_images: comma-separated file names (as in qc/labels.csv) to explain; empty = chosen automatically.
    """
    from helpers.classification import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    chosen = [name.strip() for name in str(gradcam_images).split(",") if name.strip()]
    return quality.evaluate_run(run, test_images, test_labels_csv, chosen)


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "") -> Any:
    """Section 6: classify every image under ``images_dir``; ``predictions.csv`` goes to a results folder."""
    from helpers.classification import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    return predict_with(predict_module.predict_folder, run, ClassificationConfig, images_dir, results_folder)


def predict_with(predict_folder, run: runs.RunFolder, config_class: type, images_dir: str = "",
                 results_folder: str = "", verb: str = "classifying") -> Any:
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
