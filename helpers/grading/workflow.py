"""The grading notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``GradingSession`` (a
``ClassificationSession`` with grading's data check, previews and training) then checks the data,
previews the preprocessing and augmentation, prepares the backbone (inherited) and trains.
``quality_control`` and ``predict`` work from a run folder alone, so they also serve models
trained in an earlier session.
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
from helpers.classification.workflow import ClassificationSession
from helpers.detection.workflow import _display, require_folder
from helpers.grading import dataset as dataset_module
from helpers.grading import preprocessing
from helpers.grading.config import GradingConfig

PREVIEW_ROWS = 4


@dataclasses.dataclass
class GradingSession(ClassificationSession):
    """State carried from cell to cell of one grading run (fields as ``ClassificationSession``).

    ``config`` is a ``GradingConfig``; ``training`` holds an ``engine.GradingTraining`` after ``train``.
    """

    # ----- 3.1 ---------------------------------------------------------------------------
    def check_data(self) -> dataset_module.GradingDataset:
        """Run the doctor, show its findings and plots, and write or reuse ``split.json``."""
        config = self.config
        self.dataset = dataset_module.load_grading_dataset(
            config.images_dir, config.labels_csv, config.num_grades, config.grade_column, config.group_column,
            config.minimum_images_per_class, filename_column=config.filename_column)
        self.dataset.show_summary(self.run.plots)
        if len({item.label for item in self.dataset.items}) < 2:
            raise errors.DatasetError(f"{config.labels_csv}: fewer than 2 grades have usable images; a grader needs "
                                      f"at least 2. Fix the problems listed above and run this cell again.")
        rows = self.dataset.problems_table()
        self.run.path("dataset_problems.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1),
                                                          encoding="utf-8")
        self.split = self._split()
        print(f"Split (seed {self.split.seed}, stratified by {self.split.stratified_by}"
              f"{', grouped by ' + self.split.grouped_by if self.split.grouped_by else ''}): {len(self.split.train)} "
              f"training, {len(self.split.validation)} validation images. Saved in {self.run.split_path}.")
        return self.dataset

    def _split(self) -> split_module.Split:
        """Reuse the run's split when resuming; otherwise a stratified split grouped by ``group_column``."""
        if self.run.split_path.is_file():
            return super()._split()
        items = self.dataset.items
        result = split_module.split_dataset([item.key for item in items], [int(item.label) for item in items],
                                            self.config.validation_fraction, seed=self.config.split_seed,
                                            groups=[item.group for item in items] if self.dataset.has_groups else None,
                                            group_name=self.config.group_column or "group")
        result.save(self.run.split_path)
        return result

    # ----- 3.2 ---------------------------------------------------------------------------
    def preview_preprocessing(self) -> list[pathlib.Path]:
        """Show one training image per grade: original, cropped, as the network sees it; then augmented versions."""
        from helpers.grading import engine

        train_items = self.items_named(self.split.train)
        chosen = []
        for grade in self.config.grade_names:
            chosen += [item for item in train_items if item.label == grade][:1]
        chosen = chosen[:PREVIEW_ROWS]
        config = self.config
        path = preprocessing.preview([item.path for item in chosen], [f"grade {item.label}" for item in chosen],
                                     config.image_size, config.crop_to_disc, config.colour_normalisation,
                                     self.run.plots / "preprocessing_preview.png")
        _display(path)
        with engine.loader_hook(config):  # the augmentation preview then starts from preprocessed images
            return [path, self.preview_augmentation()]

    # ----- 4 -----------------------------------------------------------------------------
    def train(self) -> Any:
        """Train (or resume), export the kept model with ``grading.json`` and write the training report PDF."""
        from helpers.classification import train as classification_train
        from helpers.grading import engine, reports

        self._require_dataset()
        self.run.write_label_map(self.config.grade_names)
        callbacks = (engine.GradingProgress(self.config.epochs), classification_train.LivePlotCallback(self.run))
        self.training = engine.train_grader(self.config, self.run, self.items_named(self.split.train),
                                            self.items_named(self.split.validation), callbacks=callbacks,
                                            weights_path=self.pretrained.path if self.pretrained is not None else None)
        exported = engine.export(self.training, self.config, self.run)
        engine.write_grading_file(self.run.root, self.config, self.training.thresholds)
        print(f"Epochs completed: {self.training.result.epochs_completed} (kept epoch "
              f"{self.training.result.best_epoch}). Exported model: {exported}")
        print(f"Training report: {reports.training_report(self)}")
        return self.training


def start(preset: str, **form_fields: Any) -> GradingSession:
    """Validate the form fields (blank = preset) and open the run folder (new or resumed).

    Args:
        preset: ``"default"`` or ``"quick"``.
        **form_fields: GradingConfig field values from the notebook's forms.
    """
    config = config_module.config_from_form(GradingConfig, preset, **form_fields)
    require_folder("Training_images", config.images_dir)
    if not config.model_path.strip():
        raise errors.ConfigError("model_path: empty. Type the folder where the run folder should be created.")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    state = "Resuming the run in" if run.resumed else "New run folder:"
    print(f"{state} {run.root}\nSettings used (also in config.yaml):\n{config_module.config_to_yaml(config)}")
    return GradingSession(config=config, run=run)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``."""
    from helpers.grading import engine

    folder = other_model_folder.strip() if other_model_folder else ""
    run = runs.existing_run(folder or pathlib.Path(model_path) / model_name)
    if not (run.exported_model / engine.GRADING_FILE).is_file():
        raise errors.ModelError(f"{run.root}: holds no exported grader yet. Finish training (section 4) first, or "
                                f"give QC_model_folder of a trained grading model.")
    return run


def quality_control(model_path: str, model_name: str, test_images: str = "", test_labels_csv: str = "",
                    other_model_folder: str = "") -> Any:
    """Section 5: evaluate the exported grader on the test (or validation) images; writes the QC report."""
    from helpers.grading import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    return quality.evaluate_run(run, test_images, test_labels_csv)


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "") -> Any:
    """Section 6: grade every image under ``images_dir``; ``predictions.csv`` goes to a results folder."""
    from helpers.grading import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    if not str(images_dir).strip():
        images_dir = config_module.load_config(GradingConfig, run.config_path).images_dir
        print(f"No Prediction_images or Test_images given: grading the training images folder {images_dir}.")
    source = require_folder("Prediction_images", images_dir)
    output = pathlib.Path(results_folder) if str(results_folder).strip() else \
        run.predictions / time.strftime("%Y%m%d-%H%M%S")
    return predict_module.predict_folder(run.root, source, output)
