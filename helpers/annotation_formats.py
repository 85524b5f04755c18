"""Detection annotations in the formats people export: a PASCAL VOC folder, COCO JSON, BBBC041 JSON.

Every format is read into the model of ``helpers.voc`` (one ``VocAnnotation`` with ``VocObject``
boxes per image), so the dataset doctor, the split, augmentation, the TFRecords and QC treat them
alike. Which format a path holds is decided by ``detect_format``:

* a folder -> PASCAL VOC (``.xml`` files; read by ``helpers.voc``);
* a ``.json`` file whose top level is an object with ``"images"``, ``"annotations"`` or
  ``"categories"`` -> **COCO** (what CVAT, Roboflow and Label Studio export as "COCO"):
  ``bbox`` is ``[x, y, width, height]`` in pixels, so ``xmax = x + width`` (no +1, the
  convention ``helpers.voc.coco_box`` writes back); categories and images are joined by id;
  ``file_name`` may hold subfolders (tried under the images folder, then by its base name);
  ``iscrowd`` 1 -> a crowd region (below); an image without annotations is a background image;
* a ``.json`` file whose top level is a list of ``{"image": ..., "objects": [...]}`` ->
  **BBBC041** (the malaria blood-smear set of the Broad Bioimage Benchmark Collection):
  ``image.pathname`` (e.g. ``/images/abc.png``; tried under the images folder, then by base
  name), ``image.shape {r, c, channels}`` (height, width), and per object
  ``bounding_box.minimum/maximum {r, c}`` (r = row = y, c = column = x, continuous pixel edges)
  and ``category``; the category ``difficult`` (a cell the annotators could not classify) ->
  a crowd region;
* anything else -> ``ConfigError`` naming the file and these formats.

**Crowd regions** (``VocObject.crowd``, with ``difficult`` set too) are left out of training by
the doctor and scored as crowd regions (pycocotools ``iscrowd``) in QC, where a detection inside
one is neither a true nor a false positive. A region whose name is not a class (BBBC041's
``difficult``) is given to QC once per class (``scoring_objects``), so it covers a cell of any
class.

``load_ground_truth`` is QC's one reader of ground truth, for VOC folders and JSON files alike
(boxes of zero or negative area left out, with one warning).

A file that cannot be used at all (missing, not JSON, another structure, a top-level list or
key missing) raises; a problem with one image or one box is kept with that image
(``JsonImage.error``) or as an orphan (``JsonAnnotations.orphans``: boxes of an image the file
does not list), so the doctor lists it and uses the rest. Messages name the file and the image,
e.g. ``train.json [a.png]: annotation 7 has category_id 9 ...``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import pathlib
from typing import Any, Iterable, Sequence

from helpers import errors, images, voc

LOGGER = logging.getLogger(__name__)
VOC, COCO, BBBC041 = "voc", "coco", "bbbc041"
FORMAT_NAMES = {VOC: "PASCAL VOC XML", COCO: "COCO JSON", BBBC041: "BBBC041 JSON"}
ACCEPTED = ('a folder of PASCAL VOC .xml files, or one .json file: COCO (an object with "images", "annotations" '
            'and "categories", as CVAT, Roboflow and Label Studio export it) or BBBC041 (a list of '
            '{"image": ..., "objects": [...]})')
COCO_KEYS = ("images", "annotations", "categories")
BBBC041_DIFFICULT = "difficult"
FIX_EXPORT = "Fix it in your annotation tool and export the file again."
EXAMPLES_IN_ERRORS = 5


@dataclasses.dataclass
class JsonImage:
    """One image of a COCO or BBBC041 file, read into the VOC model.

    Attributes:
        reference: the image as the file names it (COCO ``file_name``, BBBC041 ``image.pathname``).
        label: how messages name it, e.g. ``"train.json [a.png]"`` (the base name, no folders).
        image_path: the image found in the images folder, or None (not found, or no folder given).
        annotation: ``filename`` the base name; width and height as the file says (from the image
            header when the file does not say; 0 when neither is known); objects in file order
            (COCO: the annotations of this image id), coordinates as written; ``path`` None.
        error: (message, fix) when this image's boxes cannot be used (a malformed box, an unknown
            category, ...); None when they can. The message says what is wrong, not what is done
            about it (the doctor leaves the image out; QC refuses the file).
    """

    reference: str
    label: str
    image_path: pathlib.Path | None
    annotation: voc.VocAnnotation
    error: tuple[str, str] | None = None


@dataclasses.dataclass
class JsonAnnotations:
    """A COCO or BBBC041 file as read.

    Attributes:
        path: the ``.json`` file.
        format: ``COCO`` or ``BBBC041``.
        images: one entry per image, in file order.
        orphans: (message, fix) per annotation that belongs to no image of the file (unknown or
            missing ``image_id``); messages as in ``JsonImage.error``.
        categories: class names the file defines (COCO ``categories``; BBBC041: the categories
            used, ``difficult`` left out), in file order.
    """

    path: pathlib.Path
    format: str
    images: list[JsonImage]
    orphans: list[tuple[str, str]]
    categories: list[str]

    def description(self) -> str:
        """E.g. ``"COCO JSON, 14 images, 3 categories (train.json)"``."""
        return (f"{FORMAT_NAMES[self.format]}, {len(self.images)} images, {len(self.categories)} categories "
                f"({self.path.name})")


# ---------------------------------------------------------------- format detection


def _not_found(path: pathlib.Path) -> errors.DatasetError:
    return errors.DatasetError(f"{path}: annotation folder or file not found. Fix the path in the form (it must be "
                               f"{ACCEPTED}).")


@functools.lru_cache(maxsize=2)
def _parse_json(path: pathlib.Path, modified_ns: int, size: int) -> Any:
    """The parsed JSON of ``path`` (cached per path, modification time and size: never mutate it)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise errors.DatasetError(f"{path}: cannot read the annotation file ({error.strerror or error}). "
                                  "Check the path and the file's permissions.") from error
    if not data.strip():
        raise errors.DatasetError(f"{path}: the annotation file is empty. {FIX_EXPORT}")
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise errors.DatasetError(f"{path}: is not UTF-8 text, so not a JSON export ({error.reason} at byte "
                                  f"{error.start}). {FIX_EXPORT}") from error
    except json.JSONDecodeError as error:
        raise errors.DatasetError(f"{path}: is not valid JSON ({error.msg} at line {error.lineno}, column "
                                  f"{error.colno}). {FIX_EXPORT} A file cut short (an unfinished upload or copy) "
                                  "also gives this.") from error


