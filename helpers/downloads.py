"""Example datasets and other downloads: a manifest, a verifying downloader, safe extraction.

The manifest (``example_data_manifest.json`` at the repository root, shipped inside the package
as ``helpers/example_data_manifest.json``) lists each example dataset with its task, URL,
licence, citation, and what to verify: a sha256 where one is known (Zenodo and GitHub publish
none; Zenodo publishes md5), otherwise the number of files expected per folder.

``fetch_example(name, target_dir)`` gives ``<target_dir>/<name>/``:

    <target_dir>/<name>.zip (or .tar.gz) the archive as downloaded, kept for the record
    <target_dir>/<name>/                 the extracted archive
    <target_dir>/<name>/.dl4cells_verified.json   written last, after verification
    <target_dir>/<name>/<root_subdir>/   the dataset root that is returned

A second call finds the marker, re-counts the files, and returns without a download.
Extraction refuses absolute paths, ``..`` and links that leave the target, before writing
anything. ``fetch_example`` writes nothing outside ``target_dir``, and never moves or deletes
anything there that it did not create. ``cached_download`` (model weights) keeps one file per URL
in a cache folder, checked against the publisher's checksum or the SHA-256 recorded at its first
download, every time it is used.

Downloads survive dropped connections: bytes go to ``<file>.partial``, which is continued with an
HTTP ``Range`` request, both within one call (``RETRIES`` times) and by the next call after one
that gave up.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import http.client
import json
import os
import pathlib
import posixpath
import re
import shutil
import ssl
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Any

from tqdm import auto as tqdm_auto

from helpers import environment, errors, images

MANIFEST_NAME = "example_data_manifest.json"
PACKAGE_MANIFEST = pathlib.Path(__file__).resolve().parent / MANIFEST_NAME
# Not resolved: helpers/example_data_manifest.json is a symlink to this file in a git checkout.
REPOSITORY_MANIFEST = pathlib.Path(__file__).parent.parent / MANIFEST_NAME
MARKER_NAME = ".dl4cells_verified.json"
TASKS = ("detection", "classification", "grading")
ARCHIVE_FORMATS = {"zip": ".zip", "tar.gz": ".tar.gz"}
CHUNK_BYTES = 1 << 20
RETRIES = 3  # a dropped connection is resumed this many times within one call, then the user runs it again
RETRY_PAUSE_SECONDS = 2.0  # times the retry number: 2 s, 4 s, 6 s
USER_AGENT = "dl4cells-helpers/0.1 (downloader of example data and weights)"
COLAB_CACHE = environment.DRIVE_FOLDER / "DL4Cells_cache"
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException)
JPEG_METADATA_MARKERS = (0xFE, 0xE1)  # COM (free-text comment) and APP1 (EXIF/XMP)


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One example dataset of the manifest.

    Attributes:
        name: the key users type (e.g. ``"bccd"``).
        task: ``"detection"``, ``"classification"`` or ``"grading"``.
        description: one sentence on what the images and labels are.
        url: where the archive is downloaded from.
        licence: the licence or terms of use, as the source states them.
        citation: what to cite when using it.
        archive_format: ``"zip"`` or ``"tar.gz"``.
        sha256: the archive's SHA-256, or None when no host publishes one (then the file counts verify).
        expected_files: folder (relative to the root; ``""`` = the root) -> minimum number of files
            under it, counted recursively, hidden files not counted.
        root_subdir: folder inside the extracted archive that is the dataset root (``""`` = top).
        images_subdir, annotations_subdir, labels_csv: relative to the root; ``""`` when not applicable.
        checksum_note: why there is no sha256, or where the checksum comes from.
        notes: caveats a user must know (labels not expert-checked, terms, privacy).
        homepage: the page describing the dataset.
        extract_nested: also extract archives found inside the archive (e.g. Zenodo "download all").
        strip_jpeg_metadata: remove JPEG comment and EXIF/XMP segments after extraction (pixels are
            untouched) and delete the downloaded archive, because the originals carry personal data.
        labels_conversion: how to write a labels CSV the notebook can read, for sources whose own
            labels do not fit it (``helpers.example_data`` reads it; empty = none needed).
    """

    name: str
    task: str
    description: str
    url: str
    licence: str
    citation: str
    archive_format: str
    sha256: str | None
    expected_files: dict[str, int]
    root_subdir: str
    images_subdir: str
    annotations_subdir: str
    labels_csv: str
    checksum_note: str = ""
    notes: str = ""
    homepage: str = ""
    extract_nested: bool = False
    strip_jpeg_metadata: bool = False
    labels_conversion: dict[str, Any] = dataclasses.field(default_factory=dict)


REQUIRED_KEYS = tuple(field.name for field in dataclasses.fields(ManifestEntry)
                      if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING)
