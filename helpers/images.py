"""Image files: list, read (always uint8 RGB), read only the size, and write.

Readers:
    * TIFF (``.tif``, ``.tiff``) through ``tifffile``; only the first page is read.
    * PNG, JPEG, BMP through OpenCV with ``IMREAD_UNCHANGED`` (so 16-bit PNGs keep their
      range until we normalise them). Bytes are read with numpy and decoded in memory so
      non-ASCII paths work on every platform.

Normalisation (what ``read_image`` returns for every input):
    * 8-bit images are returned unchanged (grayscale repeated to 3 channels).
    * Any other sample type (16-bit, 32-bit integer, float) is stretched per image: the 0.1th
      and 99.9th percentiles of the colour channels (all channels together, so the colour
      balance is kept) map to 0 and 255, values outside are clipped. A constant image
      becomes all zeros.
    * Alpha (the 4th channel of RGBA, the 2nd of gray+alpha) is dropped; channels beyond the
      first three of a multi-channel TIFF are dropped.
    * EXIF orientation is NOT applied: pixels are returned as stored, which is also how
      ``image_size`` reports width and height (so boxes and sizes agree).

The reader is chosen by the extension, OpenCV itself recognises PNG/JPEG/BMP by their bytes:
PNG bytes named ``.jpg`` are read, JPEG bytes named ``.tif`` are not. ``check_image`` (used by
every task's data check) decodes a file exactly as ``read_image`` does and also says when the
bytes and the extension disagree.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zlib

import numpy as np

from helpers import errors

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")
STRETCH_PERCENTILES = (0.1, 99.9)
# Format -> how its files begin (magic numbers), and the format each extension promises.
FORMAT_SIGNATURES = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "BMP": (b"BM",),
                     "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")}
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}


class ImageReadError(errors.DatasetError):
    """An image file that cannot be decoded; ``reason`` is the short cause (no path, no fix)."""

    def __init__(self, path: pathlib.Path, reason: object):
        self.path, self.reason = pathlib.Path(path), str(reason)
        super().__init__(f"{path}: cannot read this image ({reason}). "
                         "Fix: re-export it as PNG, JPEG or TIFF, or remove it.")


def is_image_file(path: str | pathlib.Path) -> bool:
    """True when ``path`` has an image extension (case-insensitive) and is not a hidden file.

    Hidden files (name starting with ``.``, e.g. macOS ``._img.jpg`` resource forks) are not
    images even when their extension says so.
    """
    path = pathlib.Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by file name.

    Raises:
        DatasetError: ``folder`` does not exist or is not a folder.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise errors.DatasetError(
            f"{folder}: image folder not found. Fix the path in the form (it must be a folder of images).")
    return sorted((path for path in folder.iterdir() if path.is_file() and is_image_file(path)),
                  key=lambda path: path.name)


def _is_tiff(path: pathlib.Path) -> bool:
    return path.suffix.lower() in TIFF_EXTENSIONS


def _unreadable(path: pathlib.Path, reason: object) -> ImageReadError:
    return ImageReadError(path, reason)


def content_format(path: str | pathlib.Path) -> str | None:
    """"PNG", "JPEG", "BMP" or "TIFF" from the file's first bytes; None for anything else (or unreadable)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(8)
    except OSError:
        return None
    return next((name for name, signatures in FORMAT_SIGNATURES.items()
                 if any(start.startswith(signature) for signature in signatures)), None)


def image_size(path: str | pathlib.Path) -> tuple[int, int]:
    """(width, height) in pixels, read from the file header only (no pixel decoding).

    Raises:
        DatasetError: the file is missing, not an image, or its header is corrupt.
    """
    path = pathlib.Path(path)
    if _is_tiff(path):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as error:
            raise _unreadable(path, error) from error
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:  # lazy: only the header is parsed
            width, height = image.size
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from error
    return int(width), int(height)


