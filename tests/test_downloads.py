"""Manifest, downloader, cache and safe extraction, against a local HTTP server on 127.0.0.1."""

import functools
import hashlib
import http.server
import io
import json
import os
import pathlib
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
def test_cached_download_records_the_checksum_reuses_and_never_trusts_a_changed_file(server, tmp_path):
    payload = b"checkpoint" * 1000
    url = server.publish("ckpt.tar.gz", payload)
    cache = tmp_path / "cache"
    first = downloads.cached_download(url, cache_dir=cache, progress=False)
    assert not first.reused and first.path.read_bytes() == payload and first.path.name == "ckpt.tar.gz"
    record = first.path.with_name("ckpt.tar.gz.sha256")
    assert record.read_text(encoding="utf-8").split()[0] == sha256_of(payload) == first.sha256
    second = downloads.cached_download(url, cache_dir=cache, progress=False)
    assert second.reused and second.path == first.path and len(server.requests) == 1
    first.path.write_bytes(b"tampered")
    third = downloads.cached_download(url, cache_dir=cache, progress=False)
    assert not third.reused and third.path.read_bytes() == payload and len(server.requests) == 2
    assert [path.read_bytes() for path in first.path.parent.glob("ckpt.tar.gz.mismatch-*")] == [b"tampered"]
    with pytest.raises(errors.DownloadError, match="checksum mismatch"):
        downloads.cached_download(url, cache_dir=cache, sha256="f" * 64, progress=False)


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
])
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
])
def test_a_broken_manifest_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "broken_manifest.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(errors.ConfigError, match=message) as caught:
        downloads.load_manifest(path)
    assert "broken_manifest.json" in str(caught.value)
