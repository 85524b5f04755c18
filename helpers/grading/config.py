"""The grading task's configuration: every form field of the grading notebook, validated.

``GradingConfig`` extends ``ClassificationConfig`` (same backbones, training phases, optimiser,
augmentation and schedule fields, so the classification training loop runs on it unchanged) and
adds what grades need: the number of grades K, the referable-disease threshold, the CSV's grade
and group columns, the ordinal head, per-grade sampling multipliers and the fundus preprocessing.
Build it with ``helpers.config.config_from_form(GradingConfig, preset, **form_fields)``.

Presets: ``default`` follows the DR-grading recipe (EfficientNet-B0 from ImageNet weights at
384 px, fundus crop + local colour normalisation, RandAugment, regression head with
kappa-optimised thresholds, balanced sampling); ``quick`` is CI-sized (MobileNetV3-Small from
scratch at 64 px for 2 epochs).
"""

from __future__ import annotations

import dataclasses

from helpers import errors
from helpers.classification.config import ClassificationConfig
from helpers.config import field

HEADS = ("regression", "cumulative", "softmax")


def parse_multipliers(text: str, num_grades: int) -> list[float]:
    """``"1,1,2,3,3"`` -> [1.0, 1.0, 2.0, 3.0, 3.0]; empty -> K ones.

    Raises:
        ConfigError: not K positive numbers separated by commas.
    """
    if not str(text).strip():
        return [1.0] * num_grades
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != num_grades or any(not value > 0 for value in values):
        raise errors.ConfigError(f"sampling_multipliers: {text!r} must be {num_grades} positive numbers separated by "
                                 f"commas, one per grade (e.g. {','.join(['1'] * num_grades)}), or empty.")
    return values


@dataclasses.dataclass
class GradingConfig(ClassificationConfig):
    """Every setting of one grading training run (units in the help texts)."""

    labels_csv: str = field("", "CSV with a filename column and a grade column (whole numbers 0..num_grades-1), "
                            "optionally a group column such as a patient ID.")
    continue_from: str = field("", "Run folder of a trained grader to continue training from (same head, num_grades, "
                               "image_size and preprocessing; empty = no).")
    backbone: str = field("efficientnetb0", ClassificationConfig.__dataclass_fields__["backbone"].metadata["help"],
                          choices=ClassificationConfig.__dataclass_fields__["backbone"].metadata["choices"])
    image_size: int = field(384, "Images are resized to this square size in pixels (after the crop to the disc).",
                            minimum=32, maximum=1024)
    augmentation: str = field("randaugment", "'basic' = flips, rotation, zoom, translation, contrast; "
                              "'randaugment' and 'augmix' add those policies on top; 'none'.",
                              choices=ClassificationConfig.__dataclass_fields__["augmentation"].metadata["choices"])
    label_smoothing: float = field(0.0, "Softmax head only: share of each target spread over the other grades.",
                                   minimum=0.0, maximum=0.5)
    class_balance: str = field("balanced_sampling", "'balanced_sampling' draws grades in proportion to "
                               "sampling_multipliers (equally when empty); 'class_weights' weighs the loss by "
                               "inverse grade frequency; 'none'.",
                               choices=("balanced_sampling", "class_weights", "none"))
    minimum_images_per_class: int = field(10, "The data check flags grades with fewer images than this.",
                                          minimum=1, maximum=100000)
    num_grades: int = field(5, "K: grades are 0..K-1 (5 for diabetic retinopathy, ICDR scale).", minimum=2,
                            maximum=20)
    referable_threshold: int = field(2, "Grades >= this count as referable disease in QC (2 = moderate DR).",
                                     minimum=1, maximum=19)
    filename_column: str = field("filename", "Name of the CSV column holding the image file names (relative to "
                                 "images_dir).")
    grade_column: str = field("grade", "Name of the CSV column holding the grade.")
    group_column: str = field("", "Name of the CSV column holding a group such as a patient ID (both eyes of one "
                              "patient stay in one split); empty = no groups.")
    head: str = field("regression", "Ordinal head: 'regression' (one score, thresholds chosen on the validation set "
                      "for quadratic kappa), 'cumulative' (CORAL-style K-1 cumulative sigmoids with a shared weight) "
                      "or 'softmax' (plain classification, for comparison).", choices=HEADS)
    sampling_multipliers: str = field("", "balanced_sampling only: one positive number per grade, e.g. 1,1,1,2,2; "
                                      "grade k is drawn with probability proportional to its number (empty = equal).")
    crop_to_disc: bool = field(True, "Crop every image to the bright retina disc (removes the black border).")
    colour_normalisation: bool = field(True, "Local colour normalisation: 4·image − 4·Gaussian-blurred image + 128 "
                                       "(Graham 2015); evens out lighting.")

    # PRESETS: inherited from ClassificationConfig (the same quick and default settings).

    def check(self) -> None:
        """Cross-field rules (called by ``helpers.config.validate_config``)."""
        super().check()
        if self.referable_threshold >= self.num_grades:
            raise errors.ConfigError(f"referable_threshold: {self.referable_threshold} must be below num_grades "
                                     f"({self.num_grades}). Use 2 for diabetic retinopathy (grades 0-4).")
        for name in ("filename_column", "grade_column"):
            if not getattr(self, name):
                raise errors.ConfigError(f"{name}: empty. Type the name of that CSV column.")
        parse_multipliers(self.sampling_multipliers, self.num_grades)

    @property
    def multipliers(self) -> list[float]:
        """The per-grade sampling multipliers as numbers (K ones when the field is empty)."""
        return parse_multipliers(self.sampling_multipliers, self.num_grades)

    @property
    def grade_names(self) -> list[str]:
        """Grades as class names "0".."K-1" (the classification engine's classes, in output order)."""
        return [str(grade) for grade in range(self.num_grades)]
