"""Manifest, downloader, cache and safe extraction, against a local HTTP server on 127.0.0.1."""

import functools
import hashlib
import http.server
import io
import json
import os
import pathlib
import random
import re
import socket
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers import downloads, errors
from tests.conftest import REPOSITORY_ROOT, shared_dataset

ROOT_NAME = "dataset-main"


# ----- a local HTTP server -----------------------------------------------------------------
class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder and records every requested path."""

    requests: list

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # keep test output quiet
        pass


class LocalServer:
    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.requests = []
        handler = type("Handler", (CountingHandler,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def publish(self, name: str, data: bytes) -> str:
        (self.folder / name).write_bytes(data)
        return self.url(name)


@pytest.fixture
def server(tmp_path, monkeypatch):
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    local = LocalServer(folder)
    local.thread.start()
    try:
        yield local
    finally:
        local.httpd.shutdown()
        local.httpd.server_close()
        local.thread.join(timeout=5)


# ----- archives the tests build --------------------------------------------------------------
def dataset_files(images: int = 3) -> dict[str, bytes]:
    files = {f"{ROOT_NAME}/README.txt": b"synthetic test dataset\n"}
    for index in range(images):
        files[f"{ROOT_NAME}/images/cell_{index}.png"] = b"png-bytes-%d" % index
        files[f"{ROOT_NAME}/annotations/cell_{index}.xml"] = b"<annotation/>"
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(files: dict[str, bytes], links: tuple = ()) -> bytes:
    """A tar.gz of ``files``; ``links`` adds (name, target, tarfile.SYMTYPE/LNKTYPE) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buffer.getvalue()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(url: str, **overrides) -> downloads.ManifestEntry:
    fields = dict(name="cells", task="detection", description="test cells", url=url, licence="CC BY 4.0",
                  citation="Doe J. Cells (2024)", archive_format="zip", sha256=None,
                  expected_files={"images": 3, "annotations": 3}, root_subdir=ROOT_NAME,
                  images_subdir="images", annotations_subdir="annotations", labels_csv="")
    fields.update(overrides)
    return downloads.ManifestEntry(**fields)


