"""The annotation loop: rank new images by how unsure the model is, and pre-annotate the first ones.

Correcting boxes is much faster than drawing them, and the images worth correcting first are
those the model is least sure about. From the detections that section 6 (``predict_folder``)
already made — every candidate the model reported, down to ``predict.CANDIDATE_SCORE_FLOOR`` —
this module computes, for each image,

    uncertainty = sum over the image's candidates with score s >= 0.05 of min(s, 1 - s)

and writes into the results folder (never the images folder, never over an existing file):

* ``annotate_next.csv`` — one row per image, most uncertain first: ``rank, image, uncertainty,
  detections`` (boxes with score >= the score threshold), ``middling_detections`` (scores in
  ``MIDDLING_SCORES``), ``score_threshold``, ``pre_annotation`` (the XML's path relative to the
  results folder, empty below the top N);
* ``pre_annotations/<stem>.xml`` for the top N images — PASCAL VOC with the boxes at the score
  threshold and their class names (no ``<score>``), which LabelImg and CVAT open for correcting;
* ``annotate_next_label_studio.json`` — the same top N images as Label Studio tasks with the boxes as
  predictions (with their scores) to correct, in Label Studio's local-storage form
  (``helpers.viewer_formats``); ``label_studio_config.xml`` (written by section 6, or here when
  missing) is the project's labeling configuration;
* ``annotate_next.png`` — the first images with those boxes drawn.

The run's own images are never ranked: its test images (the form's Test_images, and every folder
section 5 scored, recorded in ``qc/<time>/images.json``) and its training images (``config.yaml``'s
``images_dir``, which holds the training and validation split). An image is recognised by its
folder or by its file name and size (a copy elsewhere). Correcting test images and training on
them would leak the test set into training and make section 5's numbers meaningless; training
images teach the model nothing new. They are left out with a plain message naming the field and
the fix (new images in Prediction_images); when every image is one of them nothing is written,
without an error: the notebook's defaults predict the test images, and must still end cleanly.

Why this score. ``min(s, 1 - s)`` is the chance that the box's yes/no call is wrong if its
score were a calibrated probability: 0 for a box the model is sure about either way (s near 1
or near 0), 0.5 for a coin flip. Summed over an image it is the expected number of boxes a
person will have to fix there, which is what a round of correction is spent on: an image with
twenty boxes at 0.4 ranks above one with a single box at 0.5 (a mean would reverse that). It
needs no extra model run, is defined for every image (0 when the model reports nothing), and
does not depend on the score threshold chosen. Candidates below 0.05 are left out: the model
does not report them (its detection generator's floor), so the score stays the same whatever
threshold a run uses. Its blind spot: an image on which the model sees nothing at all scores 0
and comes last; look at those images too (they are listed, with 0 detections).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
from typing import Mapping, Sequence

from helpers import display, errors, figures, images, prediction_formats, tables, viewer_formats
from helpers import split as split_module
from helpers.detection.predict import CANDIDATE_SCORE_FLOOR

ANNOTATE_NEXT_CSV = "annotate_next.csv"
ANNOTATE_NEXT_FIGURE = "annotate_next.png"
PRE_ANNOTATIONS = "pre_annotations"
ANNOTATE_NEXT_LABEL_STUDIO = "annotate_next_label_studio.json"
# The three ways to correct the pre-annotations and the way back into training (printed by ``show``).
CORRECTION_ROUTES = (
    "Correct the boxes in one of:\n"
    "  LabelImg: Open Dir = your images, Change Save Dir = {pre_annotations}; fix the boxes, save.\n"
    "  CVAT: create a task with the images, then Upload annotations, format PASCAL VOC 1.1, a zip of the .xml "
    "files of {pre_annotations}.\n"
    "  Label Studio: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
    "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT = the folder that holds your images folder; create a project with "
    "{config} as its labeling interface, add Local Files storage = your images folder (Import method Tasks, "
    "Save, no Sync), then Import {tasks}.\n"
    "Then bring the corrections back (LabelImg: the saved .xml files; CVAT or Label Studio: export as Pascal VOC, "
    "or as COCO for one .json), add the images and their annotations to your training data, and train again with "
    "continue_from = this run's folder.")
ANNOTATE_NEXT_COLUMNS = ("rank", "image", "uncertainty", "detections", "middling_detections", "score_threshold",
                         "pre_annotation")
# Scores with min(s, 1 - s) >= 0.2: the model gives its call at least a 1-in-5 chance of being wrong.
MIDDLING_SCORES = (0.2, 0.8)
UNCERTAINTY_DECIMALS = 4
FIGURE_IMAGES = 6


@dataclasses.dataclass(frozen=True)
class ImageUncertainty:
    """How unsure the model is about one image.

    Attributes:
        image: the image file name.
        uncertainty: sum of min(s, 1 - s) over its candidates with score s >= 0.05 (0 for none).
        detections: candidates with score >= the score threshold (the boxes a person sees).
        middling: candidates with a score inside ``MIDDLING_SCORES`` (inclusive).
    """

    image: str
    uncertainty: float
    detections: int
    middling: int


def detection_uncertainty(score: float) -> float:
    """min(s, 1 - s) of a score s in 0..1 (outside it is clipped): 0 = sure, 0.5 = a coin flip."""
    score = min(1.0, max(0.0, float(score)))
    return min(score, 1.0 - score)


def image_uncertainty(image: str, candidates: Sequence[prediction_formats.Detection], score_threshold: float) -> ImageUncertainty:
    """The uncertainty of one image from all the detections the model reported for it.

    Args:
        image: the image file name.
        candidates: its detections at any score (those below ``CANDIDATE_SCORE_FLOOR`` are ignored).
        score_threshold: the run's threshold (0..1), for the ``detections`` count only.
    """
    scores = [detection.score for detection in candidates if detection.score >= CANDIDATE_SCORE_FLOOR]
    low, high = MIDDLING_SCORES
    # fsum is exactly rounded, so the value does not depend on the order of the detections.
    return ImageUncertainty(image=image, uncertainty=math.fsum(detection_uncertainty(score) for score in scores),
                            detections=sum(detection.score >= score_threshold for detection in candidates),
                            middling=sum(low <= score <= high for score in scores))


def rank_images(candidates: Mapping[str, Sequence[prediction_formats.Detection]], score_threshold: float) -> list[ImageUncertainty]:
    """Every image, most uncertain first.

    Args:
        candidates: image file name -> every detection the model reported for it (may be []).
        score_threshold: the run's score threshold (0..1).

    Returns:
        One ``ImageUncertainty`` per image. Ties are broken by more middling detections, then by
        more detections, then by file name, so the order never depends on the folder listing.
    """
    ranked = [image_uncertainty(image, found, score_threshold) for image, found in candidates.items()]
    return sorted(ranked, key=lambda row: (-row.uncertainty, -row.middling, -row.detections, row.image))


# ----- images that must not be offered for annotation ------------------------------------

# Written by section 5 (``quality.evaluate_run``) into each ``qc/<time>/``: the folder and the
# (file name, size in bytes) of every image it scored, so that 6.2 can recognise the test images.
QC_IMAGES_RECORD = "images.json"
LEAK_ADVICE = "Put new, unannotated images in Prediction_images and run section 6 again."
HELD_OUT_REASONS = {
    "Test_images": "correcting them and adding them to training would make section 5's numbers meaningless",
    "Training_images": "the model was trained on them (training or validation split), so correcting them "
                       "teaches it nothing new",
}


@dataclasses.dataclass(frozen=True)
class KnownImages:
    """Images a run already uses, recognised by folder or by file name and size.

    Attributes:
        field: the notebook field they come from, ``"Test_images"`` or ``"Training_images"``.
        folders: resolved folders holding them.
        files: (file name, size in bytes) of each image: a copy in another folder is still recognised.
    """

    field: str
    folders: frozenset[pathlib.Path]
    files: frozenset[tuple[str, int]]


def image_fingerprint(path: str | pathlib.Path) -> tuple[str, int]:
    """(file name, size in bytes) of an image: equal for a copy, different for a new image of that name."""
    path = pathlib.Path(path)
    return path.name, path.stat().st_size


def known_images(field: str, folder: str | pathlib.Path) -> KnownImages:
    """Every image directly inside ``folder`` (resolved) as ``KnownImages``; none when the folder is gone."""
    folder = pathlib.Path(folder)
    if not str(folder).strip() or not folder.is_dir():
        return KnownImages(field, frozenset(), frozenset())
    return KnownImages(field, frozenset({folder.resolve()}),
                       frozenset(image_fingerprint(path) for path in images.list_images(folder)))


def write_qc_images_record(folder: str | pathlib.Path | None, image_paths: Sequence[pathlib.Path],
                           path: str | pathlib.Path) -> pathlib.Path:
    """Write ``QC_IMAGES_RECORD``: the scored images' folder (None for the validation split) and name -> bytes."""
    record = {"folder": str(pathlib.Path(folder).resolve()) if folder else None,
              "images": dict(image_fingerprint(image) for image in image_paths)}
    path = pathlib.Path(path)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def run_known_images(run_root: str | pathlib.Path, test_images: str | pathlib.Path = "") -> list[KnownImages]:
    """The test and training images of a run: what must not be ranked for annotation.

    Args:
        run_root: the run folder (its ``config.yaml`` names the training images; every
            ``qc/*/images.json`` the images section 5 scored).
        test_images: the Test_images folder of the form, if given (known even before section 5 ran).

    Returns:
        ``[test images, training images]`` (either may be empty). Test images are recognised by
        folder and by file; training images by file, only those ``split.json`` used (the whole
        ``images_dir`` folder when the run has no split yet).
    """
    from helpers import config as config_module
    from helpers.detection.config import DetectionConfig

    run_root = pathlib.Path(run_root)
    test = known_images("Test_images", test_images)
    folders, files = set(test.folders), set(test.files)
    for record_path in sorted(run_root.glob(f"qc/*/{QC_IMAGES_RECORD}")):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("folder"):  # None: QC scored the validation split, which the training check covers
            folders.add(pathlib.Path(record["folder"]))
            files.update((name, int(size)) for name, size in record["images"].items())
    training = KnownImages("Training_images", frozenset(), frozenset())
    if (run_root / "config.yaml").is_file():
        training = known_images("Training_images",
                                config_module.load_config(DetectionConfig, run_root / "config.yaml").images_dir)
    if training.folders and (run_root / "split.json").is_file():
        # Only the images the split used (training and validation), by name and size: an image of that
        # folder without annotations was never trained on, and may be ranked.
        split = split_module.load_split(run_root / "split.json")
        used = set(split.train) | set(split.validation)
        files.update((name, size) for name, size in training.files if pathlib.PurePath(name).stem in set(split.test))
        training = KnownImages("Training_images", frozenset(), frozenset(
            (name, size) for name, size in training.files if pathlib.PurePath(name).stem in used))
    return [KnownImages("Test_images", frozenset(folders), frozenset(files)), training]


