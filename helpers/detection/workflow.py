"""The detection notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``DetectionSession`` then
checks the data, augments, prepares the backbone and trains. ``quality_control`` and ``predict``
work from a run folder alone, so they also serve models trained in an earlier session.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

from helpers import annotation_formats
from helpers import config as config_module
from helpers import doctor, errors, runs
from helpers import split as split_module
from helpers.detection import backbones
from helpers.detection.config import DetectionConfig


def _display(path: pathlib.Path) -> None:
    """Show a PNG inline when running under IPython; print its path otherwise."""
    try:
        from IPython import display as ipython_display
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        ipython_display.display(ipython_display.Image(filename=str(path)))
    else:
        print(f"Figure: {path}")


def require_folder(field_name: str, folder: str) -> pathlib.Path:
    """The folder typed in a form field, or DatasetError naming the field and the fix."""
    path = pathlib.Path(str(folder)).expanduser()
    if not str(folder).strip():
        raise errors.DatasetError(f"{field_name}: empty. Type the folder of your images in form 1.1.")
    if not path.is_dir():
        hint = " On Colab, Drive folders start with /content/gdrive/MyDrive/ (run section 2 first)."
        raise errors.DatasetError(f"{field_name}: folder {path} does not exist. Check the path in form 1.1.{hint}")
    return path


def require_annotations(field_name: str, annotations: str) -> pathlib.Path:
    """The annotations typed in a form field: a folder of VOC .xml files or one COCO / BBBC041 .json file.

    Raises:
        DatasetError: the field is empty or the path does not exist; the JSON cannot be read.
        ConfigError: a file that is not one of the accepted formats (the error names them).
    """
    path = pathlib.Path(str(annotations)).expanduser()
    if not str(annotations).strip():
        raise errors.DatasetError(f"{field_name}: empty. Type the folder of your .xml annotations, or your COCO or "
                                  "BBBC041 .json file, in form 1.1.")
    if not path.exists():
        hint = " On Colab, Drive folders start with /content/gdrive/MyDrive/ (run section 2 first)."
        raise errors.DatasetError(f"{field_name}: {path} does not exist. Check the path in form 1.1 (a folder of "
                                  f".xml files, or a .json file).{hint}")
    annotation_formats.detect_format(path)
    return path


@dataclasses.dataclass
class DetectionSession:
    """State carried from cell to cell of one detection run.

    Attributes:
        config: the validated settings (also in ``run.config_path``).
        run: the run folder.
        dataset: the checked training dataset (after ``check_data``).
        split: the train/validation split (after ``check_data``).
        augmentation: augmented copies (after ``augment``), or None.
        pretrained: downloaded COCO weights (after ``prepare_backbone``), or None.
        training: the training outcome (after ``train``).
    """

    config: DetectionConfig
    run: runs.RunFolder
    started_at: float = dataclasses.field(default_factory=time.time)
    dataset: Any = None
    split: Any = None
    augmentation: Any = None
    pretrained: Any = None
    training: Any = None

    # ----- 3.1 ---------------------------------------------------------------------------
    def check_data(self) -> "doctor.DetectionDataset":
        """Run the dataset doctor, show its findings and plots, and write or reuse ``split.json``."""
        self.dataset = doctor.load_detection_dataset(self.config.images_dir, self.config.annotations_dir)
        self.dataset.show_summary(output_dir=self.run.plots)
        if not self.dataset.items:
            raise errors.DatasetError(f"{self.config.annotations_dir}: no usable image/annotation pair was found. "
                                      f"Fix the problems listed above and run this cell again.")
        self._write_problems()
        self.split = self._split()
        print(f"Split (seed {self.split.seed}): {len(self.split.train)} training, "
              f"{len(self.split.validation)} validation images. Saved in {self.run.split_path}.")
        return self.dataset

    def _write_problems(self) -> pathlib.Path:
        """Save the doctor's findings as ``dataset_problems.json`` in the run folder."""
        path = self.run.path("dataset_problems.json")
        rows = [dataclasses.asdict(problem) for problem in self.dataset.problems]
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    def _split(self) -> "split_module.Split":
        """Reuse the run's split when resuming (the record wins); otherwise make and save one."""
        stems = [item.stem for item in self.dataset.items]
        if self.run.split_path.is_file():
            recorded = split_module.load_split(self.run.split_path)
            missing = sorted(set(recorded.train + recorded.validation) - set(stems))
            if missing:
                raise errors.DatasetError(f"{self.run.split_path}: lists images that are no longer usable "
                                          f"({', '.join(missing[:3])}). Restore them, or choose a new model_name.")
            return recorded
        labels = [{obj.name for obj in self.dataset.usable_objects(item)} for item in self.dataset.items]
        result = split_module.split_dataset(stems, labels, self.config.validation_fraction, seed=self.config.split_seed)
        result.save(self.run.split_path)
        return result

    def items_named(self, stems: list[str]) -> list["doctor.DatasetItem"]:
        """Dataset items of the given stems, in that order."""
        by_stem = {item.stem: item for item in self._require_dataset().items}
        return [by_stem[stem] for stem in stems]

    def _require_dataset(self) -> "doctor.DetectionDataset":
        if self.dataset is None:
            raise errors.ConfigError("session: the data has not been checked yet. Run cell 3.1 first.")
        return self.dataset

    # ----- 3.2 ---------------------------------------------------------------------------
    def augment(self) -> Any:
        """Write augmented copies of the training split into the run folder and show a preview."""
        from helpers import augment as augment_module

        self._require_dataset()
        if self.config.augmentation_factor == 1:
            print("augmentation_factor is 1: no augmented copies (training still flips and rescales images "
                  "on the fly when random_flip is on).")
            self.augmentation = None
            return None
        self.augmentation = augment_module.multiply_dataset(
            self.items_named(self.split.train), self.run.augmented, self.config.augmentation_factor,
            seed=self.config.split_seed, usable_objects=self.dataset.usable_objects,
            rare_class_boost=self.config.rare_class_boost)
        print(self.augmentation.summary())
        _display(augment_module.preview_grid(self.augmentation, self.run.plots / "augmentation_preview.png"))
        return self.augmentation

    # ----- 3.3 ---------------------------------------------------------------------------
    def prepare_backbone(self) -> Any:
        """Download the COCO weights (or note 'from scratch' / the model continued from)."""
        spec = backbones.get_backbone(self.config.backbone)
        if self.config.continue_from:
            previous = runs.existing_run(self.config.continue_from)
            print(f"Training continues from the model in {previous.root}.")
        elif self.config.pretrained == "coco":
            self.pretrained = backbones.download_pretrained(spec)
            print(f"COCO-trained {spec.name} weights ready (published COCO box AP {spec.coco_box_ap}); "
                  f"sha256 {self.pretrained.sha256}.")
        else:
            print(f"{spec.name} will be trained from scratch (pretrained = 'none'): expect to need more "
                  f"images and epochs than with COCO weights.")
        return self.pretrained

    # ----- 4 -----------------------------------------------------------------------------
    def training_items(self) -> list["doctor.DatasetItem"]:
        """The training split plus augmented copies (if any)."""
        items = self.items_named(self.split.train)
        if self.augmentation is not None:
            augmented = doctor.load_detection_dataset(self.run.augmented / "images", self.run.augmented / "annotations",
                                                      progress=False)
            items = items + list(augmented.items)
        return items

    def train(self) -> Any:
        """Train (or resume), export the best model and write the training report PDF."""
        from helpers.detection import export, reports, train

        dataset = self._require_dataset()
        self.run.write_label_map(dataset.classes)
        initial_weights = runs.existing_run(self.config.continue_from).checkpoints if self.config.continue_from else None
        self.training = train.train_detector(
            self.config, self.run, self.training_items(), self.items_named(self.split.validation), dataset.classes,
            dataset.usable_objects, callbacks=(train.ProgressCallback(), train.LivePlotCallback(self.run)),
            initial_weights=initial_weights, pretrained=self.pretrained)
        export.export_saved_model(self.training.model, self.config, dataset.classes, self.run.exported_model)
        report = reports.training_report(self)
        print(f"Training report: {report}")
        return self.training


