"""Detections as the tools biologists already use open them: QuPath, Fiji/ImageJ, napari, Label Studio.

Shared layer (no task package is imported): section 6 of the detection notebook and the
annotation loop write these files beside ``predictions.csv`` (``helpers.prediction_formats``).
Every box is a ``prediction_formats.Detection`` in pixels of the original image with continuous
edges (pixel ``i`` spans ``[i, i + 1]``); coordinates are rounded to
``prediction_formats.COORDINATE_DECIMALS`` like ``predictions.csv``. Class colours are
``helpers.figures.class_colours`` of the model's classes (the overlays' colours).

* **QuPath** ``qupath/<stem>.geojson``: a GeoJSON ``FeatureCollection``, one ``Polygon`` feature per
  box (closed ring of 5 points, counter-clockwise in the file's numbers as RFC 7946 asks), with
  ``properties.objectType = "detection"``, ``properties.classification = {"name", "color": [r, g, b]}``
  and the score as the measurement ``properties.measurements = {"score": s}`` (the layout QuPath
  0.4+ writes; it reads this and the older list of ``{"name", "value"}``). QuPath's origin is the
  image's top-left corner, as ours. *File > Import objects from file*, or drag the file onto the image.
  QuPath reads a class name containing ``": "`` as a derived class (``"A: B"`` = B under A).
* **Fiji / ImageJ** ``imagej_rois/<stem>.zip``: a ROI set written with ``roifile``, one rectangle ROI
  per box with sub-pixel bounds, named ``"<class> <score> #<n>"`` (unique in the set) and outlined
  in its class colour. Opens in the ROI Manager (*More > Open...*, or drag the zip onto Fiji).
* **napari** ``napari/<stem>_shapes.csv``: napari's own shapes table (``index, shape-type,
  vertex-index, axis-0, axis-1``; axis-0 is the row, y), one ``rectangle`` of 4 vertices per box, plus
  the columns ``class`` and ``score``. napari opens it by drag and drop as a shapes layer; its
  built-in reader (``napari_builtins``, napari 0.6) takes the geometry and ignores the two extra
  columns, which any table reader keeps (e.g. to set ``layer.features``). napari puts pixel centres
  at whole coordinates, so the vertices are ours minus ``NAPARI_PIXEL_CENTRE`` (0.5). napari reads
  CSV files in the system's encoding: on Windows, non-ASCII class names need Python's UTF-8 mode.
* **Label Studio** ``label_studio_tasks.json``: import-ready tasks, one per image, each
  ``{"data": {"image": URL}, "predictions": [{"model_version", "score", "result": [...]}]}`` with a
  ``rectanglelabels`` result per box in percent of the image size (clipped to the image), its
  ``score``, ``original_width`` / ``original_height``; images without a box get a task without
  predictions. The image URL follows Label Studio's local-storage convention,
  ``/data/local-files/?d=<images folder name>/<file name>`` (percent-encoded): the path relative to
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, which is then the folder that holds the images folder.
  ``label_studio_config.xml`` is the matching labeling configuration (``RectangleLabels`` named
  ``label`` on an ``Image`` named ``image``, one ``Label`` per class in its colour).

QuPath, ImageJ and napari files are written per image, for images with at least one box (napari's
reader fails on a table without rows); ``counts.csv`` lists every image. Two images whose names
differ only in the extension get file names with the extension (``a.png.geojson``).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import pathlib
import urllib.parse
from typing import Iterable, Mapping, Sequence
from xml.etree import ElementTree

from helpers import figures, prediction_formats

QUPATH_FOLDER = "qupath"
IMAGEJ_FOLDER = "imagej_rois"
NAPARI_FOLDER = "napari"
LABEL_STUDIO_TASKS = "label_studio_tasks.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
SCORE_MEASUREMENT = "score"
NAPARI_COLUMNS = ("index", "shape-type", "vertex-index", "axis-0", "axis-1", "class", "score")
NAPARI_SUFFIX = "_shapes.csv"
# napari centres pixel (row, column) on whole coordinates; our boxes have pixel edges on them.
NAPARI_PIXEL_CENTRE = 0.5
LABEL_STUDIO_CONTROL = "label"
LABEL_STUDIO_OBJECT = "image"
LABEL_STUDIO_LOCAL_FILES = "/data/local-files/?d="

Detection = prediction_formats.Detection


@dataclasses.dataclass
class ViewerFiles:
    """What ``write_viewer_formats`` wrote.

    Attributes:
        qupath, imagej, napari: image file name -> its file, for images with at least one box.
        label_studio_tasks: the tasks JSON (every image); label_studio_config: the labeling configuration.
    """

    qupath: dict[str, pathlib.Path]
    imagej: dict[str, pathlib.Path]
    napari: dict[str, pathlib.Path]
    label_studio_tasks: pathlib.Path
    label_studio_config: pathlib.Path

    def summary(self) -> str:
        """One line naming the files, for the notebook."""
        return (f"QuPath: {QUPATH_FOLDER}/ ({len(self.qupath)} .geojson), Fiji: {IMAGEJ_FOLDER}/ ({len(self.imagej)} "
                f"ROI sets), napari: {NAPARI_FOLDER}/ ({len(self.napari)} tables), Label Studio: "
                f"{self.label_studio_tasks.name} + {self.label_studio_config.name}")


# ---------------------------------------------------------------- shared


def by_image(detections: Iterable[Detection]) -> dict[str, list[Detection]]:
    """Image file name -> its detections, images in first-seen order, boxes in the order given."""
    grouped: dict[str, list[Detection]] = {}
    for detection in detections:
        grouped.setdefault(detection.filename, []).append(detection)
    return grouped


def file_stems(filenames: Iterable[str]) -> dict[str, str]:
    """Image file name -> the stem its per-image files are named after.

    The name without its extension, subfolders kept (``a.png`` -> ``a``; a Dask job's ``plate_1/a.png`` ->
    ``plate_1/a``), unless two names share it (``a.png``, ``a.tif``): then the whole name, so that no file
    is written twice.
    """
    stems = {name: pathlib.PurePath(name).with_suffix("").as_posix() for name in dict.fromkeys(filenames)}
    uses = collections.Counter(stems.values())
    return {name: stem if uses[stem] == 1 else pathlib.PurePath(name).as_posix() for name, stem in stems.items()}


def colours_for(class_names: Sequence[str], detections: Iterable[Detection]) -> dict[str, tuple[int, int, int]]:
    """RGB 0..255 per class: ``figures.class_colours`` of ``class_names``, then of classes only the boxes name."""
    extra = sorted({detection.class_name for detection in detections} - set(class_names))
    return figures.class_colours([*class_names, *extra])


def _corners(detection: Detection) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) rounded as in predictions.csv."""
    return tuple(round(float(getattr(detection, name)), prediction_formats.COORDINATE_DECIMALS)
                 for name in ("xmin", "ymin", "xmax", "ymax"))


