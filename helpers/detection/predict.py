"""Section 6 of the detection notebook: detect objects in a folder of new images.

Every image that ``helpers.images`` reads (PNG, JPEG, BMP, TIFF; 8/16-bit; any size) is run
through the exported model of a run. Written into a results folder (never the images folder):

* ``predictions.csv`` — ``filename,class,score,xmin,ymin,xmax,ymax`` (original pixels);
* ``counts.csv`` — one row per image: ``filename,<class 1>,...,<class N>,total,score_threshold``,
  the detections per class at the score threshold applied (stated on every row; every class of
  the model is a column, images without detections have zeros, unreadable images no row). With
  ``count_each_object_once`` (the default) boxes of different classes overlapping with IoU above the
  model's ``nms_iou_threshold`` are counted once, as the class of the highest score: the model
  suppresses overlapping boxes class by class, so it can put an RBC and a WBC box on one cell
  (BCCD test set, docs/benchmarks.md: never a worse count, total MAE per image 39.6 -> 38.1 at
  score 0.1, unchanged at 0.3). predictions.csv, the VOC files and overlays keep every box; the
  rule is written into ``prediction_settings.json`` (``count_rule``);
* ``voc/<stem>.xml`` — one PASCAL VOC file per image with a ``<score>`` per box, readable by
  ``helpers.voc``, LabelImg and CVAT (to correct and train again);
* ``coco_results.json`` (+ ``coco_images.json`` mapping image ids to file names, and
  ``coco_categories.json``) — the COCO results format;
* the same boxes for the tools biologists open images in (``helpers.viewer_formats``):
  ``qupath/<stem>.geojson`` (QuPath: *File > Import objects*), ``imagej_rois/<stem>.zip`` (Fiji's ROI
  Manager), ``napari/<stem>_shapes.csv`` (napari: drag and drop) for each image with a box, and
  ``label_studio_tasks.json`` + ``label_studio_config.xml`` (Label Studio: the boxes as predictions to
  correct; image URLs in Label Studio's local-storage form ``/data/local-files/?d=<images folder
  name>/<file>``);
* ``overlays/<stem>.png`` — each image with its boxes drawn (images larger than
  ``OVERLAY_MAX_PIXELS`` on a side are drawn downscaled for display; every table and VOC/COCO
  file holds boxes in the image's own pixels);
* ``prediction_settings.json`` — the model, the pixel scale used (the model's, divided by the
  ``object_size_ratio`` the user gave for images at another magnification), the windows per image
  and the score threshold.

Every image is presented at the model's pixel scale (``helpers.detection.tiling``): larger images
are cut into overlapping windows and the boxes merged across seams. Large 8-bit TIFFs are read
region by region (``tiling.open_image``), so a 10,000 x 10,000 px image is predicted in bounded
memory; other images are decoded once.

The model is run once per image and keeps every candidate it reports (score >=
``CANDIDATE_SCORE_FLOOR``, the lowest its detection generator returns) in
``PredictionResult.candidates``; the files above hold those at the score threshold. The
annotation loop (``helpers.detection.annotation_loop``) ranks the images from the candidates
without running the model again.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from helpers import display, errors, figures, images, prediction_formats, viewer_formats
from helpers import progress as progress_module

# The lowest score the model's detection generator reports (``helpers.detection.model``'s
# CANDIDATE_SCORE_THRESHOLD, not imported here so that this module loads without building a model).
CANDIDATE_SCORE_FLOOR = 0.05
# Overlays of larger images are downscaled to this longest side (display only; boxes stay in original pixels).
OVERLAY_MAX_PIXELS = 2048


@dataclasses.dataclass
class PredictionResult:
    """What ``predict_folder`` wrote.

    Attributes:
        output_dir: the results folder.
        images: number of images processed.
        detections: all detections kept (score >= the run's threshold).
        unreadable: (file name, reason) of images that could not be read (listed, not fatal).
        csv_path, coco_path: the tables written.
        overlays: overlay PNG per image file name.
        score_threshold: the threshold applied.
        counts_path: ``counts.csv``.
        counts: image file name -> {class: detections with score >= score_threshold}, as in counts.csv.
        candidates: image file name -> every detection the model reported for it (score >=
            ``min(score_threshold, CANDIDATE_SCORE_FLOOR)``), best first; [] for images without any.
        image_sizes: image file name -> (width, height) in pixels.
        object_size_ratio: how much larger objects are than in the training images (1 = as large).
        settings_path: ``prediction_settings.json``.
        count_rule: the sentence saying what counts.csv counts (``prediction_formats.count_rule``).
        source: the images folder predicted.
        run_root: the run folder of the model (the annotation loop reads its test and training images).
        viewer_files: the QuPath, Fiji, napari and Label Studio files (``viewer_formats.ViewerFiles``).
    """

    output_dir: pathlib.Path
    images: int
    detections: list
    unreadable: list[tuple[str, str]]
    csv_path: pathlib.Path
    coco_path: pathlib.Path
    overlays: dict[str, pathlib.Path]
    score_threshold: float
    counts_path: pathlib.Path | None = None
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    candidates: dict[str, list] = dataclasses.field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    object_size_ratio: float = 1.0
    settings_path: pathlib.Path | None = None
    scale_sentence: str = ""
    source: pathlib.Path | None = None
    run_root: pathlib.Path | None = None
    count_rule: str = ""
    viewer_files: viewer_formats.ViewerFiles | None = None

    def counts_per_class(self) -> dict[str, int]:
        """Number of detections per class name."""
        counts: dict[str, int] = {}
        for detection in self.detections:
            counts[detection.class_name] = counts.get(detection.class_name, 0) + 1
        return dict(sorted(counts.items()))

    def show(self, count: int = 4) -> None:
        """Print a summary and display the first ``count`` overlays."""
        if self.scale_sentence:
            print(self.scale_sentence)
        print(f"{self.images} images, {len(self.detections)} detections with score ≥ {self.score_threshold} "
              f"({', '.join(f'{name}: {number}' for name, number in self.counts_per_class().items()) or 'none'}).")
        for name, reason in self.unreadable:
            print(f"  skipped {name}: {reason}")
        print(f"Results: {self.output_dir} (predictions.csv, counts.csv, voc/, coco_results.json, overlays/)")
        if self.viewer_files is not None:
            print(f"For other tools: {self.viewer_files.summary()}")
        for path in list(self.overlays.values())[:count]:
            display.show_image(path)

    def count_rows(self) -> list[list]:
        """counts.csv as table rows, the header first: filename, one column per class, total."""
        classes = list(next(iter(self.counts.values()))) if self.counts else []
        rows = [["filename", *classes, "total"]]
        rows += [[name, *row.values(), sum(row.values())] for name, row in self.counts.items()]
        return rows

    def show_counts(self, rows: int = 10) -> None:
        """Print the first ``rows`` rows of counts.csv (detections per image and class) with the threshold."""
        from helpers import tables

        table = self.count_rows()
        print(f"Detections per image and class with score ≥ {self.score_threshold} ({self.counts_path}):")
        if self.count_rule:
            print(self.count_rule)
        print(tables.text_table(table[:rows + 1]))
        if len(table) - 1 > rows:
            print(f"... {len(table) - 1 - rows} more image(s) in counts.csv")


def _check_output_folder(source: pathlib.Path, output_dir: pathlib.Path) -> None:
    """Refuse to write into the user's image folder or over an earlier results folder."""
    if output_dir.resolve() == source.resolve():
        raise errors.ConfigError(f"Results_folder: {output_dir} is the images folder itself. Choose another folder "
                                 f"(or leave it empty to write into the run folder).")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise errors.ConfigError(f"Results_folder: {output_dir} is not empty. Choose a new, empty folder (or leave "
                                 f"it empty); earlier results are never overwritten.")


def _overlay(pixels_or_source, found: list, colours) -> "np.ndarray":
    """The overlay picture of one image; downscaled to ``OVERLAY_MAX_PIXELS`` when larger (display only)."""
    import numpy as np

    from helpers.detection import outputs, tiling

    source = pixels_or_source
    longest = max(source.height, source.width)
    factor = min(1.0, OVERLAY_MAX_PIXELS / longest)
    if factor >= 1.0:
        return outputs.draw_boxes(source.read(0, source.height, 0, source.width), found, colours)
    shown = tiling.ScaledImage(source, factor)
    canvas = np.zeros((shown.height, shown.width, 3), dtype=np.uint8)
    for area in shown.windows(1024, 0):
        canvas[area.y:area.y + area.height, area.x:area.x + area.width] = shown.pixels(area)
    scaled = [dataclasses.replace(detection, xmin=detection.xmin * shown.x_scale, xmax=detection.xmax * shown.x_scale,
                                  ymin=detection.ymin * shown.y_scale, ymax=detection.ymax * shown.y_scale)
              for detection in found]
    return outputs.draw_boxes(canvas, scaled, colours)


def checked_object_size_ratio(value: float | str) -> float:
    """The form's Object_size_ratio as a number (a comma accepted as decimal point, empty = 1); ConfigError outside 0.05–20."""
    try:
        ratio = float(str(value).strip().replace(",", ".") or 1.0)
    except ValueError:
        raise errors.ConfigError(f"Object_size_ratio: {value!r} is not a number. Type 1 for objects as "
                                 f"large as in the training images, 2 for twice as large.") from None
    if not 0.05 <= ratio <= 20:
        raise errors.ConfigError(f"Object_size_ratio: {ratio:g} is outside 0.05–20. Type 1 for objects as "
                                 f"large as in the training images, 2 for twice as large, 0.5 for half as large.")
    return ratio


def predict_folder(run_root: str | pathlib.Path, source: str | pathlib.Path, output_dir: str | pathlib.Path,
                   progress: bool = True, score_threshold: float | None = None,
                   object_size_ratio: float = 1.0, count_each_object_once: bool = True) -> PredictionResult:
    """Detect objects in every image of ``source`` with the exported model of a run.

    Args:
        run_root: the run folder ``<model_path>/<model_name>`` (its ``exported_model/`` is used).
        source: folder of images (not recursive).
        output_dir: new (or empty) results folder.
        progress: show a progress bar.
        score_threshold: lowest score kept; the run's ``score_threshold`` when None.
        object_size_ratio: how much larger the objects are in these images than in the training images
            (2 = twice as large, e.g. a 2x objective); 1 = the same magnification.
        count_each_object_once: in counts.csv, count boxes of different classes on one object once
            (IoU above the model's ``nms_iou_threshold``); False counts every box.

    Returns:
        The ``PredictionResult``.
    """
    from helpers.detection import export

    source, output_dir = pathlib.Path(source), pathlib.Path(output_dir)
    object_size_ratio = checked_object_size_ratio(object_size_ratio)
    paths = images.list_images(source)
    if not paths:
        raise errors.DatasetError(f"{source}: no images (PNG, JPEG, BMP or TIFF) found. Check Prediction_images.")
    _check_output_folder(source, output_dir)
    detector = export.load_exported_model(pathlib.Path(run_root) / "exported_model")
    threshold = detector.score_threshold if score_threshold is None else score_threshold
    for subfolder in ("voc", "overlays"):
        (output_dir / subfolder).mkdir(parents=True, exist_ok=True)
    colours = figures.class_colours(detector.class_names)
    detections, unreadable, overlays, image_ids, candidates, sizes, windows = [], [], {}, {}, {}, {}, {}
    for path in progress_module.bar(paths, "Predicting", enabled=progress):
        try:
            image = predict_image(detector, path, output_dir, threshold, object_size_ratio, colours)
        except errors.DatasetError as error:
            unreadable.append((path.name, str(error)))
            continue
        candidates[path.name] = image.candidates
        detections.extend(image.found)
        image_ids[path.name] = len(image_ids) + 1
        sizes[path.name] = image.size
        if image.windows is not None:
            windows[path.name] = image.windows
        overlays[path.name] = image.overlay
    written = write_folder_files(output_dir, detector, threshold, detections, image_ids, sizes, windows,
                                 object_size_ratio, count_each_object_once, run_root, source.name)
    return PredictionResult(output_dir=output_dir, images=len(image_ids), detections=detections, unreadable=unreadable,
                            overlays=overlays, score_threshold=threshold, candidates=candidates, image_sizes=sizes,
                            object_size_ratio=object_size_ratio, source=source, run_root=pathlib.Path(run_root),
                            **written)


@dataclasses.dataclass
class ImagePrediction:
    """One image's detections and files (``predict_image``).

    Attributes:
        candidates: every detection reported (score >= min(threshold, CANDIDATE_SCORE_FLOOR)), best first.
        found: those at the score threshold. size: (width, height) px. windows: windows it was cut into
            (None for a model without pixel scale). overlay: its overlay PNG.
    """

    candidates: list
    found: list
    size: tuple[int, int]
    windows: int | None
    overlay: pathlib.Path


def predict_image(detector, path: pathlib.Path, output_dir: pathlib.Path, threshold: float, object_size_ratio: float,
                  colours, output_stem: str | None = None) -> ImagePrediction:
    """Detect the objects of one image; write its ``voc/<stem>.xml`` and ``overlays/<stem>.png``.

    ``output_stem``: the name of those two files without extension, subfolders allowed (the Dask job passes
    the image's path relative to its images folder, so images of the same name in different folders of a
    glob keep their own files); None = the image's own stem.

    Raises:
        DatasetError: the image cannot be read.
    """
    from helpers.detection import tiling

    pixels = tiling.open_image(path)
    candidates = detector.detect(pixels, score_threshold=min(threshold, CANDIDATE_SCORE_FLOOR), filename=path.name,
                                 object_size_ratio=object_size_ratio)
    return write_image_files(detector, path, pixels, candidates, output_dir, threshold, object_size_ratio, colours,
                             output_stem)


def write_image_files(detector, path: pathlib.Path, pixels, candidates: list, output_dir: pathlib.Path,
                      threshold: float, object_size_ratio: float, colours, output_stem: str | None = None
                      ) -> ImagePrediction:
    """``voc/<stem>.xml`` and ``overlays/<stem>.png`` of one image from its candidates (``predict_image``'s end).

    ``pixels``: the image (a ``tiling.ImageSource``); also used by the Dask job once the parts of a very large
    image are joined, so both write the same files.
    """
    found = [detection for detection in candidates if detection.score >= threshold]
    height, width = pixels.height, pixels.width
    windows = (detector.pixel_scale.windows_for(width, height, object_size_ratio)
               if detector.pixel_scale is not None else None)
    stem = output_stem or path.stem
    prediction_formats.write_voc_predictions(found, path.name, width, height, output_dir / "voc" / f"{stem}.xml")
    overlay = images.write_image(output_dir / "overlays" / f"{stem}.png", _overlay(pixels, found, colours))
    return ImagePrediction(candidates, found, (int(width), int(height)), windows, overlay)


def write_folder_files(output_dir: pathlib.Path, detector, threshold: float, detections: list,
                       image_ids: dict[str, int], sizes: dict[str, tuple[int, int]], windows: dict,
                       object_size_ratio: float, count_each_object_once: bool, run_root: str | pathlib.Path,
                       images_folder_name: str) -> dict:
    """The files of the whole folder: predictions.csv, counts.csv, COCO, viewer formats, prediction_settings.json.

    Shared by ``predict_folder`` and the Dask job's merge (``helpers.detection.prediction_job``), so both write
    the same files. ``detector`` needs only its metadata (class names, thresholds, pixel scale, folder).

    Returns:
        The ``PredictionResult`` fields they fill (``csv_path``, ``counts``, ``viewer_files``...).
    """
    csv_path = prediction_formats.write_predictions_csv(detections, output_dir / "predictions.csv")
    merge_iou = detector.nms_iou_threshold if count_each_object_once else None
    counts = prediction_formats.count_per_image(detections, image_ids, detector.class_names, threshold, merge_iou=merge_iou)
    counts_path = prediction_formats.write_counts_csv(counts, output_dir / "counts.csv", threshold, detector.class_names)
    category_ids = {name: index + 1 for index, name in enumerate(detector.class_names)}
    coco_path = prediction_formats.write_coco_results(detections, output_dir / "coco_results.json", image_ids, category_ids)
    _write_json(output_dir / "coco_images.json", [{"id": number, "file_name": name} for name, number in image_ids.items()])
    _write_json(output_dir / "coco_categories.json", [{"id": number, "name": name} for name, number in category_ids.items()])
    viewer_files = viewer_formats.write_viewer_formats(detections, sizes, output_dir, detector.class_names,
                                                       model_version=pathlib.Path(run_root).name,
                                                       images_folder=images_folder_name)
    sentence = _scale_sentence(detector, object_size_ratio)
    settings_path = _write_json(output_dir / "prediction_settings.json", {
        "model": str(detector.folder), "score_threshold": threshold, "object_size_ratio": object_size_ratio,
        "model_pixel_scale": detector.pixel_scale.to_dict() if detector.pixel_scale else None,
        "pixel_scale_used": detector.pixel_scale.scale / object_size_ratio if detector.pixel_scale else None,
        "windows_per_image": windows, "note": sentence, "count_each_object_once": bool(count_each_object_once),
        "count_merge_iou": merge_iou, "count_rule": prediction_formats.count_rule(threshold, merge_iou)})
    return {"csv_path": csv_path, "coco_path": coco_path, "counts_path": counts_path, "counts": counts,
            "settings_path": settings_path, "scale_sentence": sentence, "viewer_files": viewer_files,
            "count_rule": prediction_formats.count_rule(threshold, merge_iou)}


def _scale_sentence(detector, object_size_ratio: float) -> str:
    """One line saying at which scale the images were seen."""
    if detector.pixel_scale is None:
        return (f"This model was exported before pixel scales: every image is shrunk whole into one "
                f"{detector.image_size}-px window (retrain it to predict large images in tiles).")
    used = detector.pixel_scale.scale / object_size_ratio
    ratio = (f" (the model's {detector.pixel_scale.scale:g} divided by Object_size_ratio {object_size_ratio:g})"
             if object_size_ratio != 1 else "")
    return (f"Images were seen at pixel scale {used:.3g}{ratio}, in {detector.pixel_scale.window}-px windows "
            f"overlapping by {detector.pixel_scale.overlap} px; boxes are in each image's own pixels.")


def _write_json(path: pathlib.Path, value: Any) -> pathlib.Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