def load_json(path: str | pathlib.Path) -> Any:
    """The parsed JSON of an annotation file; DatasetError when it is unreadable, empty or not JSON."""
    path = pathlib.Path(path)
    try:
        status = path.stat()
    except OSError as error:
        raise _not_found(path) from error
    return _parse_json(path.resolve(), status.st_mtime_ns, status.st_size)


def _json_format(path: pathlib.Path, data: Any) -> str:
    """COCO or BBBC041 by the top-level structure; ConfigError naming the accepted formats otherwise."""
    if isinstance(data, dict) and any(key in data for key in COCO_KEYS):
        return COCO
    if isinstance(data, list) and data and all(isinstance(entry, dict) and "image" in entry for entry in data):
        return BBBC041
    if isinstance(data, dict):
        keys = ", ".join(repr(key) for key in list(data)[:EXAMPLES_IN_ERRORS]) or "none"
        what = f"an object with the keys {keys}"
    elif isinstance(data, list):
        what = "an empty list" if not data else 'a list whose entries are not all {"image": ..., "objects": ...}'
    else:
        what = f"a single {type(data).__name__}"
    raise errors.ConfigError(f"{path}: JSON whose top level is {what}, which is neither COCO nor BBBC041. "
                             f"Annotations must be {ACCEPTED}.")


