"""The detection data check (doctor): pair images with their annotations, find every problem, summarise.

``load_detection_dataset(images_dir, annotations_dir)`` never changes the user's folders and
never raises for a problem it can work around: each one becomes a ``helpers.problems.Problem`` row (kind, file,
object index, message, fix) and the dataset keeps what is usable. The policy:

* images and XML files are paired by file stem (``a.jpg`` + ``a.xml``); extensions are
  matched case-insensitively. An image without XML (or XML without image) is listed, not used.
* every image of a pair is decoded in full (``images.check_image``, the decoder training uses),
  so a truncated, empty or non-image file is listed here, and its pair left out, rather than
  stopping training when its records are written. Malformed XML and a ``<size>`` that disagrees
  with the decoded pixels leave the pair out too (listed). An image whose bytes are another
  format than its extension says but that decodes (PNG bytes named ``.jpg``) is used (listed).
* a box with zero or negative area is dropped (listed); a box reaching outside the image is
  clipped to it when ``clip_boxes`` (else dropped) and listed either way. Coordinates equal to
  the width/height (e.g. ``xmax = 640`` in a 640-pixel-wide image) are inside: boxes are
  continuous pixel edges. A box reaching less than one pixel outside (``SUB_PIXEL_OVERSHOOT``;
  Label Studio's percent coordinates give ``x + width = 640.0001``) is clipped without a problem
  row, whatever ``clip_boxes`` says; one pixel or more is listed as above.
* near-duplicate boxes (same class, IoU above ``near_duplicate_iou``) and class names that
  differ only in case or whitespace are listed but kept as they are.
* an XML file without objects is a valid background image (listed as information).
* annotations may also be one COCO or BBBC041 ``.json`` file (``helpers.annotation_formats`` reads it
  into the same VOC model): images are then paired by the file name the JSON gives (not by
  stem), and the same problem kinds apply: a JSON image whose file is missing, or boxes of an
  image id the file does not list, are ``annotation_without_image``; an image of the folder the
  JSON does not list is ``image_without_annotation``; a malformed box or an unknown category
  leaves its image out as ``unreadable_annotation``; a size that disagrees with the pixels is
  ``size_mismatch``; two entries for one image stem are ``duplicate_stem``. Messages name the
  file and the image: ``train.json [a.png]: object 2 ...`` (objects counted in the file's order
  for that image). Crowd regions (COCO ``iscrowd`` 1, BBBC041 ``difficult``) are checked like
  any box, left out of training (``usable_objects``) and kept for QC (``scoring_objects``).

Object indices in ``Problem.object_index`` count from 0 (position in ``annotation.objects``);
messages count from 1 ("object 3" is the third ``<object>`` in the file).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
import statistics as statistics_module
import tempfile
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from helpers import annotation_formats, display, errors, figures, images, voc, workflow
from helpers import progress as progress_module
# The problem record and the image check every task's data check shares (used by name throughout).
from helpers.problems import (EXAMPLES_PER_KIND, EXTENSION_MISMATCH, EXTENSION_MISMATCH_MEANING, UNREADABLE_IMAGE,
                              Problem, check_image_file, problem_lines)

IMAGE_WITHOUT_ANNOTATION = "image_without_annotation"
ANNOTATION_WITHOUT_IMAGE = "annotation_without_image"
DUPLICATE_STEM = "duplicate_stem"
UNREADABLE_ANNOTATION = "unreadable_annotation"
SIZE_MISMATCH = "size_mismatch"
FILENAME_MISMATCH = "filename_mismatch"
ZERO_AREA_BOX = "zero_area_box"
BOX_OUTSIDE_IMAGE = "box_outside_image"
# Boxes reaching less than this (pixels) outside the image are clipped without a problem row: Label Studio
# stores boxes as percentages of the image, so its COCO export holds e.g. x + width = 640.0001 on a
# 640-pixel image (tried: 26 such rows for 12 images, each one noise to the user).
SUB_PIXEL_OVERSHOOT = 1.0
NEAR_DUPLICATE_BOX = "near_duplicate_box"
CLASS_NAME_VARIANT = "class_name_variant"
EMPTY_ANNOTATION = "empty_annotation"
CROWD_REGION = "crowd_region"

# kind -> what happens to the data, in plain words (shown in summaries).
PROBLEM_KINDS = {
    IMAGE_WITHOUT_ANNOTATION: "image without an annotation file - not used",
    ANNOTATION_WITHOUT_IMAGE: "annotation file without an image - not used",
    DUPLICATE_STEM: "two files share one name stem - only the first is used",
    UNREADABLE_IMAGE: "image cannot be read - pair not used",
    UNREADABLE_ANNOTATION: "annotation file (or a JSON image's boxes) cannot be read - pair not used",
    SIZE_MISMATCH: "image size in the annotation (<size>, or the JSON's) differs from the image - pair not used",
    FILENAME_MISMATCH: "<filename> names another image - paired by file name stem instead",
    ZERO_AREA_BOX: "box with zero or negative area - dropped",
    BOX_OUTSIDE_IMAGE: "box reaches outside the image - clipped or dropped",
    NEAR_DUPLICATE_BOX: "two boxes of one class almost on top of each other - both kept",
    CLASS_NAME_VARIANT: "class names differing only in case/spaces - kept as separate classes",
    EMPTY_ANNOTATION: "annotation without boxes - used as a background image (information)",
    EXTENSION_MISMATCH: EXTENSION_MISMATCH_MEANING,
    CROWD_REGION: "crowd region (COCO iscrowd=1, BBBC041 'difficult') - not trained on, ignored by QC (information)",
}
# IoU above which two same-class boxes count as one object annotated twice. 0.8, not 0.9:
# BCCD's double-clicked RBC pairs have IoU 0.83-0.93, while real neighbouring cells stay below 0.6.
NEAR_DUPLICATE_IOU = 0.8


@dataclasses.dataclass
class DatasetItem:
    """A usable image/annotation pair.

    Attributes:
        stem: the shared file name stem, e.g. "BloodImage_00001".
        image_path: the image file.
        annotation_path: the VOC XML file, or the COCO / BBBC041 JSON file holding its boxes.
        annotation: as read: boxes NOT altered (use ``DetectionDataset.usable_objects``).
        annotation_name: how messages name the annotation: the XML's name (the default), or
            ``"train.json [a.png]"`` for a JSON file.
    """

    stem: str
    image_path: pathlib.Path
    annotation_path: pathlib.Path
    annotation: voc.VocAnnotation
    annotation_name: str = ""

    def __post_init__(self):
        if not self.annotation_name:
            self.annotation_name = pathlib.Path(self.annotation_path).name


# ---------------------------------------------------------------- box geometry


def _area(obj: voc.VocObject) -> float:
    return max(0.0, obj.xmax - obj.xmin) * max(0.0, obj.ymax - obj.ymin)


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        boxes: float [N, 4] pixels (xmin, ymin, xmax, ymax), continuous edges (no +1).

    Returns:
        float64 [N, N], 0 where boxes do not overlap.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lows = np.maximum(boxes[:, None, :2], boxes[None, :, :2])  # [N, N, 2] (x, y) of the overlap's top left
    highs = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    widths, heights = np.moveaxis(np.clip(highs - lows, 0, None), -1, 0)
    intersection = widths * heights
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _describe_box(obj: voc.VocObject) -> str:
    return "(" + ", ".join(voc.format_number(getattr(obj, tag)) for tag in voc.COORDINATE_TAGS) + ")"


def _object_label(index: int, obj: voc.VocObject) -> str:
    return f"object {index + 1} ({obj.name!r})"


# ---------------------------------------------------------------- the box policy


def _apply_box_policy(item: DatasetItem, clip_boxes: bool) -> tuple[list[tuple[int, voc.VocObject]], list[Problem]]:
    """Usable boxes of one item, each with its 0-based index in the file, and the problems found.

    Zero/negative-area boxes are dropped; boxes reaching outside [0, width] x [0, height] are
    clipped (``clip_boxes``) or dropped, except those reaching less than ``SUB_PIXEL_OVERSHOOT``
    outside, which are clipped without a problem (VOC and JSON alike). Near-duplicates are
    checked separately.
    """
    annotation, xml_name = item.annotation, item.annotation_name
    usable, problems = [], []
    for index, obj in enumerate(annotation.objects):
        label, box_text = _object_label(index, obj), _describe_box(obj)
        if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
            shape = "zero" if obj.xmax == obj.xmin or obj.ymax == obj.ymin else "negative"
            problems.append(Problem(ZERO_AREA_BOX, xml_name, index,
                                    f"{xml_name}: {label} box {box_text} has {shape} area; it is dropped.",
                                    "Delete or redraw this box in your annotation tool."))
            continue
        clipped = dataclasses.replace(obj, xmin=max(0.0, obj.xmin), ymin=max(0.0, obj.ymin),
                                      xmax=min(float(annotation.width), obj.xmax),
                                      ymax=min(float(annotation.height), obj.ymax))
        overshoot = max(-obj.xmin, -obj.ymin, obj.xmax - annotation.width, obj.ymax - annotation.height)
        if overshoot <= 0:
            usable.append((index, obj))
            continue
        if overshoot < SUB_PIXEL_OVERSHOOT and clipped.xmax > clipped.xmin and clipped.ymax > clipped.ymin:
            usable.append((index, clipped))  # rounding of a tool's percent coordinates, not a drawing error
            continue
        where = f"{xml_name}: {label} box {box_text} reaches outside the {annotation.width} x {annotation.height} image"
        if clip_boxes and _area(clipped) > 0 and clipped.xmax > clipped.xmin and clipped.ymax > clipped.ymin:
            usable.append((index, clipped))
            problems.append(Problem(BOX_OUTSIDE_IMAGE, xml_name, index,
                                    f"{where}; it is clipped to {_describe_box(clipped)}.",
                                    "Redraw the box inside the image in your annotation tool if the clipped box "
                                    "is wrong."))
        else:
            reason = "it lies entirely outside and is dropped" if clip_boxes else "it is dropped (clip_boxes=False)"
            problems.append(Problem(BOX_OUTSIDE_IMAGE, xml_name, index, f"{where}; {reason}.",
                                    "Redraw the box inside the image in your annotation tool"
                                    + ("." if clip_boxes else ", or load with clip_boxes=True to clip it.")))
    return usable, problems


def _near_duplicates(item: DatasetItem, usable: list[tuple[int, voc.VocObject]], threshold: float) -> list[Problem]:
    """One problem per pair of same-class usable boxes with IoU > ``threshold`` (reported on the later box)."""
    xml_name, problems = item.annotation_name, []
    by_class: dict[str, list[tuple[int, voc.VocObject]]] = collections.defaultdict(list)
    for index, obj in usable:
        by_class[obj.name].append((index, obj))
    pairs = []
    for members in by_class.values():
        if len(members) < 2:
            continue
        overlaps = iou_matrix([[obj.xmin, obj.ymin, obj.xmax, obj.ymax] for _, obj in members])
        for first, second in zip(*np.nonzero(np.triu(overlaps > threshold, k=1))):
            pairs.append((members[first], members[second], float(overlaps[first, second])))
    pairs.sort(key=lambda pair: (pair[1][0], pair[0][0]))  # by the later box's index, as in the file
    for (first_index, first), (second_index, second), overlap in pairs:
        problems.append(Problem(
            NEAR_DUPLICATE_BOX, xml_name, second_index,
            f"{xml_name}: {_object_label(second_index, second)} {_describe_box(second)} overlaps "
            f"object {first_index + 1} {_describe_box(first)} with IoU {overlap:.2f}; probably one cell annotated "
            "twice. Both are kept.",
            "If it is one object, delete one of the two boxes in your annotation tool."))
    return problems


def _class_name_variants(items: list[DatasetItem], usable: dict[str, list[voc.VocObject]]) -> list[Problem]:
    """One problem per class name that equals a more frequent one up to case and whitespace."""
    counts: collections.Counter[str] = collections.Counter()
    first_file: dict[str, str] = {}
    for item in items:
        for obj in usable[item.stem]:
            counts[obj.name] += 1
            first_file.setdefault(obj.name, item.annotation_name)
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for name in sorted(counts):
        groups[" ".join(name.split()).casefold()].append(name)
    problems = []
    for names in groups.values():
        if len(names) < 2:
            continue
        main = min(names, key=lambda name: (-counts[name], name))
        for name in sorted(names):
            if name != main:
                problems.append(Problem(
                    CLASS_NAME_VARIANT, first_file[name], None,
                    f"class {name!r} ({counts[name]} boxes, first in {first_file[name]}) differs from {main!r} "
                    f"({counts[main]} boxes) only in upper/lower case or spaces; they are trained as two classes.",
                    f"Rename {name!r} to {main!r} in your annotation tool (or the XML files) so they are one class."))
    return problems


# ---------------------------------------------------------------- the dataset


class DetectionDataset:
    """Usable image/annotation pairs of a detection dataset and every problem found.

    Attributes:
        images_dir, annotations_dir: the folder and the annotation folder or JSON file given
            (never written to).
        items: usable pairs, sorted by stem.
        problems: every finding, in a fixed order (pairing, then per stem, then class names).
        classes: sorted class names of the usable boxes.
        clip_boxes: the policy for boxes reaching outside the image.
        annotation_format: ``helpers.annotation_formats.VOC``, ``COCO`` or ``BBBC041``.
        annotation_description: the format found and its size, e.g. "COCO JSON, 14 images, 3 categories (train.json)".
    """

    def __init__(self, images_dir: pathlib.Path, annotations_dir: pathlib.Path, items: list[DatasetItem],
                 problems: list[Problem], usable: dict[str, list[voc.VocObject]], clip_boxes: bool = True,
                 kept: dict[str, list[voc.VocObject]] | None = None, annotation_format: str = annotation_formats.VOC,
                 annotation_description: str = ""):
        self.images_dir = pathlib.Path(images_dir)
        self.annotations_dir = pathlib.Path(annotations_dir)
        self.items = items
        self.problems = problems
        self.clip_boxes = clip_boxes
        self.annotation_format = annotation_format
        self.annotation_description = annotation_description or annotation_formats.FORMAT_NAMES[annotation_format]
        self._usable = usable
        self._kept = usable if kept is None else kept
        self._items_by_stem = {item.stem: item for item in items}
        self.classes = sorted({obj.name for item in items for obj in usable[item.stem]})

    def __repr__(self) -> str:
        return (f"DetectionDataset({len(self.items)} usable pairs, {len(self.classes)} classes, "
                f"{len(self.problems)} problems, images_dir={str(self.images_dir)!r})")

    def usable_objects(self, item: DatasetItem) -> list[voc.VocObject]:
        """Boxes of ``item`` to train on, after the policy: zero/negative area dropped, outside clipped or
        dropped, crowd regions left out.

        Works for items of other datasets too (the policy is applied on the fly). Near-duplicates are kept.
        """
        if self._items_by_stem.get(item.stem) is item:
            return list(self._usable[item.stem])
        return [obj for _, obj in _apply_box_policy(item, self.clip_boxes)[0] if not obj.crowd]

    def scoring_objects(self, item: DatasetItem, classes: Sequence[str] | None = None) -> list[voc.VocObject]:
        """Boxes to score ``item`` against in QC: ``usable_objects`` plus its crowd regions (after the same policy).

        Crowd regions are difficult boxes (ignored by scoring); one whose name is not a class (BBBC041's
        ``difficult``) is given once per class of ``classes`` (default: this dataset's classes), so that
        a detection of any class inside it is ignored (``helpers.annotation_formats.scoring_objects``). For a
        VOC dataset this equals ``usable_objects`` (VOC has no crowd regions).
        """
        if self._items_by_stem.get(item.stem) is item:
            kept = list(self._kept[item.stem])
        else:
            kept = [obj for _, obj in _apply_box_policy(item, self.clip_boxes)[0]]
        return annotation_formats.scoring_objects(kept, self.classes if classes is None else classes)

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind, kinds in ``PROBLEM_KINDS`` order."""
        counts = collections.Counter(problem.kind for problem in self.problems)
        order = {kind: position for position, kind in enumerate(PROBLEM_KINDS)}
        return {kind: counts[kind] for kind in sorted(counts, key=lambda kind: (order.get(kind, len(order)), kind))}

    def problems_table(self) -> list[dict[str, Any]]:
        """Every problem as a dict row with keys kind, file, object_index, message, fix."""
        return [dataclasses.asdict(problem) for problem in self.problems]

    def problems_text(self, limit: int | None = None) -> str:
        """Plain-text table (kind | file | object | message), at most ``limit`` rows plus a count of the rest."""
        shown = self.problems if limit is None else self.problems[:limit]
        rows = [("kind", "file", "object", "message")] + [
            (problem.kind, problem.file, "" if problem.object_index is None else str(problem.object_index + 1),
             problem.message) for problem in shown]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        lines = [" | ".join(row[column].ljust(widths[column]) for column in range(3)) + " | " + row[3] for row in rows]
        lines.insert(1, "-+-".join("-" * width for width in widths) + "-+-" + "-" * 7)
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)

    def statistics(self) -> dict[str, Any]:
        """Counts and box sizes of the usable boxes.

        Returns:
            dict with ``images`` (usable pairs), ``objects`` (usable boxes), ``objects_read`` (boxes
            in the usable XML files before the policy), ``classes``, ``objects_per_class``,
            ``images_per_class``, ``objects_per_image`` {min, median, max}, ``box_size_per_class``
            {class: {width|height: {min, median, max}}} in pixels, and ``problems`` (counts per kind).
        """
        per_image = [self.usable_objects(item) for item in self.items]
        objects_per_class = collections.Counter(obj.name for objects in per_image for obj in objects)
        images_per_class = collections.Counter(name for objects in per_image for name in {obj.name for obj in objects})
        counts = [len(objects) for objects in per_image]
        sizes: dict[str, dict[str, list[float]]] = {name: {"width": [], "height": []} for name in self.classes}
        for obj in (obj for objects in per_image for obj in objects):
            sizes[obj.name]["width"].append(obj.xmax - obj.xmin)
            sizes[obj.name]["height"].append(obj.ymax - obj.ymin)
        return {
            "images": len(self.items),
            "objects": sum(counts),
            "objects_read": sum(len(item.annotation.objects) for item in self.items),
            "classes": list(self.classes),
            "objects_per_class": {name: objects_per_class[name] for name in self.classes},
            "images_per_class": {name: images_per_class[name] for name in self.classes},
            "objects_per_image": _summary(counts),
            "box_size_per_class": {name: {axis: _summary(values) for axis, values in axes.items()}
                                   for name, axes in sizes.items()},
            "problems": self.problem_counts(),
        }

    def class_colours(self) -> dict[str, tuple[float, float, float]]:
        """A fixed RGB colour (0..1) per class, the same in every plot."""
        import matplotlib

        palette = matplotlib.colormaps["tab10" if len(self.classes) <= 10 else "tab20"]
        return {name: tuple(palette(index % palette.N)[:3]) for index, name in enumerate(self.classes)}

    def plot_statistics(self, output_dir: str | pathlib.Path) -> list[pathlib.Path]:
        """Save class_counts.png, objects_per_image.png and box_sizes.png in ``output_dir``; their paths."""
        output_dir = pathlib.Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        return [_plot_class_counts(self, output_dir / "class_counts.png"),
                _plot_objects_per_image(self, output_dir / "objects_per_image.png"),
                _plot_box_sizes(self, output_dir / "box_sizes.png")]

    def plot_example(self, output_path: str | pathlib.Path, stem: str | None = None) -> pathlib.Path:
        """Save one image with its usable boxes and class names drawn; the path.

        Args:
            output_path: the PNG to write.
            stem: which image; None picks the one showing the most classes, then the most boxes.

        Raises:
            DatasetError: ``stem`` is not a usable image of this dataset.
        """
        return _plot_example(self, pathlib.Path(output_path), stem)

    def summary_text(self) -> str:
        """A short plain-language summary: counts, then each kind of problem with examples and the fix."""
        stats = self.statistics()
        per_class = ", ".join(f"{name} {count}" for name, count in stats["objects_per_class"].items()) or "none"
        lines = [f"Dataset check of {self.images_dir} and {self.annotations_dir}:",
                 f"  Annotations: {self.annotation_description}.",
                 f"  {stats['images']} usable image/annotation pairs, {len(self.classes)} classes.",
                 f"  {stats['objects']} usable boxes (of {stats['objects_read']} read): {per_class}."]
        if stats["images"]:
            spread = stats["objects_per_image"]
            lines.append(f"  Boxes per image: {spread['min']:g} to {spread['max']:g} (median {spread['median']:g}).")
        if not self.problems:
            lines.append("No problems found.")
            return "\n".join(lines)
        lines.extend(problem_lines(self.problems, self.problem_counts(), PROBLEM_KINDS,
                                   "dataset_problems.json in the run folder"))
        return "\n".join(lines)

    def show_summary(self, output_dir: str | pathlib.Path | None = None, show_plots: bool = True) -> list[pathlib.Path]:
        """Print ``summary_text()``; save the plots and, inside IPython/Jupyter, display them.

        Args:
            output_dir: where the plots go; None uses a new temporary folder (never the input folders).
            show_plots: False only prints the text (no plots are made).

        Returns:
            Paths of the plots saved (empty when ``show_plots`` is False).
        """
        print(self.summary_text())
        if not show_plots:
            return []
        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="dataset_check_")
        folder = pathlib.Path(output_dir)
        paths = self.plot_statistics(folder) + [self.plot_example(folder / "example_annotated_image.png")]
        display.show_images(paths)
        return paths