def held_out_images(image_paths: Mapping[str, pathlib.Path], known: Sequence[KnownImages]) -> dict[str, str]:
    """Image file name -> the field it belongs to (``KnownImages.field``), for the images a run already uses.

    An image belongs to a set when its folder is one of the set's folders or its (name, size) is
    one of the set's files; the first set of ``known`` that matches wins (test before training).
    Images that no longer exist are matched by folder only.
    """
    found = {}
    for name, path in image_paths.items():
        path = pathlib.Path(path)
        fingerprint = image_fingerprint(path) if path.is_file() else None
        for images_set in known:
            # the folder the image was listed in (a link inside Test_images is a test image wherever it points)
            if path.parent.resolve() in images_set.folders or fingerprint in images_set.files:
                found[name] = images_set.field
                break
    return found


def held_out_message(held_out: Mapping[str, str], total: int) -> str:
    """Plain sentences naming the fields whose images were left out of the ranking ("" when none)."""
    lines = []
    for field, reason in HELD_OUT_REASONS.items():
        names = sorted(name for name, owner in held_out.items() if owner == field)
        if names:
            example = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            lines.append(f"{len(names)} of the {total} predicted images are your {field} ({example}): {reason}. "
                         f"They are not ranked and not pre-annotated.")
    if lines:
        lines.append(LEAK_ADVICE)
    return "\n".join(lines)