def detect_format(path: str | pathlib.Path) -> str:
    """``VOC`` for a folder, ``COCO`` or ``BBBC041`` for a ``.json`` file, by its top-level structure.

    Raises:
        DatasetError: the path does not exist; the JSON cannot be read or parsed.
        ConfigError: a file that is not ``.json``, or JSON of another structure.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        return VOC
    if not path.exists():
        raise _not_found(path)
    if path.suffix.lower() != ".json":
        raise errors.ConfigError(f"{path}: is a file but not a .json file. Annotations must be {ACCEPTED}.")
    return _json_format(path, load_json(path))


def describe(path: str | pathlib.Path) -> str:
    """The format found and its size, e.g. ``"COCO JSON, 14 images, 3 categories (train.json)"``."""
    path = pathlib.Path(path)
    if detect_format(path) == VOC:
        count = sum(1 for child in path.iterdir() if child.is_file() and child.suffix.lower() == ".xml"
                    and not child.name.startswith("."))
        return f"{FORMAT_NAMES[VOC]}, {count} .xml files ({path.name}/)"
    return read_json_annotations(path).description()


# ---------------------------------------------------------------- shared pieces


def find_image(reference: str, images_dir: str | pathlib.Path | None) -> pathlib.Path | None:
    """The image a JSON file names, under ``images_dir``; None when absent.

    Tried in order: the reference as a relative path (leading slashes removed, so BBBC041's
    ``/images/a.png`` is found under the dataset's root folder too; never with ``..``), its base
    name, then a file with the same stem and any image extension (either case).
    """
    if images_dir is None or not reference.strip():
        return None
    folder = pathlib.Path(images_dir)
    relative = pathlib.PurePosixPath(reference.strip().replace("\\", "/").lstrip("/"))
    candidates = [] if ".." in relative.parts else [folder / relative]
    candidates.append(folder / relative.name)
    candidates.extend(folder / f"{relative.stem}{extension}" for extension in images.IMAGE_EXTENSIONS)
    candidates.extend(folder / f"{relative.stem}{extension.upper()}" for extension in images.IMAGE_EXTENSIONS)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _finite(value: Any) -> float | None:
    """``value`` as a finite float (JSON numbers only, not text or booleans); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _size(width: Any, height: Any, image_path: pathlib.Path | None) -> tuple[int, int]:
    """(width, height) from the file when both are positive numbers, else the image header, else (0, 0)."""
    width, height = _finite(width), _finite(height)
    if width and height and width > 0 and height > 0:
        return int(round(width)), int(round(height))
    if image_path is None:
        return 0, 0
    try:
        return images.image_size(image_path)
    except errors.DatasetError:  # an unreadable image: the doctor lists it when it decodes the file
        return 0, 0


def _entry(path: pathlib.Path, reference: str, images_dir: pathlib.Path | None, width: Any, height: Any) -> JsonImage:
    """A JsonImage without boxes yet: the image looked up, the size from the file or the image."""
    name = pathlib.PureWindowsPath(reference.strip()).name
    image_path = find_image(reference, images_dir)
    width, height = _size(width, height, image_path)
    return JsonImage(reference=reference, label=f"{path.name} [{name}]", image_path=image_path,
                     annotation=voc.VocAnnotation(filename=name, width=width, height=height, depth=3, objects=[]))


def _broken(path: pathlib.Path, what: str, message: str, fix: str = FIX_EXPORT) -> JsonImage:
    """A JsonImage for an image entry that names no usable image (no file name, not an object)."""
    return JsonImage(reference="", label=f"{path.name} [{what}]", image_path=None,
                     annotation=voc.VocAnnotation(filename="", width=0, height=0, depth=3, objects=[]),
                     error=(f"{path.name}: {what} {message}", fix))


def _fail(entry: JsonImage, message: str, fix: str = FIX_EXPORT) -> None:
    """Mark ``entry`` unusable (the first reason is kept)."""
    if entry.error is None:
        entry.error = (f"{entry.label}: {message}", fix)


# ---------------------------------------------------------------- COCO


def _coco_categories(path: pathlib.Path, entries: list) -> dict[Any, str]:
    """category id -> name; DatasetError for an entry without id or name, or a repeated id."""
    categories: dict[Any, str] = {}
    for position, entry in enumerate(entries):
        category_id = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(category_id, bool) or not isinstance(category_id, (int, str)) or not isinstance(name, str) \
                or not name.strip():
            raise errors.DatasetError(f'{path}: "categories" entry {position + 1} ({entry!r:.80}) needs an "id" and a '
                                      f'"name". {FIX_EXPORT}')
        if category_id in categories:
            raise errors.DatasetError(f'{path}: category id {category_id!r} is defined twice ({categories[category_id]!r} '
                                      f'and {name!r}). {FIX_EXPORT}')
        categories[category_id] = name
    return categories


def _coco_images(path: pathlib.Path, entries: list, images_dir: pathlib.Path | None) -> tuple[list[JsonImage], dict]:
    """The image entries, and image id -> JsonImage (ids shared by two entries make both unusable)."""
    result, by_id, shared = [], {}, set()
    for position, entry in enumerate(entries):
        what = f"image entry {position + 1}"
        if not isinstance(entry, dict):
            result.append(_broken(path, what, f"is {type(entry).__name__}, not a JSON object"))
            continue
        file_name, image_id = entry.get("file_name"), entry.get("id")
        if not isinstance(file_name, str) or not file_name.strip():
            result.append(_broken(path, f"{what} (id {image_id!r})", 'has no "file_name"'))
            continue
        image = _entry(path, file_name, images_dir, entry.get("width"), entry.get("height"))
        result.append(image)
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            _fail(image, f'its entry has {"no" if image_id is None else "an invalid"} "id", so no box can refer to it')
        elif image_id in by_id:
            shared.add(image_id)
            by_id[image_id].append(image)
        else:
            by_id[image_id] = [image]
    for image_id in shared:
        names = ", ".join(repr(image.annotation.filename) for image in by_id[image_id])
        for image in by_id[image_id]:
            _fail(image, f"image id {image_id!r} is shared by {names}, so their boxes cannot be told apart",
                  "Give every image its own id (export the COCO file again).")
    return result, {image_id: members[0] for image_id, members in by_id.items()}


def _coco_object(entry: dict, categories: dict[Any, str]) -> voc.VocObject | str:
    """The box of one annotation, or why it is unusable."""
    category_id = entry.get("category_id")
    hashable = isinstance(category_id, (int, str)) and not isinstance(category_id, bool)
    if not hashable or category_id not in categories:
        return f'has category_id {category_id!r}, which is not in "categories"'
    box = entry.get("bbox")
    values = [_finite(value) for value in box] if isinstance(box, list) else []
    if len(values) != 4 or None in values:
        return ('has no "bbox"' if box is None else
                f"has bbox {box!r:.60}; expected [x, y, width, height], four numbers in pixels")
    crowd = entry.get("iscrowd", 0)
    if crowd not in (0, 1, True, False):
        return f"has iscrowd {crowd!r}; expected 0 or 1"
    x, y, width, height = values
    return voc.VocObject(name=categories[category_id], xmin=x, ymin=y, xmax=x + width, ymax=y + height,
                         difficult=bool(crowd), crowd=bool(crowd))


def _read_coco(path: pathlib.Path, data: dict, images_dir: pathlib.Path | None) -> JsonAnnotations:
    for key in COCO_KEYS:
        if not isinstance(data.get(key), list):
            raise errors.DatasetError(f'{path}: COCO file without a "{key}" list (top-level keys: '
                                      f'{", ".join(repr(name) for name in data) or "none"}). Export "COCO" (detection '
                                      f'boxes) from your annotation tool; it writes "images", "annotations" and '
                                      f'"categories".')
    categories = _coco_categories(path, data["categories"])
    entries, by_id = _coco_images(path, data["images"], images_dir)
    orphans = []
    for position, annotation in enumerate(data["annotations"]):
        label = f"annotation {annotation.get('id', position + 1) if isinstance(annotation, dict) else position + 1}"
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        image = by_id.get(image_id) if isinstance(image_id, (int, str)) and not isinstance(image_id, bool) else None
        if image is None:
            orphans.append((f'{path.name}: {label} refers to image id {image_id!r}, which is not in "images"',
                            "Export the COCO file again with all its images, or remove the annotation."))
            continue
        box = _coco_object(annotation, categories)
        if isinstance(box, str):
            _fail(image, f"{label} {box}")
        else:
            image.annotation.objects.append(box)
    return JsonAnnotations(path, COCO, entries, orphans, list(dict.fromkeys(categories.values())))


# ---------------------------------------------------------------- BBBC041


def _bbbc041_object(entry: Any, index: int) -> voc.VocObject | str:
    """One object (r = row = y, c = column = x), or why it is unusable. ``index`` counts from 0."""
    label = f"object {index + 1}"
    if not isinstance(entry, dict):
        return f"{label} is {type(entry).__name__}, not a JSON object"
    category = entry.get("category")
    if not isinstance(category, str) or not category.strip():
        return f'{label} has no "category"'
    box = entry.get("bounding_box")
    corners = {}
    for corner in ("minimum", "maximum"):
        point = box.get(corner) if isinstance(box, dict) else None
        row, column = (_finite(point.get(axis)) if isinstance(point, dict) else None for axis in ("r", "c"))
        if row is None or column is None:
            return (f"{label} ({category!r}) has no bounding_box.{corner} with numbers r (row) and c (column)")
        corners[corner] = (row, column)
    difficult = category == BBBC041_DIFFICULT
    (ymin, xmin), (ymax, xmax) = corners["minimum"], corners["maximum"]
    return voc.VocObject(name=category, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, difficult=difficult,
                         crowd=difficult)


def _read_bbbc041(path: pathlib.Path, data: list, images_dir: pathlib.Path | None) -> JsonAnnotations:
    entries, categories = [], {}
    for position, item in enumerate(data):
        image = item.get("image")
        pathname = image.get("pathname") if isinstance(image, dict) else None
        if not isinstance(pathname, str) or not pathname.strip():
            entries.append(_broken(path, f"entry {position + 1}", 'has no "image" with a "pathname"'))
            continue
        shape = image.get("shape") if isinstance(image.get("shape"), dict) else {}
        entry = _entry(path, pathname, images_dir, shape.get("c"), shape.get("r"))
        entries.append(entry)
        objects = item.get("objects")
        if not isinstance(objects, list):
            _fail(entry, 'its entry has no "objects" list ([] for an image of background only)')
            continue
        for index, element in enumerate(objects):
            box = _bbbc041_object(element, index)
            if isinstance(box, str):
                _fail(entry, box)
                break
            entry.annotation.objects.append(box)
            if not box.crowd:
                categories.setdefault(box.name, None)
    return JsonAnnotations(path, BBBC041, entries, [], list(categories))


# ---------------------------------------------------------------- public readers


def read_json_annotations(path: str | pathlib.Path, images_dir: str | pathlib.Path | None = None) -> JsonAnnotations:
    """Read a COCO or BBBC041 file into the VOC model (per-image problems kept, not raised).

    Args:
        path: the ``.json`` file.
        images_dir: the images folder, to find each image (``JsonImage.image_path``) and its size
            when the file does not give one; None skips both.

    Raises:
        DatasetError: the file is missing, unreadable or not JSON; a COCO top-level list is missing;
            a COCO category without id or name, or a repeated category id.
        ConfigError: not a ``.json`` file, or JSON of neither structure.
    """
    path = pathlib.Path(path)
    annotation_format = detect_format(path)
    if annotation_format == VOC:
        raise errors.ConfigError(f"{path}: is a folder; read PASCAL VOC folders with helpers.detection.dataset or helpers.voc.")
    folder = None if images_dir is None else pathlib.Path(images_dir)
    reader = _read_coco if annotation_format == COCO else _read_bbbc041
    return reader(path, load_json(path), folder)


def scoring_objects(objects: Iterable[voc.VocObject], classes: Sequence[str]) -> list[voc.VocObject]:
    """Boxes to score against: a crowd region whose name is not in ``classes`` becomes one per class.

    A BBBC041 ``difficult`` cell is of unknown class, and pycocotools matches crowd regions per
    category, so it is given once per class: a detection of any class inside it is ignored.
    Other boxes (crowd regions of a class included) are kept as they are, in order.
    """
    names = list(classes)
    result = []
    for obj in objects:
        if obj.crowd and obj.name not in names:
            result.extend(dataclasses.replace(obj, name=name) for name in names)
        else:
            result.append(obj)
    return result


def _one_line(problems: list[tuple[str, str]], what: str) -> str:
    """The first problem, how many there are, and its fix, on one line."""
    message, fix = problems[0]
    more = f" ({len(problems)} {what} in all)" if len(problems) > 1 else ""
    return f"{message}{more}. {fix}"


def _positive_area(objects: Sequence[voc.VocObject], label: str, dropped: list[str]) -> list[voc.VocObject]:
    """The boxes of one image with positive width and height; ``"<label> object <n>"`` of each other one to ``dropped``.

    No detection can match a box of zero or negative area (pycocotools' IoU with it is 0), and
    the dataset doctor drops such boxes for training, so QC leaves them out too.
    """
    kept = []
    for index, obj in enumerate(objects):
        if obj.xmax > obj.xmin and obj.ymax > obj.ymin:
            kept.append(obj)
        else:
            dropped.append(f"{label} object {index + 1}")
    return kept


def _voc_image_name(annotation: voc.VocAnnotation, path: pathlib.Path, images_dir: pathlib.Path | None) -> str:
    """The image a VOC file describes: ``<filename>`` without folders, else the image found, else the XML stem."""
    if annotation.filename:
        return pathlib.PureWindowsPath(annotation.filename).name
    if images_dir is not None:
        for candidate in images.list_images(images_dir):
            if candidate.stem == path.stem:
                return candidate.name
    return path.stem


def _voc_ground_truth(folder: pathlib.Path, images_dir: pathlib.Path | None,
                      dropped: list[str]) -> dict[str, voc.VocAnnotation]:
    """Every VOC file of ``folder`` (not recursive, hidden files skipped) keyed by image name; see ``load_ground_truth``."""
    paths = sorted(path for path in folder.iterdir()
                   if path.is_file() and path.suffix.lower() == ".xml" and not path.name.startswith("."))
    if not paths:
        raise errors.DatasetError(f"{folder}: no .xml files in the ground-truth folder. "
                                  "Give the folder holding the PASCAL VOC annotations.")
    ground_truth: dict[str, voc.VocAnnotation] = {}
    for path in paths:
        annotation = voc.read_voc(path, images_dir=images_dir)
        name = _voc_image_name(annotation, path, images_dir)
        if name in ground_truth:
            raise errors.DatasetError(f"{path}: describes image {name!r}, as {ground_truth[name].path} does. "
                                      "Remove one of the two files, or fix its <filename>.")
        ground_truth[name] = dataclasses.replace(annotation, filename=name,
                                                 objects=_positive_area(annotation.objects, path.name, dropped))
    return ground_truth


def _json_ground_truth(path: pathlib.Path, images_dir: pathlib.Path | None,
                       dropped: list[str]) -> dict[str, voc.VocAnnotation]:
    """A COCO or BBBC041 file keyed by image base name; see ``load_ground_truth``."""
    source = read_json_annotations(path, images_dir)
    broken = [image.error for image in source.images if image.error is not None]
    if broken or source.orphans:
        raise errors.DatasetError(_one_line(broken or source.orphans, "such problems"))
    ground_truth: dict[str, voc.VocAnnotation] = {}
    for entry in source.images:
        annotation = entry.annotation
        if annotation.filename in ground_truth:
            raise errors.DatasetError(f"{entry.label}: the image appears twice in {source.path.name}. Remove one of "
                                      "the two entries.")
        if annotation.width <= 0 or annotation.height <= 0:
            raise errors.DatasetError(f"{entry.label}: the file gives no image size and the image was not found. "
                                      "Give the images folder (--images), or export the file with image sizes.")
        kept = _positive_area(annotation.objects, entry.label, dropped)
        ground_truth[annotation.filename] = dataclasses.replace(annotation, objects=scoring_objects(kept,
                                                                                                    source.categories))
    if not ground_truth:
        raise errors.DatasetError(f"{source.path}: lists no images. Give the annotation file of your test images.")
    return ground_truth


def load_ground_truth(path: str | pathlib.Path,
                      images_dir: str | pathlib.Path | None = None) -> dict[str, voc.VocAnnotation]:
    """QC ground truth from a folder of PASCAL VOC files or one COCO or BBBC041 ``.json`` file.

    The one reader of ground truth for scoring (``helpers.qc.detection`` and ``python -m helpers.qc``).
    Boxes with zero or negative area are left out (with one warning on the log): no detection can
    match them. Everything else is kept as written (coordinates are not clipped: COCOeval does not
    need boxes inside the image). Images without boxes are kept: their images count, and
    detections on them are false positives.

    * VOC folder: every ``.xml`` (not recursive; hidden files skipped), keyed by ``<filename>``
      without folders, else the image of the same stem in ``images_dir``, else the XML stem;
      ``path`` of each annotation is its XML.
    * JSON file: keyed by image base name; crowd regions are difficult boxes (ignored when
      scoring), given once per category of the file when their name is not one
      (``scoring_objects``); ``path`` is None, so predictions also match by image stem.

    Args:
        path: the VOC folder or the ``.json`` file.
        images_dir: where images are looked up (VOC files without ``<size>`` or ``<filename>``;
            JSON files without image sizes).

    Returns:
        image file name -> annotation with ``filename`` set to that key.

    Raises:
        DatasetError: the path is missing; a folder without XML; a file that cannot be read; two
            files or entries for one image; for JSON anything the doctor would list for this file
            (one line: the first problem, how many there are, the fix), or an image whose size
            neither the file nor the image gives.
        ConfigError: a file that is neither a folder nor COCO / BBBC041 JSON.
    """
    path = pathlib.Path(path)
    images_folder = None if images_dir is None else pathlib.Path(images_dir)
    if not path.exists():
        raise errors.DatasetError(f"{path}: ground truth not found. Give the folder of PASCAL VOC .xml files "
                                  "or a COCO / BBBC041 .json file.")
    dropped: list[str] = []
    reader = _voc_ground_truth if path.is_dir() else _json_ground_truth
    ground_truth = reader(path, images_folder, dropped)
    if dropped:
        examples = ", ".join(dropped[:EXAMPLES_IN_ERRORS]) + (" ..." if len(dropped) > EXAMPLES_IN_ERRORS else "")
        LOGGER.warning("%d ground-truth box(es) with zero or negative area left out (no detection can match them): %s",
                       len(dropped), examples)
    return ground_truth
