"""The detection notebook's steps: each public function or method is what one cell calls.

``start`` validates the form and opens the run folder; the returned ``DetectionSession`` (a
``helpers.workflow.Session``) then checks the data, augments, prepares the backbone and trains.
``quality_control`` and ``predict`` work from a run folder alone, so they also serve models
trained in an earlier session.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from helpers import annotation_formats, display, errors, live_plot, runs, workflow
from helpers.detection import backbones
from helpers.detection import dataset as dataset_module
from helpers.detection.config import DetectionConfig


@dataclasses.dataclass
class DetectionSession(workflow.Session):
    """State carried from cell to cell of one detection run (fields as ``helpers.workflow.Session``).

    Attributes:
        augmentation: augmented copies (after ``augment``), or None.
        pretrained: downloaded COCO weights (after ``prepare_backbone``), or None.
    """

    augmentation: Any = None
    pixel_scale: Any = None

    PRETRAINED_SOURCE = "COCO"

    @classmethod
    def require_inputs(cls, config: DetectionConfig) -> None:
        workflow.require_folder("Training_images", config.images_dir)
        dataset_module.require_annotations("Training_annotations", config.annotations_dir)

    # ----- 3.1 ---------------------------------------------------------------------------
    def check_data(self) -> dataset_module.DetectionDataset:
        """Run the dataset doctor, show its findings and plots, and write or reuse ``split.json``."""
        self.dataset = dataset_module.load_detection_dataset(self.config.images_dir, self.config.annotations_dir)
        self.dataset.show_summary(output_dir=self.run.plots)
        if not self.dataset.items:
            raise errors.DatasetError(f"{self.config.annotations_dir}: no usable image/annotation pair was found. "
                                      f"Fix the problems listed above and run this cell again.")
        self._write_problems([dataclasses.asdict(problem) for problem in self.dataset.problems])
        self.pixel_scale = self._choose_pixel_scale()
        self.split = self._split()
        print(f"Split (seed {self.split.seed}): {len(self.split.train)} training, "
              f"{len(self.split.validation)} validation images. Saved in {self.run.split_path}.")
        return self.dataset

    def _choose_pixel_scale(self) -> Any:
        """Measure the boxes as the network will see them, choose the pixel scale (``auto``) and say why.

        Prints the per-class size table and any advice, writes ``pixel_scale.json`` and the choice as
        comments at the end of ``config.yaml`` (comments are not settings: resuming compares values).
        """
        from helpers import tables
        from helpers.detection import tiling

        box_sizes, image_sizes = tiling.measure(self.dataset.items, self.dataset.usable_objects)
        chosen = tiling.choose_scale(box_sizes, image_sizes, self.config.image_size,
                                     tiling.parse_scale(self.config.pixel_scale))
        sizes = tiling.object_sizes(box_sizes, chosen.scale)
        windows = sum(chosen.windows_for(int(width), int(height)) for width, height in image_sizes)
        training_windows = sum(chosen.windows_for(int(width), int(height), training=True) for width, height in image_sizes)
        print(f"\nObject sizes as the network sees them (pixel scale {chosen.scale:g}; sqrt(width × height) in "
              f"network pixels; the smallest anchor is {tiling.SMALLEST_ANCHOR_PIXELS} px):")
        rows = [["class", "boxes", "median", "5th percentile", "95th percentile"]]
        rows += [[name, values["boxes"], f"{values['median']:.0f}", f"{values['p5']:.0f}", f"{values['p95']:.0f}"]
                 for name, values in sizes.items()]
        print(tables.text_table(rows))
        print(chosen.sentence())
        print(f"The {len(image_sizes)} images make {windows} windows of {chosen.window}×{chosen.window} px at prediction "
              f"and at most {training_windows} in training (overlap {chosen.training_overlap} px; windows without "
              f"objects are partly left out).")
        for line in tiling.size_advice(sizes, chosen):
            print(f"  ⚠ {line}")
        display.show_image(dataset_module.plot_network_sizes(self.dataset, box_sizes, chosen,
                                                             self.run.plots / "object_sizes_network.png"))
        (self.run.root / "pixel_scale.json").write_text(json.dumps(
            {**chosen.to_dict(), "object_sizes": sizes, "windows": windows}, indent=1, ensure_ascii=False),
            encoding="utf-8")
        text = self.run.config_path.read_text(encoding="utf-8").split("\n# pixel scale chosen")[0].rstrip("\n")
        self.run.config_path.write_text(f"{text}\n# pixel scale chosen by the data check: {chosen.scale:g} "
                                        f"({chosen.chosen_by}), windows {chosen.window} px, overlap {chosen.overlap} px\n",
                                        encoding="utf-8")
        return chosen

    def _item_key(self, item: dataset_module.DatasetItem) -> str:
        return item.stem

    def _split_labels(self) -> list[set[str]]:
        """Per item, the set of classes among its usable boxes (an empty set: a background image)."""
        return [{obj.name for obj in self.dataset.usable_objects(item)} for item in self.dataset.items]

    # ----- 3.2 ---------------------------------------------------------------------------
    def augment(self) -> Any:
        """Write augmented copies of the training split into the run folder and show a preview."""
        from helpers.detection import augmentation

        self._require_dataset()
        if self.config.augmentation_factor == 1:
            print("augmentation_factor is 1: no augmented copies (training still flips and rescales images "
                  "on the fly when random_flip is on).")
            self.augmentation = None
            return None
        self.augmentation = augmentation.multiply_dataset(
            self.items_named(self.split.train), self.run.augmented, self.config.augmentation_factor,
            seed=self.config.split_seed, usable_objects=self.dataset.usable_objects,
            rare_class_boost=self.config.rare_class_boost)
        print(self.augmentation.summary())
        display.show_image(augmentation.preview_grid(self.augmentation, self.run.plots / "augmentation_preview.png"))
        return self.augmentation

    # ----- 3.3 (``Session.prepare_backbone``) ----------------------------------------------
    def _backbone_spec(self) -> backbones.BackboneSpec:
        return backbones.get_backbone(self.config.backbone)

    def _download_pretrained(self, spec: backbones.BackboneSpec) -> Any:
        return backbones.download_pretrained(spec)

    def _pretrained_ready(self, spec: backbones.BackboneSpec) -> str:
        return (f"COCO-trained {spec.name} weights ready (published COCO box AP {spec.coco_box_ap}); "
                f"sha256 {self.pretrained.sha256}.")

    # ----- 4 -----------------------------------------------------------------------------
    def training_items(self) -> list[dataset_module.DatasetItem]:
        """The training split plus augmented copies (if any)."""
        items = self.items_named(self.split.train)
        if self.augmentation is not None:
            augmented = dataset_module.load_detection_dataset(self.run.augmented / "images",
                                                              self.run.augmented / "annotations", progress=False)
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
            dataset.usable_objects,
            callbacks=(train.ProgressCallback(), live_plot.LivePlotCallback(self.run, train.CURVE_PANELS)),
            initial_weights=initial_weights, pretrained=self.pretrained, pixel_scale=self.pixel_scale)
        export.export_saved_model(self.training.model, self.config, dataset.classes, self.run.exported_model,
                                  pixel_scale=self.training.pixel_scale)
        report = reports.training_report(self)
        print(f"Training report: {report}")
        from helpers.config import quick_run_notice

        if quick_run_notice(self.config):  # said last, where the user looks when training ends
            print(quick_run_notice(self.config))
        return self.training


def start(preset: str, **form_fields: Any) -> DetectionSession:
    """Validate the form fields (blank = preset) and open the run folder (new or resumed).

    Args:
        preset: ``"default"`` or ``"quick"``.
        **form_fields: DetectionConfig field values from the notebook's forms.
    """
    return workflow.open_session(DetectionSession, DetectionConfig, preset, form_fields)


def open_trained_run(model_path: str, model_name: str, other_model_folder: str = "") -> runs.RunFolder:
    """The run folder to check or use: ``other_model_folder`` if given, else ``model_path/model_name``."""
    return workflow.open_trained_run(model_path, model_name, other_model_folder, exported_file="saved_model.pb")


def quality_control(model_path: str, model_name: str, test_images: str = "", test_annotations: str = "",
                    other_model_folder: str = "") -> Any:
    """Section 5: evaluate the exported model on the test (or validation) images; writes the QC report."""
    from helpers.detection import quality

    run = open_trained_run(model_path, model_name, other_model_folder)
    if str(test_images).strip() and str(test_annotations).strip():
        path = dataset_module.require_annotations("Test_annotations", test_annotations)
        print(f"Test_annotations: {annotation_formats.describe(path)}.")
    return quality.evaluate_run(run, test_images, test_annotations)


def predict(model_path: str, model_name: str, images_dir: str = "", results_folder: str = "",
            other_model_folder: str = "", object_size_ratio: float | str = 1.0,
            count_each_object_once: bool = True) -> Any:
    """Section 6: detect objects in every image of ``images_dir``; outputs go to a results folder.

    ``object_size_ratio``: how much larger objects are in these images than in the training images
    (2 = twice as large, e.g. another objective); recorded in ``prediction_settings.json``.
    ``count_each_object_once``: counts.csv counts boxes of different classes on one object once.
    """
    import functools

    from helpers.detection import predict as predict_module

    run = open_trained_run(model_path, model_name, other_model_folder)
    predict_folder = functools.partial(predict_module.predict_folder, object_size_ratio=object_size_ratio,
                                       count_each_object_once=count_each_object_once)
    return workflow.predict_with(predict_folder, run, DetectionConfig, images_dir, results_folder)


def prediction_job(model_folder: str, output_dir: str = "", images: str = "", object_size_ratio: float | str = 1.0,
                   count_each_object_once: bool = True) -> Any:
    """The run's detector as a ``helpers.prediction_jobs.TaskPredictor`` writing into ``output_dir``
    (``dl4cells detection predict --workers``); ``images`` is the job's folder, pattern or list file."""
    from helpers.detection import prediction_job as job_module

    return job_module.job_predictor(open_trained_run("", "", model_folder), output_dir, images, object_size_ratio,
                                    count_each_object_once)


def rank_for_annotation(predictions: Any, number_to_annotate: int, test_images: str = "") -> Any:
    """Section 6.2: rank ``predict``'s images by the model's uncertainty; pre-annotate the first N as VOC.

    The run's test images (``test_images`` and those section 5 scored) and training images are left
    out with a plain message (``annotation_loop.queue_for_annotation``).
    """
    from helpers.detection import annotation_loop

    return annotation_loop.queue_for_annotation(predictions, number_to_annotate, test_images)