def _score(detection: Detection) -> float:
    return round(float(detection.score), prediction_formats.SCORE_DECIMALS)


# ---------------------------------------------------------------- QuPath


def box_ring(detection: Detection) -> list[list[float]]:
    """The box as a closed GeoJSON ring: 5 [x, y] points, the first repeated last.

    Counter-clockwise in the coordinates' own numbers (positive shoelace area), the right-hand rule
    of RFC 7946; on screen, with y pointing down, it runs clockwise, as QuPath writes rectangles.
    """
    xmin, ymin, xmax, ymax = _corners(detection)
    return [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]


def qupath_feature(detection: Detection, colour: Sequence[int]) -> dict:
    """One box as a QuPath detection object (GeoJSON Feature)."""
    return {"type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [box_ring(detection)]},
            "properties": {"objectType": "detection",
                           "classification": {"name": detection.class_name, "color": [int(value) for value in colour]},
                           "measurements": {SCORE_MEASUREMENT: _score(detection)}}}


def write_qupath_geojson(detections: Sequence[Detection], path: str | pathlib.Path,
                         colours: Mapping[str, Sequence[int]]) -> pathlib.Path:
    """Write the boxes of one image as a QuPath GeoJSON FeatureCollection (UTF-8, parent folders created).

    Args:
        detections: the image's boxes, written in this order.
        path: the ``.geojson`` file (replaced if it exists).
        colours: class name -> RGB 0..255 (every class of ``detections``).
    """
    collection = {"type": "FeatureCollection",
                  "features": [qupath_feature(detection, colours[detection.class_name]) for detection in detections]}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection, ensure_ascii=False, allow_nan=False, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------- Fiji / ImageJ


def roi_names(detections: Sequence[Detection]) -> list[str]:
    """``"<class> <score> #<n>"`` per box, n counting from 1 in order: unique within the set."""
    return [f"{detection.class_name} {detection.score:.2f} #{number}"
            for number, detection in enumerate(detections, start=1)]


