"""The grading notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``GradingSession`` (a
``ClassificationSession`` with grading's data check, previews and training) then checks the data,
previews the preprocessing and augmentation, prepares the backbone (inherited) and trains.
``quality_control`` and ``predict`` work from a run folder alone, so they also serve models
trained in an earlier session. With ``continue_from``, ``start`` checks the earlier run's exported
grader against the form (``grading_train.continued_model_path``) before it creates the run folder.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from helpers import config as config_module
from helpers import display, errors, runs, workflow
from helpers.classification.workflow import ClassificationSession
from helpers.grading import dataset as dataset_module
from helpers.grading import preprocessing
from helpers.grading.config import GradingConfig

PREVIEW_ROWS = 4


@dataclasses.dataclass
class GradingSession(ClassificationSession):
    """State carried from cell to cell of one grading run (fields as ``ClassificationSession``).

    ``config`` is a ``GradingConfig``; ``training`` holds an ``grading_train.GradingTraining`` after ``train``.
    ``check_data``, ``preview_augmentation`` and ``prepare_backbone`` are inherited; the hooks below
    give them grading's dataset, split and image loader.
    """

    # ----- 3.1 ---------------------------------------------------------------------------
    def _load_dataset(self) -> dataset_module.GradingDataset:
        config = self.config
        return dataset_module.load_grading_dataset(
            config.images_dir, config.labels_csv, config.num_grades, config.grade_column, config.group_column,
            config.minimum_images_per_class, filename_column=config.filename_column)

    def _require_two_classes(self) -> None:
        if len({item.label for item in self.dataset.items}) < 2:
            raise errors.DatasetError(f"{self.config.labels_csv}: fewer than 2 grades have usable images; a grader "
                                      f"needs at least 2. Fix the problems listed above and run this cell again.")

    def _split_labels(self) -> list:
        return [int(item.label) for item in self.dataset.items]

    def _group_name(self) -> str:
        return self.config.group_column or "group"

    def image_loader(self):
        """The fundus preprocessing of the config (crop, colour normalisation) as an image loader."""
        from helpers.grading import train as grading_train

        return grading_train.image_loader(self.config)

    # ----- 3.2 ---------------------------------------------------------------------------
    def preview_preprocessing(self) -> list[pathlib.Path]:
        """Show one training image per grade: original, cropped, as the network sees it; then augmented versions."""
        train_items = self.items_named(self.split.train)
        chosen = []
        for grade in self.config.grade_names:
            chosen += [item for item in train_items if item.label == grade][:1]
        chosen = chosen[:PREVIEW_ROWS]
        config = self.config
        path = preprocessing.preview([item.path for item in chosen], [f"grade {item.label}" for item in chosen],
                                     config.image_size, config.crop_to_disc, config.colour_normalisation,
                                     self.run.plots / "preprocessing_preview.png")
        display.show_image(path)
        return [path, self.preview_augmentation()]  # augmented versions of the preprocessed images

    # ----- 4 -----------------------------------------------------------------------------
    def class_names(self) -> list[str]:
        """The grades "0".."K-1" (the model's classes in output order)."""
        return self.config.grade_names

    def _train_and_export(self, weights_path) -> tuple[Any, pathlib.Path]:
        """Train the grader (``self.training``), export it with ``grading.json``; (loop result, model path)."""
        from helpers.classification import train as classification_train
        from helpers.grading import train as grading_train

        callbacks = (grading_train.GradingProgress(self.config.epochs),
                     classification_train.LivePlotCallback(self.run, grading_train.CURVE_PANELS))
        self.training = grading_train.train_grader(self.config, self.run, self.items_named(self.split.train),
                                            self.items_named(self.split.validation), callbacks=callbacks,
                                            weights_path=weights_path,
                                            initial_model_path=grading_train.continued_model_path(self.config))
        exported = grading_train.export(self.training, self.config, self.run)
        grading_train.write_grading_file(self.run.root, self.config, self.training.thresholds)
        return self.training.result, exported

    def _training_report(self) -> pathlib.Path:
        from helpers.grading import reports

        return reports.training_report(self)


def start(preset: str, **form_fields: Any) -> GradingSession:
    """Validate the form fields (blank = preset) and open the run folder (new or resumed).

    Args:
        preset: ``"default"`` or ``"quick"``.
        **form_fields: GradingConfig field values from the notebook's forms.

    Raises:
        ConfigError: a form field is wrong, e.g. ``continue_from`` names no exported grader of the same kind.
    """
    if str(form_fields.get("continue_from") or "").strip():
        from helpers.grading import train as grading_train

        grading_train.continued_model_path(config_module.config_from_form(GradingConfig, preset, defaults_mean_preset=True,
                                                                                  **form_fields))
    return workflow.open_session(GradingSession, GradingConfig, preset, form_fields)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``."""
    from helpers.grading import train as grading_train

    return workflow.open_trained_run(model_path, model_name, other_model_folder, exported_file=grading_train.GRADING_FILE,
                                     what="grader")


def quality_control(model_path: str, model_name: str, test_images: str = "", test_labels_csv: str = "",
                    other_model_folder: str = "", gradcam_images: str = "") -> Any:
    """Section 5: evaluate the exported grader on the test (or validation) images; writes the QC report.

    Args:
        gradcam_images: comma-separated file names (as in qc/labels.csv) to explain; empty = chosen automatically.
    """
    from helpers.grading import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    return quality.evaluate_run(run, test_images, test_labels_csv, workflow.names_listed(gradcam_images))


def export_model_zoo(model_path: str, model_name: str, test_images: str = "", other_model_folder: str = "",
                     authors: str = "", licence: str = "MIT", description: str = "") -> pathlib.Path:
    """Section 5.3: write the run's grader as a BioImage Model Zoo package, validated; returns the zip's path.

    As ``helpers.classification.workflow.export_model_zoo``; the package's test input is an image after the
    run's fundus preprocessing, its test output the head's raw output (``grading.model_zoo.zoo_outputs``).
    """
    from helpers import model_zoo
    from helpers.grading import model_zoo as task_model_zoo

    run = open_trained_run(model_path, model_name, other_model_folder)
    path = task_model_zoo.model_zoo_package(run, test_images, authors, licence, description)
    print(model_zoo.summary(path))
    return path


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "") -> Any:
    """Section 6: grade every image under ``images_dir``; ``predictions.csv`` goes to a results folder."""
    from helpers.grading import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    return workflow.predict_with(predict_module.predict_folder, run, GradingConfig, images_dir, results_folder,
                                 verb="grading")


def prediction_job(model_folder: str) -> Any:
    """The run's grader as a ``helpers.prediction_jobs.TaskPredictor`` (``dl4cells grading predict --workers``)."""
    from helpers.grading import prediction_job as job_module

    return job_module.job_predictor(open_trained_run("", "", model_folder))