ALL_KEYS = tuple(field.name for field in dataclasses.fields(ManifestEntry))


@dataclasses.dataclass
class Download:
    """A file on disk and where it came from.

    Attributes:
        path: the file.
        url: where it was downloaded from.
        sha256: its SHA-256 (hex), computed from the bytes on disk.
        size_bytes: its size.
        reused: True when an earlier download was reused instead of downloading again.
    """

    path: pathlib.Path
    url: str
    sha256: str
    size_bytes: int
    reused: bool


# ----- manifest ------------------------------------------------------------------------------
def _default_manifest_path() -> pathlib.Path:
    """The manifest shipped in the package, else the one at the repository root."""
    for candidate in (PACKAGE_MANIFEST, REPOSITORY_MANIFEST):
        # A checkout without symlink support holds the link's target path as text: skip it.
        if candidate.is_file() and candidate.read_bytes().lstrip()[:1] == b"{":
            return candidate
    raise errors.ConfigError(f"{MANIFEST_NAME}: not found next to {PACKAGE_MANIFEST.parent} nor at "
                             f"{REPOSITORY_MANIFEST}. Reinstall the helpers package (pip install --force-reinstall).")


def _entry_from_json(path: pathlib.Path, index: int, raw: Any) -> ManifestEntry:
    """Validate one manifest entry; ConfigError naming the file, the entry and the key."""
    label = f"{path}: dataset {index}"
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{label} is not an object {{...}}. Fix the manifest file.")
    label = f"{path}: dataset '{raw.get('name', index)}'"
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise errors.ConfigError(f"{label} lacks {', '.join(missing)}. Add them to the manifest file.")
    for key in raw:
        if key not in ALL_KEYS:
            close = difflib.get_close_matches(key, ALL_KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(ALL_KEYS)}."
            raise errors.ConfigError(f"{label}: unknown key '{key}'.{hint}")
    text_keys = [key for key in ALL_KEYS if key not in ("sha256", "expected_files", "extract_nested",
                                                        "strip_jpeg_metadata", "labels_conversion")]
    for key in text_keys:
        if key in raw and not isinstance(raw[key], str):
            raise errors.ConfigError(f"{label}: '{key}' must be text. Fix the manifest file.")
    if raw["task"] not in TASKS:
        raise errors.ConfigError(f"{label}: task '{raw['task']}' is not one of {', '.join(TASKS)}.")
    if raw["archive_format"] not in ARCHIVE_FORMATS:
        raise errors.ConfigError(f"{label}: archive_format '{raw['archive_format']}' is not one of "
                                 f"{', '.join(ARCHIVE_FORMATS)}.")
    sha256 = raw["sha256"]
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64
                               or any(character not in "0123456789abcdefABCDEF" for character in sha256)):
        raise errors.ConfigError(f"{label}: sha256 must be 64 hexadecimal digits or null (unknown).")
    counts = raw["expected_files"]
    if not isinstance(counts, dict) or not all(isinstance(folder, str) and isinstance(count, int)
                                               and not isinstance(count, bool) and count >= 0
                                               for folder, count in counts.items()):
        raise errors.ConfigError(f"{label}: expected_files must map folder names to whole numbers >= 0.")
    for key in ("extract_nested", "strip_jpeg_metadata"):
        if not isinstance(raw.get(key, False), bool):
            raise errors.ConfigError(f"{label}: '{key}' must be true or false.")
    if not isinstance(raw.get("labels_conversion", {}), dict):
        raise errors.ConfigError(f"{label}: 'labels_conversion' must be an object {{...}}. Fix the manifest file.")
    values = dict(raw, sha256=sha256.lower() if sha256 else None, expected_files=dict(counts))
    return ManifestEntry(**values)


def load_manifest(path: str | pathlib.Path | None = None) -> dict[str, ManifestEntry]:
    """Read and validate a manifest file.

    Args:
        path: a manifest JSON file ``{"datasets": [{...}, ...]}``; default: the packaged one.

    Returns:
        ``{name: ManifestEntry}`` in file order.

    Raises:
        ConfigError: the file is missing or not valid JSON, or an entry lacks a key or has a bad
            value; the message names the file and the entry.
    """
    path = pathlib.Path(path) if path is not None else _default_manifest_path()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.ConfigError(f"{path}: manifest file not found. Check the path.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise errors.ConfigError(f"{path}: not valid JSON ({error}). Fix the manifest file.") from None
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), list):
        raise errors.ConfigError(f"{path}: expected {{\"datasets\": [...]}} at the top. Fix the manifest file.")
    entries: dict[str, ManifestEntry] = {}
    for index, raw in enumerate(document["datasets"]):
        entry = _entry_from_json(path, index, raw)
        if entry.name in entries:
            raise errors.ConfigError(f"{path}: dataset name '{entry.name}' appears twice. Rename one.")
        entries[entry.name] = entry
    return entries