def everything_under(folder: pathlib.Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# ----- fetch_example ---------------------------------------------------------------------------
def test_fetch_downloads_verifies_extracts_and_then_skips(server, tmp_path):
    data = zip_bytes(dataset_files())
    entry = make_entry(server.publish("cells.zip", data), sha256=sha256_of(data))
    target = tmp_path / "example_data"
    root = downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert root == target / "cells" / ROOT_NAME
    assert sorted(path.name for path in (root / "images").iterdir()) == ["cell_0.png", "cell_1.png", "cell_2.png"]
    assert (root / "annotations" / "cell_2.xml").read_bytes() == b"<annotation/>"
    assert (target / "cells.zip").read_bytes() == data  # archive kept for the record
    record = json.loads((target / "cells" / downloads.MARKER_NAME).read_text(encoding="utf-8"))
    assert record["archive_sha256"] == sha256_of(data) and record["files_found"] == {"images": 3, "annotations": 3}
    assert server.requests == ["/cells.zip"]
    again = downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert again == root
    assert server.requests == ["/cells.zip"], "a verified dataset must not be downloaded twice"
    assert not (target / "cells.partial").exists()


def test_fetch_tar_gz_verified_by_counts_and_refetched_when_files_vanish(server, tmp_path):
    entry = make_entry(server.publish("cells.tar.gz", tar_gz_bytes(dataset_files())), archive_format="tar.gz")
    target = tmp_path / "example_data"
    root = downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert (target / "cells.tar.gz").is_file() and len(list((root / "images").iterdir())) == 3
    (root / "images" / "cell_0.png").unlink()  # the copy no longer verifies
    root = downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert (root / "images" / "cell_0.png").is_file()
    assert len(server.requests) == 2
    assert len(list(target.glob("cells.outdated-*"))) == 1, "the earlier copy is kept aside, not deleted"


def test_fewer_files_than_expected_is_an_error_naming_the_folder(server, tmp_path):
    entry = make_entry(server.publish("cells.zip", zip_bytes(dataset_files(images=3))),
                       expected_files={"images": 5, "masks": 1})
    target = tmp_path / "example_data"
    with pytest.raises(errors.DownloadError, match=r"'images' has 3 files, expected 5.*'masks' is missing"):
        downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert not (target / "cells").exists() and not (target / "cells.partial").exists()


def test_missing_root_folder_is_an_error(server, tmp_path):
    entry = make_entry(server.publish("cells.zip", zip_bytes(dataset_files())), root_subdir="other-root",
                       expected_files={})
    with pytest.raises(errors.DownloadError, match="other-root"):
        downloads.fetch_example("cells", tmp_path / "example_data", manifest={"cells": entry}, progress=False)


def test_corrupted_download_fails_the_checksum_and_leaves_nothing(server, tmp_path):
    good = zip_bytes(dataset_files())
    corrupted = bytearray(good)
    corrupted[len(corrupted) // 2] ^= 0xFF
    entry = make_entry(server.publish("cells.zip", bytes(corrupted)), sha256=sha256_of(good))
    target = tmp_path / "example_data"
    with pytest.raises(errors.DownloadError, match=f"checksum mismatch.*expected sha256 {sha256_of(good)}"):
        downloads.fetch_example("cells", target, manifest={"cells": entry}, progress=False)
    assert everything_under(target) == set(), "neither the archive, nor a .partial, nor a dataset folder"


def test_unknown_name_lists_the_known_ones(tmp_path):
    manifest = {"cells": make_entry("http://127.0.0.1:9/cells.zip")}
    with pytest.raises(errors.ConfigError, match="'nuclei' is not in the manifest.*cells"):
        downloads.fetch_example("nuclei", tmp_path, manifest=manifest)


def test_a_folder_not_written_by_fetch_example_is_never_replaced(server, tmp_path):
    entry = make_entry(server.publish("cells.zip", zip_bytes(dataset_files())))
    mine = tmp_path / "example_data" / "cells"
    mine.mkdir(parents=True)
    (mine / "my_notes.txt").write_text("keep me")
    with pytest.raises(errors.DownloadError, match="not written by fetch_example"):
        downloads.fetch_example("cells", tmp_path / "example_data", manifest={"cells": entry}, progress=False)
    assert everything_under(mine) == {"my_notes.txt"} and server.requests == []


def test_nested_archives_are_extracted_and_layout_is_listed(server, tmp_path, capsys):
    inner = zip_bytes(dataset_files())
    outer = zip_bytes({"record/training.zip": inner})
    entry = make_entry(server.publish("record.zip", outer), root_subdir="", images_subdir="", annotations_subdir="",
                       expected_files={"record/training/dataset-main/images": 3}, extract_nested=True)
    root = downloads.fetch_example("cells", tmp_path / "example_data", manifest={"cells": entry}, progress=False)
    assert (root / "record" / "training" / ROOT_NAME / "images" / "cell_1.png").is_file()
    assert not (root / "record" / "training.zip").exists()
    printed = capsys.readouterr().out
    assert "images: 3 images, 0 XML" in printed and "annotations: 0 images, 3 XML" in printed


def jpeg_with_metadata() -> bytes:
    pixels = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    exif = Image.Exif()
    exif[0x010E] = "patient 190101-123456"  # ImageDescription
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, comment=b"190101123456", exif=exif)
    return buffer.getvalue()


def test_strip_jpeg_metadata_keeps_pixels_and_removes_comment_and_exif():
    original = jpeg_with_metadata()
    assert b"190101123456" in original and b"patient" in original
    stripped = downloads.strip_jpeg_metadata(original)
    assert b"190101123456" not in stripped and b"patient" not in stripped
    before, after = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(stripped))
    assert "comment" not in after.info and "exif" not in after.info
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    assert downloads.strip_jpeg_metadata(b"not a jpeg") == b"not a jpeg"