def start(preset: str, **form_fields: Any) -> DetectionSession:
    """Validate the form fields (blank = preset) and open the run folder (new or resumed).

    Args:
        preset: ``"default"`` or ``"quick"``.
        **form_fields: DetectionConfig field values from the notebook's forms.
    """
    config = config_module.config_from_form(DetectionConfig, preset, **form_fields)
    require_folder("Training_images", config.images_dir)
    require_annotations("Training_annotations", config.annotations_dir)
    if not config.model_path.strip():
        raise errors.ConfigError("model_path: empty. Type the folder where the run folder should be created.")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    state = "Resuming the run in" if run.resumed else "New run folder:"
    print(f"{state} {run.root}\nSettings used (also in config.yaml):\n{config_module.config_to_yaml(config)}")
    return DetectionSession(config=config, run=run)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``."""
    folder = other_model_folder.strip() if other_model_folder else ""
    run = runs.existing_run(folder or pathlib.Path(model_path) / model_name)
    if not (run.exported_model / "saved_model.pb").is_file():
        raise errors.ModelError(f"{run.root}: holds no exported model yet. Finish training (section 4) first, "
                                f"or give QC_model_folder of a trained model.")
    return run


def quality_control(model_path: str, model_name: str, test_images: str = "", test_annotations: str = "",
                    other_model_folder: str = "") -> Any:
    """Section 5: evaluate the exported model on the test (or validation) images; writes the QC report."""
    from helpers.detection import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    if str(test_images).strip() and str(test_annotations).strip():
        print(f"Test_annotations: {annotation_formats.describe(require_annotations('Test_annotations', test_annotations))}.")
    return quality.evaluate_run(run, test_images, test_annotations)


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "") -> Any:
    """Section 6: detect objects in every image of ``images_dir``; outputs go to a results folder."""
    from helpers.detection import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    if not str(images_dir).strip():
        config = config_module.load_config(DetectionConfig, run.config_path)
        images_dir = config.images_dir
        print(f"No Prediction_images or Test_images given: predicting on the training images folder {images_dir}.")
    source = require_folder("Prediction_images", images_dir)
    output = pathlib.Path(results_folder) if str(results_folder).strip() else \
        run.predictions / time.strftime("%Y%m%d-%H%M%S")
    return predict_module.predict_folder(run.root, source, output)