# ----- downloading ---------------------------------------------------------------------------
def file_sha256(path: str | pathlib.Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _what_to_do(folder: pathlib.Path) -> str:
    return (f"Check the internet connection (on Colab: Runtime > Restart session, then run again), "
            f"or download it by hand into {folder}.")


class _ConnectionCut(Exception):
    """The connection dropped after the response began: what arrived is kept and the download resumes."""


def _display_name(url: str) -> str:
    return (posixpath.basename(urllib.parse.urlparse(url).path) or url)[:40]


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/total`` or ``bytes */total`` header."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


def _copy_body(response: Any, handle: Any, start: int, total: int | None, name: str, progress: bool) -> None:
    """Append the body of ``response`` to ``handle``; _ConnectionCut when it stops short of Content-Length."""
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    received = 0
    with tqdm_auto.tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                        disable=not progress) as bar:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead (chunked)
                raise _ConnectionCut(error) from None
            if not chunk:
                break
            handle.write(chunk)  # a full disk raises OSError here, not _ConnectionCut
            received += len(chunk)
            bar.update(len(chunk))
    if length is not None and received < length:
        raise _ConnectionCut("the connection closed before the end of the file")


def _restart(partial: pathlib.Path, reason: str) -> None:
    """Empty our own ``.partial`` file so the next request starts from byte 0."""
    print(f"{partial.name}: {reason}; downloading from the start.")
    partial.write_bytes(b"")


def _body_start(response: Any, offset: int, url: str) -> int | None:
    """Where the body of ``response`` goes in the file: ``offset`` (a 206 continuing our part), 0 (the
    whole file: a 200, from a server that ignores ``Range``), or None (a 206 of another part: start over)."""
    first = _content_range(response.headers.get("Content-Range"))[0]
    if response.status != 206 or first == 0:
        if offset:
            print(f"{_display_name(url)}: the server does not resume downloads; downloading from the start.")
        return 0
    if offset and first == offset:
        return offset
    if not offset:
        raise errors.DownloadError(f"{url}: the server sent part of the file although the whole file was asked "
                                   f"for. Run the cell again later, or download the file by hand.")
    return None


def _fetch_once(url: str, partial: pathlib.Path, timeout_seconds: float, progress: bool) -> bool:
    """One request that completes ``partial``: asks for the bytes after its size (``Range``) and appends
    them (206), or rewrites it from zero when the server sends the whole file (200).

    Returns:
        True when bytes were appended to an earlier part (a resumed download), or a 416 answer
        says the part is already the whole file.

    Raises:
        _ConnectionCut: the body stopped early (``partial`` keeps what arrived).
        urllib.error.HTTPError, and the NETWORK_ERRORS of ``urlopen``.
    """
    offset = partial.stat().st_size
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        total = _content_range(error.headers.get("Content-Range"))[1]
        error.close()
        if total == offset:
            return True  # the part from an earlier call is already the whole file; the checksum decides
        _restart(partial, f"the part already downloaded ({offset} bytes) does not fit the file on the server")
        return _fetch_once(url, partial, timeout_seconds, progress)  # offset is 0 now: no second restart
    with response:
        start = _body_start(response, offset, url)
        if start is not None:
            total = _content_range(response.headers.get("Content-Range"))[1]
            if total is None and response.headers.get("Content-Length", "").isdigit():
                total = start + int(response.headers["Content-Length"])
            with open(partial, "ab" if start else "wb") as handle:
                _copy_body(response, handle, start, total, _display_name(url), progress)
            return start > 0
    _restart(partial, "the server sent another part of the file than the one asked for")
    return _fetch_once(url, partial, timeout_seconds, progress)


def _transfer(url: str, partial: pathlib.Path, timeout_seconds: float, progress: bool) -> bool:
    """Complete ``partial`` from ``url``, resuming up to RETRIES times when the connection drops.

    Returns:
        True when any part was appended to bytes already there (the checksum then decides whether
        the joined file is good).

    Raises:
        DownloadError: the connection dropped more than RETRIES times (``partial`` is kept, so the
            next call continues from there). Errors before the first byte propagate as they are.
    """
    resumed, cuts = False, 0
    while True:
        try:
            return _fetch_once(url, partial, timeout_seconds, progress) or resumed
        except urllib.error.HTTPError:
            raise
        except _ConnectionCut as error:
            reason = error
        except NETWORK_ERRORS as error:  # could not reconnect after a drop; the first failure is the caller's
            if not cuts:
                raise
            reason = getattr(error, "reason", None) or error
        resumed, cuts = True, cuts + 1
        size = partial.stat().st_size
        if cuts > RETRIES:
            raise errors.DownloadError(
                f"Download of {url} was interrupted {cuts} times ({reason}); the {size} bytes received are kept in "
                f"{partial}. Run the cell again to continue where it stopped.")
        print(f"{_display_name(url)}: connection lost after {size} bytes ({reason}); resuming "
              f"(retry {cuts} of {RETRIES}).")
        time.sleep(RETRY_PAUSE_SECONDS * cuts)