def imagej_roi(detection: Detection, name: str, colour: Sequence[int]):
    """One box as a ``roifile.ImagejRoi`` rectangle with sub-pixel bounds, outlined in ``colour``.

    ImageJ reads the float bounds (``xd, yd, widthd, heightd``); the whole-pixel bounds around them
    are for readers that do not.
    """
    import roifile

    xmin, ymin, xmax, ymax = _corners(detection)
    red, green, blue = (int(value) for value in colour)
    return roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, options=roifile.ROI_OPTIONS.SUB_PIXEL_RESOLUTION,
                             name=name, left=math.floor(xmin), top=math.floor(ymin), right=math.ceil(xmax),
                             bottom=math.ceil(ymax), xd=xmin, yd=ymin, widthd=xmax - xmin, heightd=ymax - ymin,
                             stroke_color=bytes([255, red, green, blue]))


def write_imagej_rois(detections: Sequence[Detection], path: str | pathlib.Path,
                      colours: Mapping[str, Sequence[int]]) -> pathlib.Path:
    """Write the boxes of one image as an ImageJ ROI set (``.zip`` of ``.roi``) with ``roifile``.

    Args:
        detections: the image's boxes (at least one), in ROI Manager order.
        path: the ``.zip`` file (replaced if it exists; parent folders created).
        colours: class name -> RGB 0..255.

    Returns:
        ``path``. Each entry is named like its ROI (``/`` and ``\\`` replaced by ``_``), plus ``.roi``.
    """
    import roifile

    names = roi_names(detections)
    rois = [imagej_roi(detection, name, colours[detection.class_name]) for detection, name in zip(detections, names)]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [name.replace("/", "_").replace("\\", "_") for name in names]
    roifile.roiwrite(path, rois, name=entries, mode="w")
    return path


# ---------------------------------------------------------------- napari


def napari_vertices(detection: Detection) -> list[tuple[float, float]]:
    """The 4 corners as napari (row, column) coordinates, in the order napari gives a rectangle."""
    xmin, ymin, xmax, ymax = (value - NAPARI_PIXEL_CENTRE for value in _corners(detection))
    return [(ymin, xmin), (ymax, xmin), (ymax, xmax), (ymin, xmax)]


def write_napari_shapes(detections: Sequence[Detection], path: str | pathlib.Path) -> pathlib.Path:
    """Write the boxes of one image as napari's shapes CSV (``NAPARI_COLUMNS``, UTF-8 without BOM).

    Args:
        detections: the image's boxes (at least one: napari's reader fails on a table without rows).
        path: the ``.csv`` file (replaced if it exists; parent folders created).
    """
    decimals = prediction_formats.COORDINATE_DECIMALS
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NAPARI_COLUMNS)
        for index, detection in enumerate(detections):
            for vertex, (row, column) in enumerate(napari_vertices(detection)):
                writer.writerow([index, "rectangle", vertex, f"{row:.{decimals}f}", f"{column:.{decimals}f}",
                                 detection.class_name, f"{detection.score:.{prediction_formats.SCORE_DECIMALS}f}"])
    return path


# ---------------------------------------------------------------- Label Studio


def local_files_url(folder: str, filename: str) -> str:
    """Label Studio's local-storage URL of ``<folder>/<filename>``, relative to its document root.

    The path is percent-encoded (UTF-8, ``/`` kept) as Label Studio's own converter writes these
    URLs (``join_input_url``); Label Studio decodes it, so spaces, ``& # + %`` and non-ASCII names
    reach the file.
    """
    relative = "/".join(part for part in (folder.strip("/"), filename) if part)
    return LABEL_STUDIO_LOCAL_FILES + urllib.parse.quote(relative, safe="/")


def label_studio_region(detection: Detection, width: int, height: int, region_id: str) -> dict:
    """One box as a ``rectanglelabels`` result, in percent of the image (clipped to the image)."""
    xmin, ymin, xmax, ymax = _corners(detection)
    xmin, xmax = (min(max(value, 0.0), float(width)) for value in (xmin, xmax))
    ymin, ymax = (min(max(value, 0.0), float(height)) for value in (ymin, ymax))
    return {"id": region_id, "from_name": LABEL_STUDIO_CONTROL, "to_name": LABEL_STUDIO_OBJECT,
            "type": "rectanglelabels", "original_width": int(width), "original_height": int(height),
            "image_rotation": 0,
            "value": {"x": 100.0 * xmin / width, "y": 100.0 * ymin / height, "width": 100.0 * (xmax - xmin) / width,
                      "height": 100.0 * (ymax - ymin) / height, "rotation": 0,
                      "rectanglelabels": [detection.class_name]},
            "score": _score(detection)}