def _summary(values: Iterable[float]) -> dict[str, float]:
    """{min, median, max} of ``values``; zeros when empty."""
    values = list(values)
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": float(min(values)), "median": float(statistics_module.median(values)), "max": float(max(values))}


# ---------------------------------------------------------------- plots (``helpers.figures``)


def _plot_class_counts(dataset: DetectionDataset, path: pathlib.Path) -> pathlib.Path:
    """Horizontal bars: usable boxes per class, labelled with the number of images containing it."""
    stats = dataset.statistics()
    names = dataset.classes
    figure = figures.new_figure(7, 1.2 + 0.45 * max(1, len(names)))
    axes = figure.add_subplot()
    colours = dataset.class_colours()
    counts = [stats["objects_per_class"][name] for name in names]
    axes.barh(range(len(names)), counts, color=[colours[name] for name in names])
    for row, name in enumerate(names):
        axes.text(counts[row], row, f" {counts[row]} boxes in {stats['images_per_class'][name]} images", va="center")
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlim(0, max(counts + [1]) * 1.45)
    axes.set_xlabel("usable boxes")
    axes.set_title(f"Boxes per class ({stats['images']} images)")
    return figures.save_figure(figure, path)


def _plot_objects_per_image(dataset: DetectionDataset, path: pathlib.Path) -> pathlib.Path:
    """Histogram of usable boxes per image, one bar per count."""
    counts = [len(dataset.usable_objects(item)) for item in dataset.items]
    figure = figures.new_figure(7, 3.5)
    axes = figure.add_subplot()
    highest = max(counts + [0])
    axes.hist(counts, bins=np.arange(-0.5, highest + 1.5, 1.0), color="tab:gray", edgecolor="white")
    axes.set_xlabel("boxes in the image")
    axes.set_ylabel("images")
    axes.yaxis.get_major_locator().set_params(integer=True)  # image counts: no "1.5 images"
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_title(f"Boxes per image ({len(counts)} images)")
    return figures.save_figure(figure, path)