def test_fetch_with_metadata_stripping_removes_personal_data_and_the_archive(server, tmp_path):
    files = {f"{ROOT_NAME}/eyes/Patient001_L.jpg": jpeg_with_metadata(), f"{ROOT_NAME}/README.md": b"readme"}
    entry = make_entry(server.publish("eyes.zip", zip_bytes(files)), task="grading", images_subdir="eyes",
                       annotations_subdir="", expected_files={"eyes": 1}, strip_jpeg_metadata=True)
    target = tmp_path / "example_data"
    root = downloads.fetch_example("eyes", target, manifest={"eyes": entry}, progress=False)
    assert b"190101123456" not in (root / "eyes" / "Patient001_L.jpg").read_bytes()
    assert not (target / "eyes.zip").exists()
    record = json.loads((target / "eyes" / downloads.MARKER_NAME).read_text(encoding="utf-8"))
    assert record["jpeg_metadata_stripped"] == 1 and "deleted" in record["archive"]


# ----- download_file: HTTP errors and offline -------------------------------------------------
def test_http_404_is_a_plain_download_error(server, tmp_path):
    with pytest.raises(errors.DownloadError) as caught:
        downloads.download_file(server.url("missing.zip"), tmp_path / "out" / "missing.zip", progress=False)
    message = str(caught.value)
    assert "missing.zip" in message and "HTTP 404" in message and f"download it by hand into {tmp_path / 'out'}" in message
    assert everything_under(tmp_path / "out") == set()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_is_a_plain_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    url = f"http://127.0.0.1:{unused_port()}/cells.zip"
    with pytest.raises(errors.DownloadError) as caught:
        downloads.download_file(url, tmp_path / "cells.zip", progress=False, timeout_seconds=5)
    message = str(caught.value)
    assert url in message and "Check the internet connection" in message and "Runtime > Restart" in message
    assert f"download it by hand into {tmp_path}" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_download_file_replaces_only_with_a_verified_file_and_shows_progress(server, tmp_path, capsys):
    url = server.publish("weights.bin", b"w" * 5000)
    destination = tmp_path / "weights.bin"
    destination.write_bytes(b"old")
    with pytest.raises(errors.DownloadError):
        downloads.download_file(url, destination, sha256="0" * 64, progress=False)
    assert destination.read_bytes() == b"old"
    result = downloads.download_file(url, destination, sha256=sha256_of(b"w" * 5000), progress=True)
    assert (result.size_bytes, result.reused, destination.read_bytes()) == (5000, False, b"w" * 5000)
    assert "weights.bin" in capsys.readouterr().err  # the tqdm bar


# ----- cached_download -------------------------------------------------------------------------
def test_cached_download_records_the_checksum_reuses_and_detects_a_changed_file(server, tmp_path):
    payload = b"checkpoint" * 1000
    url = server.publish("ckpt.tar.gz", payload)
    cache = tmp_path / "cache"
    first = downloads.cached_download(url, cache_dir=cache, progress=False, timeout_seconds=5)
    assert not first.reused and first.path.read_bytes() == payload and first.path.name == "ckpt.tar.gz"
    record = first.path.with_name("ckpt.tar.gz.sha256")
    assert record.read_text(encoding="utf-8").split()[0] == sha256_of(payload) == first.sha256
    second = downloads.cached_download(url, cache_dir=cache, progress=False)
    assert second.reused and second.path == first.path and len(server.requests) == 1
    first.path.write_bytes(b"tampered")
    with pytest.raises(errors.DownloadError) as caught:
        downloads.cached_download(url, cache_dir=cache, progress=False)
    message = str(caught.value)
    assert str(first.path) in message and "recorded at its first download" in message and "\n" not in message
    assert "Delete this file and run the cell again" in message
    assert first.path.read_bytes() == b"tampered" and len(server.requests) == 1, "never replaced, never re-fetched"
    first.path.unlink()  # what the message tells the user to do
    third = downloads.cached_download(url, cache_dir=cache, progress=False, timeout_seconds=5)
    assert not third.reused and third.path.read_bytes() == payload and len(server.requests) == 2