def label_studio_task(image_url: str, detections: Sequence[Detection], size: tuple[int, int], model_version: str,
                      task_number: int) -> dict:
    """One image as a Label Studio task; its prediction's ``score`` is the mean box score (sorts the Data Manager)."""
    task: dict = {"data": {"image": image_url}}
    if detections:
        width, height = size
        task["predictions"] = [{
            "model_version": model_version,
            "score": round(math.fsum(detection.score for detection in detections) / len(detections),
                           prediction_formats.SCORE_DECIMALS),
            "result": [label_studio_region(detection, width, height, f"t{task_number}b{number}")
                       for number, detection in enumerate(detections, start=1)]}]
    return task


def write_label_studio_tasks(detections: Iterable[Detection], image_sizes: Mapping[str, tuple[int, int]],
                             path: str | pathlib.Path, model_version: str, images_folder: str) -> pathlib.Path:
    """Write Label Studio tasks with the model's boxes as predictions, one task per image of ``image_sizes``.

    Args:
        detections: the boxes (of images in ``image_sizes``; others are not written).
        image_sizes: image file name -> (width, height) pixels, in task order.
        path: the JSON file (a list of tasks, UTF-8; replaced if it exists).
        model_version: shown by Label Studio with each prediction (e.g. the run's name).
        images_folder: the images folder's path relative to Label Studio's document root (usually its
            name: the document root is then the folder that holds it).
    """
    grouped = by_image(detections)
    tasks = [label_studio_task(local_files_url(images_folder, name), grouped.get(name, []), size, model_version, number)
             for number, (name, size) in enumerate(image_sizes.items(), start=1)]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks, ensure_ascii=False, allow_nan=False, indent=1), encoding="utf-8")
    return path


def write_label_studio_config(class_names: Sequence[str], path: str | pathlib.Path,
                              colours: Mapping[str, Sequence[int]] | None = None) -> pathlib.Path:
    """Write the labeling configuration the tasks need: an ``Image`` and ``RectangleLabels`` with the classes.

    Paste it into Label Studio's *Settings > Labeling Interface > Code* when creating the project.
    """
    colours = colours or figures.class_colours(class_names)
    view = ElementTree.Element("View")
    ElementTree.SubElement(view, "Image", name=LABEL_STUDIO_OBJECT, value=f"${LABEL_STUDIO_OBJECT}", zoom="true")
    labels = ElementTree.SubElement(view, "RectangleLabels", name=LABEL_STUDIO_CONTROL, toName=LABEL_STUDIO_OBJECT)
    for name in dict.fromkeys(class_names):
        ElementTree.SubElement(labels, "Label", value=name, background="#{:02x}{:02x}{:02x}".format(*colours[name]))
    ElementTree.indent(view)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ElementTree.tostring(view, encoding="unicode") + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- all four


def write_viewer_formats(detections: Sequence[Detection], image_sizes: Mapping[str, tuple[int, int]],
                         output_dir: str | pathlib.Path, class_names: Sequence[str], model_version: str,
                         images_folder: str) -> ViewerFiles:
    """Write the QuPath, ImageJ, napari and Label Studio files of a folder's predictions.

    Args:
        detections: every box kept (e.g. score >= the threshold).
        image_sizes: image file name -> (width, height) pixels of every image predicted.
        output_dir: the results folder; ``QUPATH_FOLDER``, ``IMAGEJ_FOLDER``, ``NAPARI_FOLDER``,
            ``LABEL_STUDIO_TASKS`` and ``LABEL_STUDIO_CONFIG`` are written into it.
        class_names: the model's classes (colours and the labeling configuration); classes only the
            boxes name are added after them.
        model_version: Label Studio's ``model_version`` (the run's name).
        images_folder: the images folder relative to Label Studio's document root (``local_files_url``).
    """
    output_dir = pathlib.Path(output_dir)
    colours = colours_for(class_names, detections)
    grouped = by_image(detections)
    stems = file_stems([*image_sizes, *grouped])
    qupath, imagej, napari = {}, {}, {}
    for name, found in grouped.items():
        stem = stems[name]
        qupath[name] = write_qupath_geojson(found, output_dir / QUPATH_FOLDER / f"{stem}.geojson", colours)
        imagej[name] = write_imagej_rois(found, output_dir / IMAGEJ_FOLDER / f"{stem}.zip", colours)
        napari[name] = write_napari_shapes(found, output_dir / NAPARI_FOLDER / f"{stem}{NAPARI_SUFFIX}")
    tasks = write_label_studio_tasks(detections, image_sizes, output_dir / LABEL_STUDIO_TASKS, model_version,
                                     images_folder)
    config = write_label_studio_config(list(colours), output_dir / LABEL_STUDIO_CONFIG, colours)
    return ViewerFiles(qupath=qupath, imagej=imagej, napari=napari, label_studio_tasks=tasks, label_studio_config=config)
