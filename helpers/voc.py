"""PASCAL VOC XML annotations: read what real tools write, write what they read.

Reads files written by LabelImg, CVAT, Roboflow and the original VOC devkit:
integer or float coordinates, a UTF-8 byte-order mark, non-ASCII names, ``<part>`` children
and unknown tags (ignored), ``<difficult>``/``<truncated>`` missing or blank (False), and a
missing or zero ``<size>`` (then the image's header gives width and height).

Coordinates are kept exactly as the file says (no clipping, no +1/-1): checking them against
the image is the dataset doctor's job (``helpers.detection.dataset``). Class names are kept exactly too,
so the doctor can report names that differ only in case or whitespace.

Problems that make a file unusable raise ``DatasetError`` naming the file and the object,
counted from 1 in file order, e.g.
``annotations/a.xml: object 3 ('RBC') has no <xmax>. Fix ...``.
XML is parsed without resolving entities, loading DTDs or touching the network.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

from lxml import etree

from helpers import errors, images

COORDINATE_TAGS = ("xmin", "ymin", "xmax", "ymax")
DEFAULT_DEPTH = 3
FIX_IN_TOOL = "Fix it in your annotation tool (e.g. LabelImg, CVAT) and save again, or remove the file."


@dataclasses.dataclass
class VocObject:
    """One box of a VOC file.

    Attributes:
        name: class name, exactly as written in ``<name>``.
        xmin, ymin, xmax, ymax: float pixels, as written in the file (not clipped).
        difficult: ``<difficult>`` is 1 (VOC evaluation ignores these boxes).
        truncated: ``<truncated>`` is 1 (object cut by the image border).
        score: ``<score>`` written by our predictions; None for ground truth.
        crowd: a region holding objects rather than one object: COCO ``iscrowd`` 1, or BBBC041's
            ``difficult`` category (``helpers.annotation_formats``); ``difficult`` is set too. The dataset
            doctor leaves it out of training and QC scores it as a crowd region. VOC XML has no such
            tag: never read from or written to ``.xml`` (False for every VOC box).
    """

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    score: float | None = None
    crowd: bool = False


@dataclasses.dataclass
class VocAnnotation:
    """One VOC file.

    Attributes:
        filename: ``<filename>``, the image file name (surrounding whitespace removed).
        width, height: image size in pixels (from ``<size>`` or, if absent, the image header).
        depth: channels from ``<size>``; 3 when the file does not say.
        objects: boxes in file order (may be empty: a background image).
        path: the XML file it was read from; not written by ``write_voc`` and not compared
            by ``==`` (two annotations with the same content are equal wherever they live).
    """

    filename: str
    width: int
    height: int
    depth: int
    objects: list[VocObject]
    path: pathlib.Path | None = dataclasses.field(default=None, compare=False)


def coco_box(obj: VocObject) -> list[float]:
    """COCO box ``[x, y, width, height]`` in float pixels of a VOC box.

    ``width = xmax - xmin`` and ``height = ymax - ymin`` with no +1: we treat VOC coordinates
    as continuous pixel edges, the convention of LabelImg, CVAT and Roboflow (the original VOC
    devkit's 1-based inclusive pixels would add 1; that one-pixel difference is ignored).
    """
    return [float(obj.xmin), float(obj.ymin), float(obj.xmax - obj.xmin), float(obj.ymax - obj.ymin)]


# ---------------------------------------------------------------- reading


def _error(path: pathlib.Path, problem: str, fix: str = FIX_IN_TOOL) -> errors.DatasetError:
    return errors.DatasetError(f"{path}: {problem}. {fix}")


def _parse_xml(path: pathlib.Path) -> etree._Element:
    """Root element of ``path``; DatasetError for unreadable, empty or malformed files."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _error(path, f"cannot read the annotation file ({error.strerror or error})",
                     "Check the path and the file's permissions.") from error
    if not data.strip():
        raise _error(path, "the annotation file is empty (no XML at all)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise _error(path, f"is not valid XML ({error})") from error
    if etree.QName(root).localname != "annotation":
        raise _error(path, f"root element is <{etree.QName(root).localname}>, not <annotation>, so this is not "
                           "a PASCAL VOC file", "Export PASCAL VOC XML from your annotation tool.")
    return root


def _child_text(element: etree._Element, tag: str) -> str | None:
    """Text of the first child ``tag``; None when the child is absent, '' when it is empty."""
    child = element.find(tag)
    if child is None:
        return None
    return child.text or ""


def _number(text: str | None) -> float | None:
    """Finite float of ``text``, or None when it is missing, blank or not a number."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _flag(text: str | None) -> bool | None:
    """VOC 0/1 flag: missing or blank -> False; '1', 'true', 'yes' -> True; garbage -> None."""
    if text is None or not text.strip():
        return False
    word = text.strip().lower()
    if word in ("true", "yes"):
        return True
    if word in ("false", "no"):
        return False
    value = _number(word)
    return None if value is None else value != 0


def _object_label(index: int, name: str | None) -> str:
    """'object 3' or "object 3 ('RBC')"; ``index`` is 0-based, the label 1-based."""
    return f"object {index + 1}" if not name or not name.strip() else f"object {index + 1} ({name!r})"


def _read_object(element: etree._Element, index: int, path: pathlib.Path) -> VocObject:
    """One ``<object>``; DatasetError naming the object when a required part is missing."""
    name = _child_text(element, "name")
    label = _object_label(index, name)
    if name is None or not name.strip():
        raise _error(path, f"{label} has {'a blank' if name is not None else 'no'} <name> (class name)",
                     "Give the box a class name in your annotation tool, or delete the box.")
    box = element.find("bndbox")
    if box is None:
        raise _error(path, f"{label} has no <bndbox>", "Draw the box again in your annotation tool, or delete it.")
    coordinates = {}
    for tag in COORDINATE_TAGS:
        text = _child_text(box, tag)
        value = _number(text)
        if value is None:
            what = "no" if text is None else ("an empty" if not text.strip() else f"a non-numeric ({text.strip()!r})")
            raise _error(path, f"{label} has {what} <{tag}>",
                         "Fix the box coordinates in your annotation tool, or delete the box.")
        coordinates[tag] = value
    flags = {}
    for tag in ("difficult", "truncated"):
        flags[tag] = _flag(_child_text(element, tag))
        if flags[tag] is None:
            raise _error(path, f"{label} has <{tag}>{_child_text(element, tag).strip()}</{tag}>; expected 0 or 1")
    score_text = _child_text(element, "score")
    score = _number(score_text)
    if score_text is not None and score_text.strip() and score is None:
        raise _error(path, f"{label} has a non-numeric <score> ({score_text.strip()!r})")
    return VocObject(name=name, **coordinates, difficult=flags["difficult"], truncated=flags["truncated"], score=score)


def _find_image(xml_path: pathlib.Path, filename: str, images_dir: pathlib.Path | None) -> pathlib.Path | None:
    """The image a VOC file describes: ``<filename>`` (or the XML's stem) in ``images_dir``, then next to the XML.

    Windows or POSIX folders in ``<filename>`` are ignored; a file with the same stem and any
    image extension (any case) is accepted when the exact name is absent.
    """
    name = pathlib.PureWindowsPath(filename).name if filename else ""
    folders = [folder for folder in (images_dir, xml_path.parent) if folder is not None]
    for folder in folders:
        if name and (folder / name).is_file():
            return folder / name
    stems = [stem for stem in (pathlib.PurePath(name).stem if name else None, xml_path.stem) if stem]
    for folder in folders:
        for stem in stems:
            for extension in images.IMAGE_EXTENSIONS:
                for candidate in (folder / f"{stem}{extension}", folder / f"{stem}{extension.upper()}"):
                    if candidate.is_file():
                        return candidate
    return None


def _read_size(root: etree._Element, path: pathlib.Path, filename: str,
               images_dir: pathlib.Path | None) -> tuple[int, int, int]:
    """(width, height, depth) from ``<size>``, or from the image header when it is missing or 0."""
    size = root.find("size")
    width = height = depth = None
    if size is not None:
        width, height, depth = (_number(_child_text(size, tag)) for tag in ("width", "height", "depth"))
    depth_value = int(depth) if depth and depth > 0 else DEFAULT_DEPTH
    if width and height and width > 0 and height > 0:
        return int(round(width)), int(round(height)), depth_value
    image_path = _find_image(path, filename, images_dir)
    if image_path is None:
        where = f"{images_dir} or {path.parent}" if images_dir is not None else str(path.parent)
        raise _error(path, f"has no usable <size> and its image {filename or path.stem + '.*'} was not found in "
                           f"{where}", "Put the image there (or pass images_dir), or add <size> to the XML.")
    width_from_image, height_from_image = images.image_size(image_path)
    return width_from_image, height_from_image, depth_value


def read_voc(path: str | pathlib.Path, images_dir: str | pathlib.Path | None = None) -> VocAnnotation:
    """Read one PASCAL VOC XML file.

    Args:
        path: the ``.xml`` file.
        images_dir: where to look for the image when ``<size>`` is missing or 0 (after which the
            folder of the XML is tried). Not needed when ``<size>`` is present.

    Returns:
        The annotation, objects in file order, coordinates as written.

    Raises:
        DatasetError: unreadable, empty or malformed XML; root not ``<annotation>``; an object
            without ``<name>``, ``<bndbox>`` or a numeric coordinate; no size and no image.
    """
    path = pathlib.Path(path)
    root = _parse_xml(path)
    filename = (_child_text(root, "filename") or "").strip()
    width, height, depth = _read_size(root, path, filename, None if images_dir is None else pathlib.Path(images_dir))
    objects = [_read_object(element, index, path) for index, element in enumerate(root.findall("object"))]
    return VocAnnotation(filename=filename, width=width, height=height, depth=depth, objects=objects, path=path)


# ---------------------------------------------------------------- writing


def format_number(value: float) -> str:
    """'12' for integral values, else the shortest text that reads back to the same float ('12.5')."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _object_element(parent: etree._Element, obj: VocObject) -> None:
    element = _sub(parent, "object")
    _sub(element, "name", obj.name)
    _sub(element, "pose", "Unspecified")
    _sub(element, "truncated", str(int(bool(obj.truncated))))
    _sub(element, "difficult", str(int(bool(obj.difficult))))
    if obj.score is not None:
        _sub(element, "score", format_number(obj.score))
    box = _sub(element, "bndbox")
    for tag in COORDINATE_TAGS:
        _sub(box, tag, format_number(getattr(obj, tag)))


def write_voc(annotation: VocAnnotation, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``annotation`` as PASCAL VOC XML that LabelImg and CVAT open.

    Layout: annotation/folder, filename, source, size (width, height, depth), segmented, then
    per object name, pose, truncated, difficult, [score], bndbox (xmin, ymin, xmax, ymax).
    Integral numbers are written without '.0'; others with full float precision, so
    ``read_voc(write_voc(a, p)) == a`` (``path`` is not compared; it becomes ``p``).
    The parent folder is created; an existing file at ``path`` is replaced.

    Returns:
        ``path`` as a Path.
    """
    path = pathlib.Path(path)
    root = etree.Element("annotation")
    _sub(root, "folder", path.parent.name)
    _sub(root, "filename", annotation.filename)
    _sub(_sub(root, "source"), "database", "Unknown")
    size = _sub(root, "size")
    for tag in ("width", "height", "depth"):
        _sub(size, tag, str(int(getattr(annotation, tag))))
    _sub(root, "segmented", "0")
    for obj in annotation.objects:
        _object_element(root, obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="utf-8"))
    return path