def test_a_later_download_is_checked_against_the_recorded_checksum(server, tmp_path):
    url = server.publish("model.h5", b"version one" * 100)
    cache = tmp_path / "cache"
    first = downloads.cached_download(url, cache_dir=cache, progress=False, timeout_seconds=5)
    first.path.unlink()
    server.publish("model.h5", b"version two" * 100)
    with pytest.raises(errors.DownloadError, match=r"model.h5: checksum mismatch .*differs from the one first "
                                                  r"downloaded.*delete .*model.h5.sha256"):
        downloads.cached_download(url, cache_dir=cache, progress=False, timeout_seconds=5)
    assert sorted(path.name for path in first.path.parent.iterdir()) == ["model.h5.sha256"]


def test_a_pinned_checksum_is_checked_on_download_and_on_every_reuse(server, tmp_path):
    payload = b"weights" * 700
    url = server.publish("weights.h5", payload)
    cache = tmp_path / "cache"
    with pytest.raises(errors.DownloadError, match=r"weights.h5: checksum mismatch \(expected md5 0{32}, got "):
        downloads.cached_download(url, cache_dir=cache, md5="0" * 32, progress=False, timeout_seconds=5)
    assert [path for path in cache.rglob("*") if path.is_file()] == [], "no file, no .partial, no record"
    md5 = hashlib.md5(payload).hexdigest()
    first = downloads.cached_download(url, cache_dir=cache, md5=md5, progress=False, timeout_seconds=5)
    assert first.path.read_bytes() == payload and downloads.cached_download(url, cache_dir=cache, md5=md5).reused
    with pytest.raises(errors.DownloadError, match="does not match its published checksum.*Delete this file"):
        downloads.cached_download(url, cache_dir=cache, sha256="f" * 64, progress=False)
    assert first.path.read_bytes() == payload


def test_a_file_put_into_the_cache_by_hand_is_adopted_and_recorded(server, tmp_path, capsys):
    url = server.url("by_hand.h5")  # nothing is published: a request would fail
    path = downloads.cache_path(url, tmp_path / "cache")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"copied from a colleague")
    reused = downloads.cached_download(url, cache_dir=tmp_path / "cache", progress=False)
    assert reused.reused and server.requests == [] and "recorded now" in capsys.readouterr().out
    assert path.with_name("by_hand.h5.sha256").read_text(encoding="utf-8").split()[0] == sha256_of(path.read_bytes())