def _require_new(paths: Sequence[pathlib.Path]) -> None:
    """ConfigError naming the first of ``paths`` that exists: earlier results are never overwritten."""
    for path in paths:
        if path.exists():
            raise errors.ConfigError(f"{path}: already exists (an earlier ranking of these predictions). Run cell 6 "
                                     "(Predict) again for a new results folder; earlier results are never overwritten.")


def write_pre_annotations(ranking: Sequence[ImageUncertainty], candidates: Mapping[str, Sequence[prediction_formats.Detection]],
                          image_sizes: Mapping[str, tuple[int, int]], score_threshold: float,
                          folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Write one VOC file (boxes with score >= threshold, class names, no scores) per image of ``ranking``.

    Args:
        ranking: the images to pre-annotate, in order.
        candidates: image file name -> its detections.
        image_sizes: image file name -> (width, height) pixels, written as ``<size>``.
        score_threshold: lowest score written as a box.
        folder: the new ``pre_annotations`` folder (ConfigError if one of its files exists).

    Returns:
        image file name -> XML path (``<stem>.xml``, the name LabelImg and our training look for).
    """
    folder = pathlib.Path(folder)
    paths = {row.image: folder / f"{pathlib.PurePath(row.image).stem}.xml" for row in ranking}
    _require_new(list(paths.values()))
    for image, path in paths.items():
        width, height = image_sizes[image]
        boxes = [detection for detection in candidates[image] if detection.score >= score_threshold]
        prediction_formats.write_voc_predictions(boxes, image, width, height, path, with_scores=False)
    return paths


def write_annotate_next(ranking: Sequence[ImageUncertainty], pre_annotations: Mapping[str, pathlib.Path],
                        score_threshold: float, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``annotate_next.csv`` (``ANNOTATE_NEXT_COLUMNS``, UTF-8); ConfigError if it exists.

    ``pre_annotation`` is the XML's path relative to the CSV's folder (empty for images without one).
    """
    path = pathlib.Path(path)
    _require_new([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ANNOTATE_NEXT_COLUMNS)
        for rank, row in enumerate(ranking, start=1):
            xml = pre_annotations.get(row.image)
            writer.writerow([rank, row.image, f"{row.uncertainty:.{UNCERTAINTY_DECIMALS}f}", row.detections,
                             row.middling, f"{score_threshold:g}",
                             xml.relative_to(path.parent).as_posix() if xml is not None else ""])
    return path


def write_label_studio_tasks(ranking: Sequence[ImageUncertainty],
                             candidates: Mapping[str, Sequence[prediction_formats.Detection]],
                             image_sizes: Mapping[str, tuple[int, int]], score_threshold: float, path: pathlib.Path,
                             model_version: str, images_folder: str) -> pathlib.Path:
    """Write the images of ``ranking`` (in rank order) as Label Studio tasks with their boxes >= threshold.

    ``images_folder`` is the images folder relative to Label Studio's document root (its name).
    ConfigError if ``path`` exists.
    """
    _require_new([path])
    boxes = [detection for row in ranking for detection in candidates[row.image] if detection.score >= score_threshold]
    return viewer_formats.write_label_studio_tasks(boxes, {row.image: image_sizes[row.image] for row in ranking}, path,
                                                   model_version, images_folder)


def plot_top_images(ranking: Sequence[ImageUncertainty], overlays: Mapping[str, pathlib.Path],
                    path: str | pathlib.Path, count: int = FIGURE_IMAGES) -> pathlib.Path | None:
    """Save a grid of the first ``count`` ranked images with their boxes (predict's overlays); None if none."""
    shown = [row for row in ranking[:count] if row.image in overlays]
    if not shown:
        return None
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = figures.new_figure(4.5 * columns, 3.8 * rows)
    for index, row in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(images.read_image(overlays[row.image]))
        axes.set_title(f"{index + 1}. {row.image}\nuncertainty {row.uncertainty:.2f}, {row.detections} boxes, "
                       f"{row.middling} middling", fontsize=9)
        axes.set_axis_off()
    return figures.save_figure(figure, path)


@dataclasses.dataclass
class AnnotationQueue:
    """What ``queue_for_annotation`` wrote.

    Attributes:
        output_dir: the results folder of the predictions.
        ranking: every image, most uncertain first.
        pre_annotations: image file name -> its VOC file, for the top N.
        csv_path: ``annotate_next.csv`` (None when every image was held out and nothing was written).
        figure_path: ``annotate_next.png`` (None when no image could be shown).
        score_threshold: the threshold of the boxes counted and pre-annotated.
        held_out: image file name -> field (Test_images / Training_images) of the images left out.
        message: plain sentences about the images left out ("" when none).
        label_studio_tasks: ``annotate_next_label_studio.json`` (None when nothing was written).
        label_studio_config: ``label_studio_config.xml`` of the results folder (None when nothing was written).
    """

    output_dir: pathlib.Path
    ranking: list[ImageUncertainty]
    pre_annotations: dict[str, pathlib.Path]
    csv_path: pathlib.Path | None
    figure_path: pathlib.Path | None
    score_threshold: float
    held_out: dict[str, str] = dataclasses.field(default_factory=dict)
    message: str = ""
    label_studio_tasks: pathlib.Path | None = None
    label_studio_config: pathlib.Path | None = None

    def table_rows(self, rows: int = 10) -> list[list]:
        """The first ``rows`` rows of annotate_next.csv, the header first."""
        table = [["rank", "image", "uncertainty", "detections", "middling", "pre-annotation"]]
        for rank, row in enumerate(self.ranking[:rows], start=1):
            xml = self.pre_annotations.get(row.image)
            table.append([rank, row.image, round(row.uncertainty, 2), row.detections, row.middling,
                          xml.name if xml is not None else ""])
        return table

    def show(self, rows: int = 10) -> None:
        """Print the first rows of the ranking and display the first images with their boxes."""
        if self.message:
            print(self.message)
        if self.csv_path is None:
            print("Nothing was ranked or written.")
            return
        print(f"{len(self.pre_annotations)} of {len(self.ranking)} images pre-annotated in "
              f"{self.output_dir / PRE_ANNOTATIONS} (boxes with score ≥ {self.score_threshold}); full ranking in "
              f"{self.csv_path}.")
        print(tables.text_table(self.table_rows(rows)))
        if self.label_studio_tasks is not None:
            print(CORRECTION_ROUTES.format(pre_annotations=self.output_dir / PRE_ANNOTATIONS,
                                           tasks=self.label_studio_tasks, config=self.label_studio_config))
        if self.figure_path is not None:
            display.show_image(self.figure_path)


def queue_for_annotation(predictions, number_to_annotate: int, test_images: str | pathlib.Path = "") -> AnnotationQueue:
    """Rank the images of a ``predict_folder`` result and pre-annotate the ``number_to_annotate`` first.

    The run's test and training images (``run_known_images``) are never ranked: correcting test
    images and training on them would leak the test set into training. They are left out with a
    plain message; when every image is one of them nothing is written (no error, so that a notebook
    run on its defaults, which predicts the test images, still ends cleanly).

    Args:
        predictions: ``helpers.detection.predict.PredictionResult`` (its candidates, sizes, overlays,
            and ``source`` / ``run_root`` to recognise the run's own images).
        number_to_annotate: N >= 1; more than the number of images pre-annotates them all.
        test_images: the form's Test_images folder ("" = only those recorded by section 5).

    Returns:
        The ``AnnotationQueue``; files are written into ``predictions.output_dir``.

    Raises:
        ConfigError: ``number_to_annotate`` is not a positive whole number; a file to write exists.
    """
    if isinstance(number_to_annotate, bool) or not isinstance(number_to_annotate, int) or number_to_annotate < 1:
        raise errors.ConfigError(f"Number_to_annotate: {number_to_annotate!r} is not a whole number ≥ 1. Type how many "
                                 "images you want to correct in this round, e.g. 10.")
    output_dir = pathlib.Path(predictions.output_dir)
    _require_new([output_dir / ANNOTATE_NEXT_CSV, output_dir / ANNOTATE_NEXT_FIGURE, output_dir / PRE_ANNOTATIONS,
                  output_dir / ANNOTATE_NEXT_LABEL_STUDIO])
    threshold = predictions.score_threshold
    candidates = dict(predictions.candidates)
    held_out = {}
    if getattr(predictions, "source", None) is not None and getattr(predictions, "run_root", None) is not None:
        known = run_known_images(predictions.run_root, test_images)
        held_out = held_out_images({name: pathlib.Path(predictions.source) / name for name in candidates}, known)
    message = held_out_message(held_out, len(candidates))
    candidates = {name: found for name, found in candidates.items() if name not in held_out}
    if not candidates:
        return AnnotationQueue(output_dir=output_dir, ranking=[], pre_annotations={}, csv_path=None, figure_path=None,
                               score_threshold=threshold, held_out=held_out, message=message)
    ranking = rank_images(candidates, threshold)
    pre_annotations = write_pre_annotations(ranking[:number_to_annotate], candidates,
                                            predictions.image_sizes, threshold, output_dir / PRE_ANNOTATIONS)
    tasks = write_label_studio_tasks(ranking[:number_to_annotate], candidates, predictions.image_sizes, threshold,
                                     output_dir / ANNOTATE_NEXT_LABEL_STUDIO, *_label_studio_names(predictions))
    config = _label_studio_config(predictions, output_dir)
    csv_path = write_annotate_next(ranking, pre_annotations, threshold, output_dir / ANNOTATE_NEXT_CSV)
    figure = plot_top_images(ranking[:number_to_annotate], predictions.overlays, output_dir / ANNOTATE_NEXT_FIGURE)
    return AnnotationQueue(output_dir=output_dir, ranking=ranking, pre_annotations=pre_annotations, csv_path=csv_path,
                           figure_path=figure, score_threshold=threshold, held_out=held_out, message=message,
                           label_studio_tasks=tasks, label_studio_config=config)


def _label_studio_names(predictions) -> tuple[str, str]:
    """(model_version, images folder name) of a ``PredictionResult`` for Label Studio tasks."""
    run_root, source = getattr(predictions, "run_root", None), getattr(predictions, "source", None)
    return (pathlib.Path(run_root).name if run_root is not None else "dl4cells",
            pathlib.Path(source).name if source is not None else "")


def _label_studio_config(predictions, output_dir: pathlib.Path) -> pathlib.Path:
    """Section 6's ``label_studio_config.xml``, written with the model's classes (counts.csv's columns) if missing."""
    path = output_dir / viewer_formats.LABEL_STUDIO_CONFIG
    if path.exists():
        return path
    classes = list(next(iter(predictions.counts.values()))) if predictions.counts else []
    classes += sorted({row.class_name for found in predictions.candidates.values() for row in found} - set(classes))
    return viewer_formats.write_label_studio_config(classes, path)