def _kept(partial: pathlib.Path) -> str:
    """The sentence telling that a non-empty ``.partial`` is kept for the next run ("" when empty)."""
    has_bytes = partial.exists() and partial.stat().st_size
    return " What arrived so far is kept; running the cell again continues from there." if has_bytes else ""


def _transfer_or_explain(url: str, partial: pathlib.Path, timeout_seconds: float, progress: bool) -> bool:
    """``_transfer`` with every failure turned into a one-line DownloadError saying what to do."""
    folder = partial.parent
    try:
        return _transfer(url, partial, timeout_seconds, progress)
    except urllib.error.HTTPError as error:
        raise errors.DownloadError(f"Download of {url} failed: the server answered HTTP {error.code} "
                                   f"({error.reason}). {_what_to_do(folder)}{_kept(partial)}") from None
    except NETWORK_ERRORS as error:
        reason = getattr(error, "reason", None) or error
        raise errors.DownloadError(f"Download of {url} failed ({reason}). "
                                   f"{_what_to_do(folder)}{_kept(partial)}") from None
    except ValueError as error:
        raise errors.DownloadError(f"{url} is not a URL that can be downloaded ({error}). Fix the address.") from None
    except OSError as error:
        raise errors.DownloadError(f"Could not write {partial} ({error}). Free some disk space "
                                   f"(on Colab: in Drive or /content) and run again.") from None


def _digests(path: pathlib.Path) -> dict[str, str]:
    """``{"sha256": hex, "md5": hex}`` of a file, read once in 1 MiB chunks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _mismatches(digests: dict[str, str], expected: dict[str, str | None]) -> str:
    """``"expected sha256 X, got Y"`` for each given checksum the file fails (joined by "; "); "" when all hold."""
    return "; ".join(f"expected {algorithm} {wanted.lower()}, got {digests[algorithm]}"
                     for algorithm, wanted in expected.items() if wanted and digests[algorithm] != wanted.lower())


def _download(url: str, destination: pathlib.Path, expected: dict[str, str | None], progress: bool,
              timeout_seconds: float, hint: str) -> Download:
    """Fetch ``url`` into ``destination`` via our ``.partial`` file, resuming it; see ``download_file``.

    ``hint`` ends the checksum-mismatch message (what the user can do).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with open(partial, "ab"):  # a folder we cannot write to raises here, plainly
        pass
    try:
        resumed = _transfer_or_explain(url, partial, timeout_seconds, progress)
        digests = _digests(partial)
        if resumed and _mismatches(digests, expected):
            _restart(partial, "the resumed file does not match its checksum")
            _transfer_or_explain(url, partial, timeout_seconds, progress)
            digests = _digests(partial)
        problems = _mismatches(digests, expected)
        if problems:
            partial.unlink()  # our own corrupt download: nothing in it can be trusted or resumed
            raise errors.DownloadError(f"{destination.name}: checksum mismatch ({problems}) for {url}: {hint}")
        os.replace(partial, destination)
    finally:
        if partial.exists() and not partial.stat().st_size:
            partial.unlink()  # only ever our own, empty ".partial" file
    return Download(destination, url, digests["sha256"], destination.stat().st_size, reused=False)


def download_file(url: str, destination: str | pathlib.Path, sha256: str | None = None, progress: bool = True,
                  timeout_seconds: float = 60, md5: str | None = None) -> Download:
    """Download ``url`` to ``destination`` (via ``destination.partial``), verifying the checksums given.

    A ``destination.partial`` left by an interrupted earlier call is continued with an HTTP
    ``Range`` request (a server that ignores ``Range`` sends the whole file, which then replaces
    the part); a connection that drops mid-file is resumed up to ``RETRIES`` times in this call.

    Args:
        url: http(s) URL.
        destination: the file to write; its folder is created. An existing file is replaced only
            by a complete, verified download.
        sha256: expected SHA-256 (hex); None to skip the check (the computed one is returned).
        progress: show a progress bar (bytes; it starts at the size already downloaded).
        timeout_seconds: treat the connection as dropped when the server sends nothing for this long.
        md5: expected MD5 (hex), for publishers that give only an MD5; None to skip.

    Returns:
        The ``Download`` (``reused`` is always False here).

    Raises:
        DownloadError: offline, HTTP error, too many dropped connections (the ``.partial`` is kept
            for the next call), or checksum mismatch (the ``.partial`` is removed; when it was a
            resumed one it is first downloaded once more from zero). ``destination`` is left as it was.
    """
    destination = pathlib.Path(destination)
    hint = (f"the download is corrupted or the file changed on the server. Run the cell again; if it persists, "
            f"download it by hand into {destination.parent} and compare its checksum.")
    return _download(url, destination, {"sha256": sha256, "md5": md5}, progress, timeout_seconds, hint)