# ----- resuming dropped downloads ---------------------------------------------------------------
class RangeSite:
    """What a RangeHandler serves, and what it saw.

    Attributes:
        files: URL path -> bytes.
        honour_range: answer ``Range: bytes=N-`` with 206 (416 past the end); False: always 200, whole file.
        cuts: how many of the next responses stop after ``cut_after`` body bytes (then the socket closes).
        ranges: the Range header of every request (None when absent), in order.
        sent: body bytes written, all responses together.
    """

    def __init__(self, honour_range: bool = True, cuts: int = 0, cut_after: int = 0):
        self.files, self.honour_range, self.cuts, self.cut_after = {}, honour_range, cuts, cut_after
        self.ranges, self.sent = [], 0


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0 (one request per connection): a short body is a dropped connection for the client."""

    site: RangeSite
    timeout = 5  # a stuck client cannot hold a server thread

    def do_GET(self):  # noqa: N802 (http.server's naming)
        site, data, header = self.site, self.site.files.get(self.path), self.headers.get("Range")
        site.ranges.append(header)
        if data is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", header or "") if site.honour_range else None
        start = int(match.group(1)) if match else 0
        if match and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if site.cuts > 0:
            site.cuts -= 1
            body = body[:site.cut_after]
        site.sent += len(body)  # counted before writing: the client may finish before this thread runs on
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def range_site(monkeypatch):
    """A RangeSite served on 127.0.0.1 for the test; ``site.url(name, data)`` publishes a file."""
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(downloads, "RETRY_PAUSE_SECONDS", 0)
    site = RangeSite()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (RangeHandler,), {"site": site}))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def publish(name: str, data: bytes) -> str:
        site.files[f"/{name}"] = data
        return f"http://127.0.0.1:{httpd.server_address[1]}/{name}"

    site.url = publish
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)  # not periodic: a misplaced append cannot go unnoticed


def test_a_connection_cut_mid_file_is_resumed_in_the_same_call(range_site, tmp_path, monkeypatch, capsys):
    data, cut = random_bytes(200_000), 70_001
    range_site.cuts, range_site.cut_after = 1, cut
    url = range_site.url("big.h5", data)
    bar_starts, real_bar = [], downloads.tqdm_auto.tqdm
    monkeypatch.setattr(downloads.tqdm_auto, "tqdm",
                        lambda *args, **kwargs: bar_starts.append(kwargs["initial"]) or real_bar(*args, **kwargs))
    result = downloads.cached_download(url, cache_dir=tmp_path / "cache", progress=True, timeout_seconds=5)
    assert result.path.read_bytes() == data and result.sha256 == sha256_of(data) and not result.reused
    assert result.path.with_name("big.h5.sha256").read_text(encoding="utf-8").split()[0] == sha256_of(data)
    assert range_site.ranges == [None, f"bytes={cut}-"] and range_site.sent == len(data)
    assert bar_starts == [0, cut], "the second progress bar starts at the bytes already there"
    assert f"connection lost after {cut} bytes" in capsys.readouterr().out
    assert not result.path.with_name("big.h5.partial").exists()


def test_a_server_that_ignores_range_gives_the_right_file(range_site, tmp_path, capsys):
    data, cut = random_bytes(50_000), 20_000
    range_site.honour_range, range_site.cuts, range_site.cut_after = False, 1, cut
    url = range_site.url("plain.bin", data)
    destination = tmp_path / "plain.bin"
    destination.with_name("plain.bin.partial").write_bytes(b"left from another try" * 50)  # 1050 bytes
    result = downloads.download_file(url, destination, progress=False, timeout_seconds=5)
    assert destination.read_bytes() == data and result.sha256 == sha256_of(data)
    assert range_site.ranges == ["bytes=1050-", f"bytes={cut}-"] and range_site.sent == cut + len(data)
    assert "does not resume downloads" in capsys.readouterr().out


def test_an_interrupted_call_raises_and_the_next_call_sends_only_the_rest(range_site, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "RETRIES", 1)
    data, cut = random_bytes(100_000), 30_000
    range_site.cuts, range_site.cut_after = 2, cut
    url = range_site.url("weights.h5", data)
    with pytest.raises(errors.DownloadError) as caught:
        downloads.cached_download(url, cache_dir=tmp_path / "cache", progress=False, timeout_seconds=5)
    message = str(caught.value)
    assert url in message and "interrupted 2 times" in message and "Run the cell again to continue" in message
    partial = downloads.cache_path(url, tmp_path / "cache").with_name("weights.h5.partial")
    assert partial.read_bytes() == data[:2 * cut] and "\n" not in message
    result = downloads.cached_download(url, cache_dir=tmp_path / "cache", progress=False, timeout_seconds=5)
    assert result.path.read_bytes() == data and not partial.exists()
    assert range_site.ranges == [None, f"bytes={cut}-", f"bytes={2 * cut}-"]
    assert range_site.sent == len(data), "no byte is sent twice"


@pytest.mark.parametrize("extra, sent", [(b"", 0), (b"junk", 6000)])
def test_a_416_answer_means_complete_or_start_over(range_site, tmp_path, extra, sent):
    data = random_bytes(6000)
    url = range_site.url("small.bin", data)
    destination = tmp_path / "small.bin"
    destination.with_name("small.bin.partial").write_bytes(data + extra)
    result = downloads.download_file(url, destination, sha256=sha256_of(data), progress=False, timeout_seconds=5)
    assert destination.read_bytes() == data and result.sha256 == sha256_of(data)
    assert range_site.ranges[0] == f"bytes={len(data) + len(extra)}-" and range_site.sent == sent


def test_a_resumed_part_that_fails_the_checksum_is_fetched_again_from_zero(range_site, tmp_path, capsys):
    data = random_bytes(40_000)
    url = range_site.url("ckpt.tar.gz", data)
    destination = tmp_path / "ckpt.tar.gz"
    destination.with_name("ckpt.tar.gz.partial").write_bytes(b"\0" * 10_000)  # a part of some other file
    result = downloads.download_file(url, destination, sha256=sha256_of(data), progress=False, timeout_seconds=5)
    assert destination.read_bytes() == data and result.sha256 == sha256_of(data)
    assert range_site.ranges == ["bytes=10000-", None] and range_site.sent == 30_000 + len(data)
    assert "does not match its checksum; downloading from the start" in capsys.readouterr().out


def test_cache_folder_comes_from_the_environment_and_urls_do_not_collide(monkeypatch, tmp_path):
    monkeypatch.setenv("DL4CELLS_CACHE", str(tmp_path / "my_cache"))
    assert downloads.default_cache_dir() == tmp_path / "my_cache"
    monkeypatch.delenv("DL4CELLS_CACHE")
    assert downloads.default_cache_dir() == pathlib.Path.home() / ".cache" / "dl4cells"
    one = downloads.cache_path("https://a.example/x/model.tar.gz", tmp_path)
    two = downloads.cache_path("https://b.example/y/model.tar.gz", tmp_path)
    assert one.name == two.name == "model.tar.gz" and one != two


# ----- safe_extract ----------------------------------------------------------------------------
def test_safe_extract_zip_and_tar(tmp_path):
    files = dataset_files(images=2)
    for name, data in (("a.zip", zip_bytes(files)), ("a.tar.gz", tar_gz_bytes(files))):
        archive = tmp_path / name
        archive.write_bytes(data)
        written = downloads.safe_extract(archive, tmp_path / f"out_{name}")
        assert sorted(str(path.relative_to(tmp_path / f"out_{name}")) for path in written) == sorted(files)


@pytest.mark.parametrize("name, data, member", [
    ("dotdot.zip", zip_bytes({"ok.txt": b"fine", "../evil.txt": b"x"}), "../evil.txt"),
    ("absolute.zip", zip_bytes({"ok.txt": b"fine", "/tmp/dl4cells_evil.txt": b"x"}), "/tmp/dl4cells_evil.txt"),
    ("absolute.tar.gz", tar_gz_bytes({"ok.txt": b"fine", "/tmp/dl4cells_evil.txt": b"x"}), "/tmp/dl4cells_evil.txt"),
    ("dotdot.tar.gz", tar_gz_bytes({"ok.txt": b"fine", "sub/../../evil.txt": b"x"}), "sub/../../evil.txt"),
    ("symlink.tar.gz", tar_gz_bytes({"ok.txt": b"fine"}, links=(("sub/link", "../../outside", tarfile.SYMTYPE),)),
     "sub/link"),
    ("abs_symlink.tar.gz", tar_gz_bytes({"ok.txt": b"fine"}, links=(("link", "/etc/passwd", tarfile.SYMTYPE),)),
     "link"),
    ("hardlink.tar.gz", tar_gz_bytes({"ok.txt": b"fine"}, links=(("link", "../evil.txt", tarfile.LNKTYPE),)),
     "link"),
], ids=lambda value: "bytes" if isinstance(value, bytes) else None)  # archive bytes hold a timestamp: ids stay equal across pytest-xdist workers
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path, name, data, member):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / name
    archive.write_bytes(data)
    target = work / "target"
    with pytest.raises(errors.DownloadError, match=f"{name}: .*'{member}'"):
        downloads.safe_extract(archive, target)
    assert not target.exists(), "not even the harmless ok.txt that precedes the bad member"
    assert everything_under(tmp_path) == {"work", f"work/{name}"}
    assert not pathlib.Path("/tmp/dl4cells_evil.txt").exists()


def test_links_inside_the_target_are_allowed(tmp_path):
    archive = tmp_path / "links.tar.gz"
    archive.write_bytes(tar_gz_bytes({"data/a.txt": b"A"}, links=(("data/b.txt", "a.txt", tarfile.SYMTYPE),)))
    downloads.safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "b.txt").read_bytes() == b"A"


def test_not_an_archive_is_a_download_error(tmp_path):
    archive = tmp_path / "page.zip"
    archive.write_text("<html>rate limited</html>")
    with pytest.raises(errors.DownloadError, match="page.zip: not a zip or tar archive"):
        downloads.safe_extract(archive, tmp_path / "out")


# ----- the manifest ----------------------------------------------------------------------------
REQUIRED_ENTRIES = {"zerocostdl4mic_mda_mb_231": "detection", "bccd": "detection"}


def test_the_real_manifest_loads_with_licences_and_citations():
    manifest = downloads.load_manifest()
    for name, task in REQUIRED_ENTRIES.items():
        assert manifest[name].task == task
    assert {entry.task for entry in manifest.values()} == {"detection", "classification", "grading"}
    for entry in manifest.values():
        assert entry.url.startswith("https://") and entry.licence and entry.citation and entry.description
        assert entry.sha256 or entry.checksum_note, f"{entry.name}: say why there is no sha256"
    zerocost = manifest["zerocostdl4mic_mda_mb_231"]
    assert "3941908" in zerocost.url and zerocost.licence == "CC BY 4.0" and "Nat. Commun. 12, 2276 (2021)" in zerocost.citation
    bccd = manifest["bccd"]
    assert bccd.url == "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"
    assert (bccd.root_subdir, bccd.images_subdir, bccd.annotations_subdir) == ("BCCD_Dataset-master/BCCD",
                                                                              "JPEGImages", "Annotations")
    assert bccd.expected_files["JPEGImages"] == 364 and bccd.licence.startswith("MIT")


def test_the_packaged_manifest_is_a_link_to_the_top_level_one():
    packaged = REPOSITORY_ROOT / "helpers" / downloads.MANIFEST_NAME
    assert packaged.is_symlink() and os.readlink(packaged) == "../example_data_manifest.json"
    assert downloads.load_manifest(REPOSITORY_ROOT / "example_data_manifest.json") == downloads.load_manifest()


@pytest.mark.shared_data
@pytest.mark.parametrize("name, shared_name, folder_map", [
    ("bccd", "bccd", {"JPEGImages": "JPEGImages", "Annotations": "Annotations", "ImageSets/Main": "ImageSets/Main"}),
    ("wbc_bccd_crops", "wbc_bccd_crops", None),
])
def test_manifest_counts_agree_with_the_curated_copies(name, shared_name, folder_map):
    shared = shared_dataset(shared_name)
    entry = downloads.load_manifest()[name]
    for folder, expected in entry.expected_files.items():
        assert downloads.count_files(shared / (folder_map or {}).get(folder, folder)) == expected, folder


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"sets": []}', "expected"),
    ('{"datasets": [{"name": "x"}]}', "dataset 'x' lacks task"),
    ('{"datasets": [{"name": "x", "task": "detection", "description": "", "url": "", "licence": "", "citation": "",'
     ' "archive_format": "zip", "sha256": null, "expected_files": {}, "root_subdir": "", "images_subdir": "",'
     ' "annotations_subdir": "", "labels_csv": "", "licnse": ""}]}', "Did you mean 'licence'"),
    ('{"datasets": [{"name": "x", "task": "segmentation", "description": "", "url": "", "licence": "",'
     ' "citation": "", "archive_format": "zip", "sha256": null, "expected_files": {}, "root_subdir": "",'
     ' "images_subdir": "", "annotations_subdir": "", "labels_csv": ""}]}', "task 'segmentation'"),
    ('{"datasets": [{"name": "x", "task": "detection", "description": "", "url": "", "licence": "",'
     ' "citation": "", "archive_format": "zip", "sha256": "abc", "expected_files": {}, "root_subdir": "",'
     ' "images_subdir": "", "annotations_subdir": "", "labels_csv": ""}]}', "64 hexadecimal"),
    ('{"datasets": [{"name": "x", "task": "detection", "description": "", "url": "", "licence": "",'
     ' "citation": "", "archive_format": "zip", "sha256": null, "expected_files": {}, "root_subdir": "",'
     ' "images_subdir": "", "annotations_subdir": "", "labels_csv": "", "labels_conversion": "id_csv"}]}',
     "'labels_conversion' must be an object"),
])
def test_a_broken_manifest_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "broken_manifest.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(errors.ConfigError, match=message) as caught:
        downloads.load_manifest(path)
    assert "broken_manifest.json" in str(caught.value)