def _read_tiff_first_page(path: pathlib.Path) -> np.ndarray:
    """First TIFF page as channels-last [H, W] or [H, W, C], native dtype."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            pixels = page.asarray()
            axes = page.axes
    # Besides its own errors, tifffile lets its codecs' errors through: zlib.error for truncated
    # deflate data, KeyError for a compression whose codec (imagecodecs) is not installed.
    except (OSError, ValueError, IndexError, KeyError, zlib.error, tifffile.TiffFileError) as error:
        raise _unreadable(path, error) from error
    pixels = np.squeeze(pixels)
    # Planar ("separate") TIFFs store samples first (axes 'SYX'); move them last.
    if pixels.ndim == 3 and axes.replace("Q", "").startswith("S"):
        pixels = np.moveaxis(pixels, 0, -1)
    return pixels


def _read_with_opencv(path: pathlib.Path) -> np.ndarray:
    """PNG/JPEG/BMP as RGB(A) channels-last [H, W] or [H, W, C], native dtype."""
    import cv2

    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise _unreadable(path, error) from error
    try:
        pixels = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    except cv2.error as error:  # e.g. a header claiming more pixels than OpenCV allows
        raise _unreadable(path, str(error).strip().splitlines()[-1]) from error
    if pixels is None:
        found = content_format(path)
        raise _unreadable(path, "the file is empty (0 bytes)" if not encoded.size
                          else f"its {found} data is truncated or corrupt" if found
                          else "its content is not a PNG, JPEG or BMP image")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    return pixels


def _colour_channels(pixels: np.ndarray, path: pathlib.Path) -> np.ndarray:
    """[H, W] or [H, W, C] -> [H, W, 1] (gray) or [H, W, 3]: alpha and extra channels dropped."""
    if pixels.ndim == 2:
        return pixels[:, :, None]
    if pixels.ndim != 3:
        raise _unreadable(path, f"unsupported array shape {pixels.shape}; expected one 2-D image page")
    if pixels.shape[2] in (1, 2):  # gray or gray + alpha
        return pixels[:, :, :1]
    return pixels[:, :, :3]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Any-dtype [H, W, C] -> uint8 [H, W, C]; 8-bit input is returned as is.

    Non-8-bit input is stretched per image so its 0.1th..99.9th percentiles (over all values)
    span 0..255; values outside are clipped. A constant image becomes zeros.
    """
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = np.percentile(values, STRETCH_PERCENTILES)
    if not high > low:  # nearly constant: fall back to the full range before giving up
        low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    stretched = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: PNG, JPEG, BMP or TIFF file (8- or 16-bit, gray, RGB or RGBA; TIFF: first page).

    Returns:
        uint8 [H, W, 3] RGB (see the module docstring for the 16-bit stretch and alpha).

    Raises:
        DatasetError: the file is missing, corrupt or not a supported image.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise _unreadable(path, "file not found")
    if path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty (0 bytes)")
    pixels = _read_tiff_first_page(path) if _is_tiff(path) else _read_with_opencv(path)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype.kind not in "uif":
        raise _unreadable(path, f"unsupported sample type {pixels.dtype}")
    # Stretch before repeating gray to 3 channels: percentiles are then those of the real samples.
    colour = to_uint8(_colour_channels(pixels, path))
    return np.ascontiguousarray(np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour)


@dataclasses.dataclass
class ImageCheck:
    """What the data check learnt from decoding one image file.

    Attributes:
        width, height: pixels of the decoded image (what training gets).
        content_format: format found in the bytes ("PNG", "JPEG", ...), or None.
        extension_note: e.g. "it holds PNG data but is named .jpg"; None when bytes and name agree.
    """

    width: int
    height: int
    content_format: str | None
    extension_note: str | None = None


def _extension_note(path: pathlib.Path, found: str | None) -> str | None:
    promised = EXTENSION_FORMATS.get(path.suffix.lower())
    if found is None or promised is None or found == promised:
        return None
    return f"it holds {found} data but is named {path.suffix}"


def check_image(path: str | pathlib.Path) -> ImageCheck:
    """Decode the whole image with ``read_image``, the reader every training pipeline uses.

    Readable means exactly "``read_image`` returns pixels": detection records, the classification
    and grading ``tf.data`` loaders and prediction all decode through it, so a file this passes
    cannot stop training later, and a file it rejects would. A header-only check is not enough:
    a truncated JPEG keeps a valid header (size known) while its pixels cannot be decoded.

    Returns:
        The decoded width and height, the format found in the bytes and, when it differs from the
        one the extension names but the file still decodes, a note saying so.

    Raises:
        ImageReadError: the file is missing, empty, truncated, corrupt or not a supported image;
            ``reason`` names the cause (and the right extension when the bytes are another format).
    """
    path = pathlib.Path(path)
    found = content_format(path)
    note = _extension_note(path, found)
    try:
        pixels = read_image(path)
    except ImageReadError as error:
        if note is None:
            raise
        raise _unreadable(path, f"{note}, and the {path.suffix} reader cannot decode it; "
                                f"renamed to {FORMAT_EXTENSIONS[found]} it may be readable") from error
    return ImageCheck(int(pixels.shape[1]), int(pixels.shape[0]), found, note)


def write_image(path: str | pathlib.Path, rgb: np.ndarray) -> pathlib.Path:
    """Write uint8 [H, W, 3] RGB (or [H, W] gray) to ``path``; format from the extension.

    The parent folder is created. JPEG is written at quality 95.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: ``rgb`` is not uint8 [H, W, 3] / [H, W], or the extension is not an image one.
    """
    import PIL.Image

    path = pathlib.Path(path)
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"write_image expects uint8 [H, W, 3] or [H, W], got {rgb.dtype} {rgb.shape}")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unknown image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    PIL.Image.fromarray(np.ascontiguousarray(rgb)).save(path, **options)
    return path
