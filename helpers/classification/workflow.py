"""The classification notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``ClassificationSession`` (a
``helpers.workflow.Session``) then checks the data, previews the augmentation, prepares the backbone
and trains. ``quality_control`` and ``predict`` work from a run folder alone, so they also serve
models trained in an earlier session.

The grading workflow (``helpers.grading.workflow``) subclasses ``ClassificationSession`` and
overrides its small ``_``-hooks (how the dataset is read, split labels, image loader, training);
it opens runs, QC and prediction through ``helpers.workflow`` like every task.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from helpers import display, errors, runs, workflow
from helpers.classification import backbones
from helpers.classification import dataset as dataset_module
from helpers.classification.config import ClassificationConfig

PREVIEW_IMAGES_PER_CLASS = 1
PREVIEW_ROWS = 4


@dataclasses.dataclass
class ClassificationSession(workflow.Session):
    """State carried from cell to cell of one classification run (fields as ``helpers.workflow.Session``).

    Attributes:
        pretrained: the downloaded ImageNet weights (after ``prepare_backbone``), or None.
        training: the ``train.TrainingResult`` (after ``train``).
    """

    PRETRAINED_SOURCE = "ImageNet"

    # ----- 3.1 ---------------------------------------------------------------------------
    def check_data(self) -> dataset_module.ClassificationDataset:
        """Run the doctor, show its findings and plots, and write or reuse ``split.json``."""
        self.dataset = self._load_dataset()
        self.dataset.show_summary(self.run.plots)
        self._require_two_classes()
        self._write_problems(self.dataset.problems_table())
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

    def _split_groups(self) -> list[str] | None:
        """Per item its group (an item without one is a group of its own), when the CSV gives groups."""
        return [item.group or item.key for item in self.dataset.items] if self.dataset.has_groups else None

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
        display.show_image(path)
        return path

    # ----- 3.3 (``Session.prepare_backbone``) ----------------------------------------------
    def _backbone_spec(self) -> backbones.BackboneSpec:
        return backbones.get_backbone(self.config.backbone)

    def _backbone_name(self, spec: backbones.BackboneSpec) -> str:
        return spec.constructor

    def _download_pretrained(self, spec: backbones.BackboneSpec) -> Any:
        return backbones.download_weights(spec)

    def _pretrained_ready(self, spec: backbones.BackboneSpec) -> str:
        return f"ImageNet weights of {spec.constructor} ready: {self.pretrained.path} (sha256 {self.pretrained.sha256})."

    # ----- 4 -----------------------------------------------------------------------------
    def train(self) -> Any:
        """Train (or resume), export the best model and write the training report PDF."""
        self._require_dataset()
        self.run.write_label_map(self.class_names())
        result, exported = self._train_and_export(self.pretrained.path if self.pretrained is not None else None)
        print(f"Epochs completed: {result.epochs_completed} (kept epoch {result.best_epoch}). "
              f"Exported model: {exported}")
        print(f"Training report: {self._training_report()}")
        from helpers.config import quick_run_notice

        if quick_run_notice(self.config):  # said last, where the user looks when training ends
            print(quick_run_notice(self.config))
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
    return workflow.open_session(ClassificationSession, ClassificationConfig, preset, form_fields)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``."""
    from helpers.classification import model

    return workflow.open_trained_run(model_path, model_name, other_model_folder, exported_file=model.MODEL_FILE_NAME,
                                     what="classifier")


def quality_control(model_path: str, model_name: str, test_images: str = "", test_labels_csv: str = "",
                    other_model_folder: str = "", gradcam_images: str = "") -> Any:
    """Section 5: evaluate the exported model on the test (or validation) images; writes the QC report.

    Args:
        gradcam_images: comma-separated file names (as in qc/labels.csv) to explain; empty = chosen automatically.
    """
    from helpers.classification import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    return quality.evaluate_run(run, test_images, test_labels_csv, workflow.names_listed(gradcam_images))


def export_model_zoo(model_path: str, model_name: str, test_images: str = "", other_model_folder: str = "",
                     authors: str = "", licence: str = "MIT", description: str = "") -> pathlib.Path:
    """Section 5.3: write the run's classifier as a BioImage Model Zoo package, validated; returns the zip's path.

    The zip goes to ``<run>/bioimageio/`` under a new name (nothing is replaced); ``helpers.model_zoo`` says what
    it holds. ``test_images`` is the folder QC used (its first image becomes the package's test input).
    """
    from helpers import model_zoo
    from helpers.classification import model_zoo as task_model_zoo

    run = open_trained_run(model_path, model_name, other_model_folder)
    path = task_model_zoo.model_zoo_package(run, test_images, authors, licence, description)
    print(model_zoo.summary(path))
    return path


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "") -> Any:
    """Section 6: classify every image under ``images_dir``; ``predictions.csv`` goes to a results folder."""
    from helpers.classification import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    return workflow.predict_with(predict_module.predict_folder, run, ClassificationConfig, images_dir, results_folder,
                                 verb="classifying")


def prediction_job(model_folder: str) -> Any:
    """The run's classifier as a ``helpers.prediction_jobs.TaskPredictor`` (``dl4cells classification predict --workers``)."""
    from helpers.classification import prediction_job as job_module

    return job_module.job_predictor(open_trained_run("", "", model_folder))