def default_cache_dir() -> pathlib.Path:
    """Where ``cached_download`` keeps files: ``$DL4CELLS_CACHE``; on Colab with Drive mounted
    ``/content/gdrive/MyDrive/DL4Cells_cache`` (survives the session); else ``~/.cache/dl4cells``."""
    if os.environ.get("DL4CELLS_CACHE"):
        return pathlib.Path(os.environ["DL4CELLS_CACHE"]).expanduser()
    if environment.in_colab() and environment.DRIVE_FOLDER.is_dir():
        return COLAB_CACHE
    return pathlib.Path.home() / ".cache" / "dl4cells"


def cache_path(url: str, cache_dir: str | pathlib.Path | None = None) -> pathlib.Path:
    """The cache file for ``url``: ``<cache>/<12 hex digits of the URL's hash>/<file name from the URL>``.

    The hash folder keeps two URLs that end in the same file name apart.
    """
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parsed = urllib.parse.urlparse(url)
    name = posixpath.basename(parsed.path.rstrip("/")) or "download"
    name = "".join(character if character.isalnum() or character in "._-" else "_" for character in name)
    return cache_dir / hashlib.sha256(url.encode("utf-8")).hexdigest()[:12] / name


def _read_record(record: pathlib.Path) -> str | None:
    """The SHA-256 in a ``<file>.sha256`` record (``"<hex>  <name>"``), or None when there is none."""
    text = record.read_text(encoding="utf-8").split() if record.is_file() else []
    return text[0].lower() if text else None


def _write_record(record: pathlib.Path, sha256: str) -> None:
    record.write_text(f"{sha256}  {record.name.removesuffix('.sha256')}\n", encoding="utf-8")


def _reuse_cached(path: pathlib.Path, url: str, record: pathlib.Path, expected: dict[str, str | None],
                  pinned: bool) -> Download:
    """The cached ``path`` once it matches the published (``pinned``) or recorded checksums; never changes it.

    A file without any checksum to compare (placed there by hand, or its record lost) is adopted:
    its SHA-256 is recorded now and checked from then on.

    Raises:
        DownloadError: the file does not match; it is left in place for the user to delete.
    """
    digests = _digests(path)
    problems = _mismatches(digests, expected)
    if problems:
        source = "published checksum" if pinned else f"checksum recorded at its first download ({record.name})"
        raise errors.DownloadError(
            f"{path}: the cached file does not match its {source} ({problems}): it was damaged or changed on disk. "
            f"Delete this file and run the cell again to download it afresh.")
    if not any(expected.values()):
        print(f"{path.name}: found in the cache without a recorded checksum; its sha256 {digests['sha256']} is "
              f"recorded now and checked from now on.")
    if _read_record(record) != digests["sha256"]:
        _write_record(record, digests["sha256"])
    return Download(path, url, digests["sha256"], path.stat().st_size, reused=True)


def cached_download(url: str, cache_dir: str | pathlib.Path | None = None, sha256: str | None = None,
                    progress: bool = True, md5: str | None = None, timeout_seconds: float = 60) -> Download:
    """Download ``url`` once into the cache; every later call verifies the cached file before reusing it.

    A checksum the publisher gives (``sha256`` or ``md5``) is pinned: the download and every reuse
    are checked against it. Otherwise the SHA-256 of the first download is recorded in
    ``<file>.sha256`` and checked instead, on every reuse and on any later download.

    What is safe to touch: only ``<file>.partial`` is ours alone. It is resumed after a dropped
    connection, emptied when the server cannot resume it, and removed when it fails its checksum.
    A complete cached file may have been put there by hand, so it is never replaced or deleted:
    a mismatch is an error that says to delete it.

    Args:
        url: http(s) URL of the file.
        cache_dir: the cache folder; ``default_cache_dir()`` when None.
        sha256, md5: the publisher's checksums (hex), or None.
        progress: show a progress bar.
        timeout_seconds: treat the connection as dropped when nothing arrives for this long.

    Raises:
        DownloadError: as ``download_file``; or the cached file does not match its checksum (the
            message names the file and says to delete it).
    """
    path = cache_path(url, cache_dir)
    record = path.with_name(path.name + ".sha256")
    pinned = bool(sha256 or md5)
    expected = {"sha256": sha256 or (None if pinned else _read_record(record)), "md5": md5}
    if path.is_file():
        return _reuse_cached(path, url, record, expected, pinned)
    if pinned:
        hint = (f"the download is corrupted or the publisher changed the file. Run the cell again; if it persists, "
                f"download it by hand into {path.parent} and compare its checksum.")
    else:
        hint = (f"the file on the server differs from the one first downloaded (sha256 in {record}). Run the cell "
                f"again; if the publisher replaced the file on purpose, delete {record} and run the cell again.")
    download = _download(url, path, expected, progress, timeout_seconds, hint)
    _write_record(record, download.sha256)
    return download