def _plot_box_sizes(dataset: DetectionDataset, path: pathlib.Path) -> pathlib.Path:
    """Scatter of box width against height in pixels, one colour per class."""
    figure = figures.new_figure(6, 5)
    axes = figure.add_subplot()
    colours = dataset.class_colours()
    for name in dataset.classes:
        boxes = [obj for item in dataset.items for obj in dataset.usable_objects(item) if obj.name == name]
        axes.scatter([obj.xmax - obj.xmin for obj in boxes], [obj.ymax - obj.ymin for obj in boxes], s=8,
                     alpha=0.5, color=colours[name], label=f"{name} ({len(boxes)})")
    axes.set_xlabel("box width (pixels)")
    axes.set_ylabel("box height (pixels)")
    axes.set_title("Box sizes per class")
    if dataset.classes:
        axes.legend(loc="best", markerscale=2)
    return figures.save_figure(figure, path)


def plot_network_sizes(dataset: DetectionDataset, box_sizes: dict, pixel_scale: Any, path: str | pathlib.Path
                       ) -> pathlib.Path:
    """Histogram per class of box sizes as the network sees them (sqrt(w x h) x scale, input pixels),
    with the smallest size the anchors match (``tiling.MIN_OBJECT_PIXELS``) and the window overlap.

    Args:
        dataset: for the class colours.
        box_sizes: class -> float [N, 2] (width, height) image pixels (``tiling.measure``).
        pixel_scale: the ``tiling.PixelScale`` in use.
        path: the PNG to write.
    """
    from helpers.detection import tiling

    figure = figures.new_figure(7, 4)
    axes = figure.add_subplot()
    colours = dataset.class_colours()
    values = {name: tiling.typical_size(sizes[:, 0], sizes[:, 1]) * pixel_scale.scale
              for name, sizes in box_sizes.items() if len(sizes)}
    top = max([pixel_scale.overlap * 1.1] + [float(array.max()) for array in values.values()])
    bins = np.linspace(0, top, 40)
    for name, array in values.items():
        axes.hist(array, bins=bins, alpha=0.55, color=colours.get(name), label=f"{name} (median {np.median(array):.0f} px)")
    axes.axvline(tiling.MIN_OBJECT_PIXELS, color="black", linestyle="--",
                 label=f"smallest size the model can match ({tiling.MIN_OBJECT_PIXELS:.0f} px)")
    axes.axvline(pixel_scale.overlap, color="grey", linestyle=":", label=f"window overlap ({pixel_scale.overlap} px)")
    axes.set_xlabel("object size as the network sees it: √(width × height) × pixel scale (pixels)")
    axes.set_ylabel("boxes")
    axes.set_title(f"Object sizes at pixel scale {pixel_scale.scale:g}, {pixel_scale.window}-px windows")
    axes.legend(loc="best", fontsize=8)
    return figures.save_figure(figure, pathlib.Path(path))


def _example_stem(dataset: DetectionDataset) -> str | None:
    """Stem of the image showing the most classes, then the most boxes (first by stem on ties)."""
    best, best_key = None, None
    for item in dataset.items:
        objects = dataset.usable_objects(item)
        key = (len({obj.name for obj in objects}), len(objects))
        if best_key is None or key > best_key:
            best, best_key = item.stem, key
    return best


def _plot_example(dataset: DetectionDataset, path: pathlib.Path, stem: str | None) -> pathlib.Path:
    """One image with its usable boxes (one colour per class) and class names."""
    import matplotlib.patches

    stem = stem if stem is not None else _example_stem(dataset)
    if stem is None:
        figure = figures.new_figure(6, 2)
        figure.text(0.5, 0.5, "No usable image/annotation pair to show.", ha="center", va="center")
        return figures.save_figure(figure, path)
    item = dataset._items_by_stem.get(stem)
    if item is None:
        raise errors.DatasetError(f"{stem}: not a usable image of this dataset. Choose one of "
                                  f"{', '.join(sorted(dataset._items_by_stem)[:5])}, ...")
    pixels = images.read_image(item.image_path)
    height, width = pixels.shape[:2]
    scale = 9.0 / max(width, height)
    figure = figures.new_figure(max(3.0, width * scale), max(3.0, height * scale) + 0.4)
    axes = figure.add_subplot()
    axes.imshow(pixels)
    colours = dataset.class_colours()
    for obj in dataset.usable_objects(item):
        colour = colours.get(obj.name, (1.0, 0.0, 0.0))
        axes.add_patch(matplotlib.patches.Rectangle((obj.xmin, obj.ymin), obj.xmax - obj.xmin, obj.ymax - obj.ymin,
                                                    fill=False, edgecolor=colour, linewidth=1.5))
        axes.text(obj.xmin, obj.ymin, obj.name, color="white", fontsize=7, va="bottom",
                  bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    axes.set_axis_off()
    axes.set_title(f"{item.image_path.name}: {len(dataset.usable_objects(item))} boxes")
    return figures.save_figure(figure, path)


# ---------------------------------------------------------------- loading


def _files_by_stem(paths: Iterable[pathlib.Path], problems: list[Problem]) -> dict[str, pathlib.Path]:
    """stem -> the first file (by name) with that stem; later ones are listed as duplicate_stem."""
    chosen: dict[str, pathlib.Path] = {}
    for path in sorted(paths, key=lambda path: path.name):
        if path.stem in chosen:
            problems.append(Problem(DUPLICATE_STEM, path.name, None,
                                    f"{path.name} has the same name stem as {chosen[path.stem].name}; "
                                    f"only {chosen[path.stem].name} is used.",
                                    "Rename or remove one of the two files so each image has one name."))
        else:
            chosen[path.stem] = path
    return chosen


def _list_annotations(annotations_dir: pathlib.Path) -> list[pathlib.Path]:
    return [path for path in annotations_dir.iterdir()
            if path.is_file() and path.suffix.lower() == ".xml" and not path.name.startswith(".")]


def _pairing_problems(images_by_stem: dict[str, pathlib.Path], xml_by_stem: dict[str, pathlib.Path]) -> list[Problem]:
    problems = []
    for stem in sorted(set(images_by_stem) | set(xml_by_stem)):
        if stem not in xml_by_stem:
            name = images_by_stem[stem].name
            problems.append(Problem(IMAGE_WITHOUT_ANNOTATION, name, None,
                                    f"{name} has no annotation file {stem}.xml; it is not used.",
                                    f"Annotate it and save {stem}.xml in the annotation folder, "
                                    "or move the image out."))
        elif stem not in images_by_stem:
            name = xml_by_stem[stem].name
            problems.append(Problem(ANNOTATION_WITHOUT_IMAGE, name, None,
                                    f"{name} has no image named {stem} (.png, .jpg, .tif, ...); it is not used.",
                                    "Put the image in the image folder with the same name stem, or remove the XML."))
    return problems


def _read_pair(stem: str, image_path: pathlib.Path, xml_path: pathlib.Path,
               images_dir: pathlib.Path) -> tuple[DatasetItem | None, list[Problem]]:
    """Read one pair (the image decoded in full); (None, problems) when it cannot be used."""
    check, problems = check_image_file(image_path, image_path.name, f"it and {xml_path.name} are left out")
    if check is None:
        return None, problems
    width, height = check.width, check.height
    try:
        annotation = voc.read_voc(xml_path, images_dir=images_dir)
    except errors.DatasetError as error:
        return None, [Problem(UNREADABLE_ANNOTATION, xml_path.name, None, str(error),
                              "Fix or re-save this file in your annotation tool (details in the message).")]
    if (annotation.width, annotation.height) != (width, height):
        return None, [Problem(SIZE_MISMATCH, xml_path.name, None,
                              f"{xml_path.name}: <size> says {annotation.width} x {annotation.height} but "
                              f"{image_path.name} is {width} x {height} pixels; the pair is not used.",
                              "The image was probably resized or rotated after annotation: use the annotated "
                              "image, or annotate this one again.")]
    named = pathlib.PureWindowsPath(annotation.filename).name if annotation.filename else ""
    if named and named.casefold() != image_path.name.casefold() and (images_dir / named).is_file():
        problems.append(Problem(FILENAME_MISMATCH, xml_path.name, None,
                                f"{xml_path.name}: <filename> says {named}, which exists too, but it is paired "
                                f"with {image_path.name} (same name stem).",
                                f"If {xml_path.name} belongs to {named}, rename the XML to "
                                f"{pathlib.PurePath(named).stem}.xml."))
    if not annotation.objects:
        problems.append(Problem(EMPTY_ANNOTATION, xml_path.name, None,
                                f"{xml_path.name} has no boxes; {image_path.name} is used as a background image.",
                                "Nothing to fix if the image really shows no objects; otherwise annotate it."))
    return DatasetItem(stem, image_path, xml_path, annotation), problems


# ---------------------------------------------------------------- COCO / BBBC041 JSON


def _json_pairing(source: annotation_formats.JsonAnnotations, image_paths: list[pathlib.Path],
                  images_dir: pathlib.Path) -> tuple[list[tuple[str, annotation_formats.JsonImage]], list[Problem]]:
    """(stem, image) of each JSON image to read, and the pairing problems (the JSON's own first).

    An image is paired with the file the JSON names (``helpers.annotation_formats.find_image``), not by stem.
    """
    json_name = source.path.name
    problems = [Problem(ANNOTATION_WITHOUT_IMAGE, json_name, None, f"{message}; its box is not used.", fix)
                for message, fix in source.orphans]
    chosen: dict[str, annotation_formats.JsonImage] = {}
    referenced = set()
    for entry in source.images:
        if entry.image_path is None and entry.error is None:
            problems.append(Problem(ANNOTATION_WITHOUT_IMAGE, entry.label, None,
                                    f"{entry.label}: image {entry.reference!r} was not found in {images_dir} (nor by "
                                    "its base name or stem); its boxes are not used.",
                                    "Put the image in the images folder under the name the JSON gives, or remove "
                                    "it from the export."))
            continue
        if entry.image_path is not None:
            referenced.add(entry.image_path.resolve())
        if entry.error is not None:
            message, fix = entry.error
            problems.append(Problem(UNREADABLE_ANNOTATION, entry.label, None, f"{message}; the image is not used.", fix))
            continue
        stem = entry.image_path.stem
        if stem in chosen:
            first = chosen[stem]
            problems.append(Problem(DUPLICATE_STEM, entry.label, None,
                                    f"{entry.label}: image {entry.image_path.name} has the same name stem as "
                                    f"{first.image_path.name} ({first.label}); only the first is used.",
                                    "Rename or remove one of the two images (and its entry) so each image has one "
                                    "name stem."))
            continue
        chosen[stem] = entry
    for path in image_paths:
        if path.resolve() not in referenced:
            problems.append(Problem(IMAGE_WITHOUT_ANNOTATION, path.name, None,
                                    f"{path.name} is not listed in {json_name}; it is not used.",
                                    f"Annotate it and export {json_name} again, or move the image out."))
    return sorted(chosen.items()), problems


def _crowd_note(item: DatasetItem, marked_as: str) -> list[Problem]:
    """One information row per image holding crowd regions; ``marked_as`` e.g. "iscrowd=1"."""
    indices = [index for index, obj in enumerate(item.annotation.objects) if obj.crowd]
    if not indices:
        return []
    numbers = ", ".join(str(index + 1) for index in indices[:EXAMPLES_PER_KIND]) + (
        ", ..." if len(indices) > EXAMPLES_PER_KIND else "")
    what = ("1 crowd region (object {}, {}) is" if len(indices) == 1 else
            f"{len(indices)} crowd regions (objects {{}}, {{}}) are").format(numbers, marked_as)
    return [Problem(CROWD_REGION, item.annotation_name, indices[0],
                    f"{item.annotation_name}: {what} not trained on; quality control ignores detections inside "
                    "them.",
                    "Nothing to fix if they are regions of cells that cannot be told apart; to train on a cell, "
                    "give it a class (and iscrowd 0) in your annotation tool.")]


def _read_json_image(stem: str, entry: annotation_formats.JsonImage,
                     source: annotation_formats.JsonAnnotations) -> tuple[DatasetItem | None, list[Problem]]:
    """Check one JSON image (decoded in full) against its entry; (None, problems) when it cannot be used."""
    image_path, label = entry.image_path, entry.label
    check, problems = check_image_file(image_path, image_path.name, f"it and its boxes in {source.path.name} "
                                                                     "are left out")
    if check is None:
        return None, problems
    annotation = entry.annotation
    if (annotation.width, annotation.height) != (check.width, check.height):
        return None, [Problem(SIZE_MISMATCH, label, None,
                              f"{label}: the file gives the size {annotation.width} x {annotation.height} but "
                              f"{image_path.name} is {check.width} x {check.height} pixels; the image is not used.",
                              "The image was probably resized or rotated after annotation: use the annotated "
                              "image, or annotate this one again.")]
    if not annotation.objects:
        problems.append(Problem(EMPTY_ANNOTATION, label, None,
                                f"{label} has no boxes; {image_path.name} is used as a background image.",
                                "Nothing to fix if the image really shows no objects; otherwise annotate it."))
    item = DatasetItem(stem, image_path, source.path, annotation, annotation_name=label)
    marked_as = "iscrowd=1" if source.format == annotation_formats.COCO else "category 'difficult'"
    return item, problems + _crowd_note(item, marked_as)


def _pair_readers(images_dir: pathlib.Path, annotations_path: pathlib.Path,
                  problems: list[Problem]) -> tuple[list[Callable[[], tuple]], str, str]:
    """One reader per image/annotation pair to check (pairing problems appended), the format and its description."""
    annotation_format = annotation_formats.detect_format(annotations_path)
    if annotation_format == annotation_formats.VOC:
        images_by_stem = _files_by_stem(images.list_images(images_dir), problems)
        xml_by_stem = _files_by_stem(_list_annotations(annotations_path), problems)
        problems.extend(_pairing_problems(images_by_stem, xml_by_stem))
        readers = [functools.partial(_read_pair, stem, images_by_stem[stem], xml_by_stem[stem], images_dir)
                   for stem in sorted(set(images_by_stem) & set(xml_by_stem))]
        return readers, annotation_format, (f"{annotation_formats.FORMAT_NAMES[annotation_format]}, {len(xml_by_stem)} "
                                             f".xml files ({annotations_path.name}/)")
    image_paths = images.list_images(images_dir)
    source = annotation_formats.read_json_annotations(annotations_path, images_dir)
    pairs, pairing_problems = _json_pairing(source, image_paths, images_dir)
    problems.extend(pairing_problems)
    readers = [functools.partial(_read_json_image, stem, entry, source) for stem, entry in pairs]
    return readers, annotation_format, source.description()


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
        raise errors.DatasetError(f"{field_name}: {path} does not exist. Check the path in form 1.1 (a folder of "
                                  f".xml files, or a .json file).{workflow.DRIVE_HINT}")
    if annotation_formats.detect_format(path) == annotation_formats.VOC and not _list_annotations(path):
        # One line instead of one "image without annotation" problem per image: the folder is the likely mistake.
        raise errors.DatasetError(f"0 .xml files in {field_name} ({path}; it holds {_folder_contents(path)}): is the "
                                  f"path right? Type the folder of your PASCAL VOC .xml annotations (one per image, "
                                  f"with the image's name), or your COCO or BBBC041 .json file, in form 1.1.")
    return path


def _folder_contents(folder: pathlib.Path, kinds_shown: int = 3) -> str:
    """What a folder holds, in words: ``"24 .png files"``, ``"2 .json files, 1 folder"``, ``"nothing"``."""
    children = [child for child in folder.iterdir() if not child.name.startswith(".")]
    counts = collections.Counter("folder" if child.is_dir() else f"{child.suffix.lower() or 'extensionless'} file"
                                 for child in children)
    parts = [f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in counts.most_common(kinds_shown)]
    return ", ".join(parts) + (", ..." if len(counts) > kinds_shown else "") if parts else "nothing"


def load_detection_dataset(images_dir: str | pathlib.Path, annotations_dir: str | pathlib.Path,
                           clip_boxes: bool = True, progress: bool = True,
                           near_duplicate_iou: float = NEAR_DUPLICATE_IOU) -> DetectionDataset:
    """Pair images with their annotations, check everything, and keep what is usable.

    Nothing in either folder is written, moved or deleted. Every paired image is decoded once in
    full (progress bar), so an image training could not read is listed now and its pair left out.

    Args:
        images_dir: folder of images (.png .jpg .jpeg .bmp .tif .tiff, any case; not recursive).
        annotations_dir: folder of PASCAL VOC .xml files (may be the same folder; paired by name
            stem), or one COCO or BBBC041 .json file (paired by the file names it gives; the
            format is detected, ``helpers.annotation_formats``).
        clip_boxes: clip boxes reaching outside the image (True) or drop them (False); listed either way.
        progress: show a progress bar on stderr.
        near_duplicate_iou: same-class boxes overlapping more than this are listed as near-duplicates.

    Returns:
        The dataset: usable items sorted by stem, every problem, the classes, the format found.

    Raises:
        DatasetError: a folder or the file does not exist; a JSON file that cannot be read or
            parsed, or misses a top-level list (everything else becomes a ``Problem``).
        ConfigError: a file that is neither a folder of XML nor COCO / BBBC041 JSON.
    """
    images_dir, annotations_dir = pathlib.Path(images_dir), pathlib.Path(annotations_dir)
    problems: list[Problem] = []
    images.list_images(images_dir)  # a missing image folder is named before the annotations
    readers, annotation_format, description = _pair_readers(images_dir, annotations_dir, problems)
    items, usable, kept_by_stem = [], {}, {}
    for read in progress_module.bar(readers, "Checking images and annotations", unit="pair", enabled=progress,
                                    leave=False):
        item, pair_problems = read()
        problems.extend(pair_problems)
        if item is None:
            continue
        kept, box_problems = _apply_box_policy(item, clip_boxes)
        trained = [(index, obj) for index, obj in kept if not obj.crowd]
        problems.extend(box_problems + _near_duplicates(item, trained, near_duplicate_iou))
        items.append(item)
        usable[item.stem] = [obj for _, obj in trained]
        kept_by_stem[item.stem] = [obj for _, obj in kept]
    problems.extend(_class_name_variants(items, usable))
    return DetectionDataset(images_dir, annotations_dir, items, problems, usable, clip_boxes, kept=kept_by_stem,
                            annotation_format=annotation_format, annotation_description=description)