# ----- safe extraction -----------------------------------------------------------------------
def _member_target(target: pathlib.Path, archive: pathlib.Path, name: str) -> pathlib.Path:
    """Where member ``name`` goes; DownloadError for absolute paths and ``..`` escapes."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise errors.DownloadError(f"{archive.name}: member '{name}' has an absolute path; refusing to extract "
                                   f"anything from this archive. Get the archive from its official source.")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise errors.DownloadError(f"{archive.name}: member '{name}' points outside the target folder ('..'); "
                                   f"refusing to extract anything from this archive.")
    return target.joinpath(*parts) if parts else target


def _check_link(target: pathlib.Path, archive: pathlib.Path, name: str, link: str, relative_to_member: bool) -> None:
    """DownloadError when a symlink/hardlink ``name -> link`` would point outside ``target``."""
    link = link.replace("\\", "/")
    base = posixpath.dirname(name.replace("\\", "/")) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, link))
    if link.startswith("/") or (len(link) > 1 and link[1] == ":") or resolved == ".." or resolved.startswith("../"):
        raise errors.DownloadError(f"{archive.name}: link '{name}' -> '{link}' points outside the target folder; "
                                   f"refusing to extract anything from this archive.")


def _zip_members(archive: pathlib.Path, zip_file: zipfile.ZipFile, target: pathlib.Path) -> list[zipfile.ZipInfo]:
    """Check every member of a zip before anything is written."""
    members = zip_file.infolist()
    for info in members:
        _member_target(target, archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            _check_link(target, archive, info.filename, zip_file.read(info).decode("utf-8", "replace"), True)
    return members


def _tar_members(archive: pathlib.Path, tar_file: tarfile.TarFile, target: pathlib.Path) -> list[tarfile.TarInfo]:
    """Check every member of a tar before anything is written."""
    members = tar_file.getmembers()
    for info in members:
        _member_target(target, archive, info.name)
        if info.issym():
            _check_link(target, archive, info.name, info.linkname, True)
        elif info.islnk():
            _check_link(target, archive, info.name, info.linkname, False)
        elif not (info.isfile() or info.isdir()):
            raise errors.DownloadError(f"{archive.name}: member '{info.name}' is a device or pipe, not a file; "
                                       f"refusing to extract anything from this archive.")
    return members


def _extract_zip(archive: pathlib.Path, target: pathlib.Path) -> list[pathlib.Path]:
    written = []
    with zipfile.ZipFile(archive) as zip_file:
        members = _zip_members(archive, zip_file, target)
        target.mkdir(parents=True, exist_ok=True)
        real_target = os.path.realpath(target)
        for info in members:
            destination = _member_target(target, archive, info.filename)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            if os.path.commonpath([real_target, os.path.realpath(destination.parent)]) != real_target:
                raise errors.DownloadError(f"{archive.name}: member '{info.filename}' would be written outside the "
                                           f"target folder through a link; extraction stopped.")
            # Links in a zip are written as small files holding the link text: never followed.
            with zip_file.open(info) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
            written.append(destination)
    return written


def _extract_tar(archive: pathlib.Path, target: pathlib.Path) -> list[pathlib.Path]:
    with tarfile.open(archive, "r:*") as tar_file:
        members = _tar_members(archive, tar_file, target)
        target.mkdir(parents=True, exist_ok=True)
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4 checks again
        tar_file.extractall(target, members=members, **extra)
    return [_member_target(target, archive, info.name) for info in members if not info.isdir()]


def safe_extract(archive: str | pathlib.Path, target: str | pathlib.Path) -> list[pathlib.Path]:
    """Extract a zip or tar(.gz) archive into ``target``, refusing anything that would leave it.

    Every member is checked first; an absolute path, a ``..`` component, or a symlink/hardlink
    pointing outside ``target`` refuses the whole archive before a single file is written.

    Returns:
        The files (and links) written, in archive order.

    Raises:
        DownloadError: an unsafe member (named in the message) or an unreadable archive.
    """
    archive, target = pathlib.Path(archive), pathlib.Path(target)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, target)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError) as error:
        raise errors.DownloadError(f"{archive.name}: the archive is damaged ({error}). Delete it and download "
                                   f"it again.") from None
    except OSError as error:
        raise errors.DownloadError(f"{archive.name}: could not extract into {target} ({error}). Free some disk "
                                   f"space and run again.") from None
    raise errors.DownloadError(f"{archive.name}: not a zip or tar archive. Delete it and download it again.")


# ----- example datasets ----------------------------------------------------------------------
def count_files(folder: pathlib.Path) -> int:
    """Files under ``folder`` (recursive), hidden files (``.name``) and ``__MACOSX`` not counted."""
    return sum(1 for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")
               and "__MACOSX" not in path.parts)


def _count_problems(root: pathlib.Path, expected_files: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """(one line per folder with fewer files than expected, the counts found)."""
    problems, found = [], {}
    for folder, expected in expected_files.items():
        path = root / folder if folder else root
        found[folder] = count_files(path) if path.is_dir() else 0
        if not path.is_dir():
            problems.append(f"folder '{folder}' is missing (expected {expected} files)")
        elif found[folder] < expected:
            problems.append(f"'{folder or '.'}' has {found[folder]} files, expected {expected}")
    return problems, found


def strip_jpeg_metadata(data: bytes) -> bytes:
    """JPEG bytes without comment (COM) and EXIF/XMP (APP1) segments; the image data is untouched.

    Non-JPEG or malformed input is returned unchanged.
    """
    if data[:2] != b"\xff\xd8":
        return data
    output, index = bytearray(b"\xff\xd8"), 2
    while index + 1 < len(data):
        if data[index] != 0xFF:
            return data  # not where a marker should be: leave the file alone
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte before a marker
            index += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: the rest is image data
            output += data[index:]
            return bytes(output)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            output += data[index:index + 2]
            index += 2
            continue
        length = int.from_bytes(data[index + 2:index + 4], "big")
        if length < 2 or index + 2 + length > len(data):
            return data
        if marker not in JPEG_METADATA_MARKERS:
            output += data[index:index + 2 + length]
        index += 2 + length
    return data


def _strip_jpeg_folder(root: pathlib.Path) -> int:
    """Strip metadata from every JPEG under ``root`` (our own extraction); returns how many changed."""
    changed = 0
    for path in root.rglob("*"):
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"):
            data = path.read_bytes()
            stripped = strip_jpeg_metadata(data)
            if stripped != data:
                path.write_bytes(stripped)
                changed += 1
    return changed


def _extract_nested(folder: pathlib.Path) -> None:
    """Extract archives found inside ``folder`` next to themselves (``x.zip`` -> ``x/``), then remove them."""
    for inner in sorted(folder.rglob("*")):
        name = inner.name.lower()
        if inner.is_file() and (name.endswith(".zip") or name.endswith(".tar.gz") or name.endswith(".tgz")):
            stem = inner.name[: -len(".tar.gz")] if name.endswith(".tar.gz") else inner.name.rsplit(".", 1)[0]
            safe_extract(inner, inner.with_name(stem))
            inner.unlink()  # extracted copy lives beside it; the outer archive is the record


def _marker_is_valid(entry: ManifestEntry, dataset_dir: pathlib.Path) -> bool:
    """True when ``dataset_dir`` holds a verified extraction of this exact entry, files still there."""
    marker = dataset_dir / MARKER_NAME
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("url") != entry.url or (entry.sha256 and record.get("archive_sha256") != entry.sha256):
        return False
    root = dataset_dir / entry.root_subdir
    return root.is_dir() and not _count_problems(root, entry.expected_files)[0]


def _refuse_foreign_folder(dataset_dir: pathlib.Path) -> None:
    """DownloadError when ``dataset_dir`` exists but fetch_example did not write it (checked before downloading)."""
    if dataset_dir.exists() and not (dataset_dir / MARKER_NAME).is_file():
        raise errors.DownloadError(f"{dataset_dir} already exists but was not written by fetch_example. Move it "
                                   f"elsewhere or choose another folder for the example data.")


def _move_outdated_aside(dataset_dir: pathlib.Path) -> None:
    """Keep an earlier extraction of ours that no longer verifies as ``<name>.outdated-<time>`` (never deleted)."""
    if not dataset_dir.exists():
        return
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = dataset_dir.with_name(f"{dataset_dir.name}.outdated-{stamp}")
    os.replace(dataset_dir, aside)
    print(f"{dataset_dir.name}: the earlier copy no longer matched the manifest; it was kept as {aside.name}.")


def _resolve_entry(name: str, manifest: dict[str, ManifestEntry] | None) -> ManifestEntry:
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise errors.ConfigError(f"example dataset '{name}' is not in the manifest. Choose one of: "
                                 f"{', '.join(manifest)}.")
    return manifest[name]


def _extract_and_verify(entry: ManifestEntry, archive: pathlib.Path, partial: pathlib.Path) -> pathlib.Path:
    """Extract ``archive`` into the fresh folder ``partial`` and check the file counts; returns ``partial``.

    Raises:
        DownloadError: an unsafe archive, a missing root folder or fewer files than expected
            (``partial`` is removed; the archive is kept).
    """
    if partial.exists():
        shutil.rmtree(partial)  # our own leftover of an interrupted extraction (name ends in ".partial")
    safe_extract(archive, partial)
    if entry.extract_nested:
        _extract_nested(partial)
    root = partial / entry.root_subdir
    problems = _count_problems(root, entry.expected_files)[0] if root.is_dir() else [
        f"folder '{entry.root_subdir}' is missing"]
    if problems:
        shutil.rmtree(partial)
        raise errors.DownloadError(f"{archive.name} (from {entry.url}) is incomplete: {'; '.join(problems)}. Run the "
                                   f"cell again; if it persists the source has changed: download it by hand into "
                                   f"{archive.parent}.")
    return partial


def fetch_example(name: str, target_dir: str | pathlib.Path, manifest: dict[str, ManifestEntry] | None = None,
                  progress: bool = True) -> pathlib.Path:
    """Download, verify and extract an example dataset into ``<target_dir>/<name>/``; skip if already there.

    Args:
        name: a manifest entry name.
        target_dir: folder for example data (e.g. ``<model_path>/example_data``).
        manifest: entries to use; default: the packaged manifest.
        progress: show a progress bar while downloading.

    Returns:
        The dataset root folder (``<target_dir>/<name>/<root_subdir>``).

    Raises:
        ConfigError: ``name`` is not in the manifest (the message lists the names).
        DownloadError: offline, corrupted download, unsafe archive, or fewer files than expected.
    """
    entry = _resolve_entry(name, manifest)
    target_dir = pathlib.Path(target_dir)
    dataset_dir = target_dir / name
    root = dataset_dir / entry.root_subdir
    if _marker_is_valid(entry, dataset_dir):
        print(f"{name}: already downloaded and verified in {dataset_dir}")
        return root
    _refuse_foreign_folder(dataset_dir)
    archive = target_dir / f"{name}{ARCHIVE_FORMATS[entry.archive_format]}"
    download = download_file(entry.url, archive, sha256=entry.sha256, progress=progress)
    partial = _extract_and_verify(entry, archive, target_dir / f"{name}.partial")
    record = _verification_record(entry, download, partial)
    if entry.strip_jpeg_metadata:
        record["jpeg_metadata_stripped"] = _strip_jpeg_folder(partial)
        archive.unlink()  # it still carries the personal metadata just removed
        record["archive"] = "deleted after extraction (its JPEGs carried personal metadata)"
    (partial / MARKER_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")
    _move_outdated_aside(dataset_dir)
    os.replace(partial, dataset_dir)
    if entry.sha256 or entry.expected_files:
        print(f"{name}: downloaded, verified ({record['verified_by']}) and extracted into {dataset_dir}")
    else:
        print(f"{name}: downloaded and extracted into {dataset_dir}. No checksum or file counts are known for this "
              f"source, so it could not be verified; its sha256 {download.sha256} is recorded in {MARKER_NAME}.")
    if not entry.images_subdir:
        print("Folders with images or annotations:\n  " + "\n  ".join(describe_layout(root) or ["(none found)"]))
    return root


def describe_layout(root: pathlib.Path, limit: int = 8) -> list[str]:
    """Folders under ``root`` that hold images or XML files, as lines ``"<folder>: N images, M XML"``.

    Used when the manifest does not name the images folder, so the user sees where to point the form.
    """
    counts: dict[pathlib.Path, list[int]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith(".") and "__MACOSX" not in path.parts:
            kind = 0 if images.is_image_file(path) else 1 if path.suffix.lower() == ".xml" else None
            if kind is not None:
                counts.setdefault(path.parent, [0, 0])[kind] += 1
    ordered = sorted(counts.items(), key=lambda item: -sum(item[1]))[:limit]
    return [f"{folder}: {image_count} images, {xml_count} XML" for folder, (image_count, xml_count) in ordered]


def _verification_record(entry: ManifestEntry, download: Download, partial: pathlib.Path) -> dict[str, Any]:
    """What the marker file records: source, archive checksum, files found, how it was verified."""
    methods = (["sha256"] if entry.sha256 else []) + (["file counts"] if entry.expected_files else [])
    return {"name": entry.name, "url": entry.url, "archive": download.path.name, "archive_sha256": download.sha256,
            "archive_bytes": download.size_bytes,
            "files_found": _count_problems(partial / entry.root_subdir, entry.expected_files)[1],
            "verified_by": " and ".join(methods) or "nothing (no checksum or file counts known)",
            "extracted_at": datetime.datetime.now().isoformat(timespec="seconds")}
