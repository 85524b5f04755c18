"""Shared test fixtures: where the real datasets live and a skip when they are absent."""

import pathlib

import pytest

from tests import file_order

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY_ROOT.parent / "shared" / "data"


def shared_dataset(name: str) -> pathlib.Path:
    """Path of ``../shared/data/<name>``, or skip the test with a reason when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (it lives beside the repository, never inside it)")
    return path


@pytest.fixture
def bccd_dir() -> pathlib.Path:
    """The BCCD PASCAL VOC dataset (Annotations/, JPEGImages/, ImageSets/Main/)."""
    return shared_dataset("bccd")


class LocalHttpServer:
    """A static file server on 127.0.0.1 (free port) serving ``root``; counts the requests it answers."""

    def __init__(self, root: pathlib.Path):
        import functools
        import http.server
        import threading

        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *arguments):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over ``tmp_path / "served"`` (files the test writes there)."""
    root = tmp_path / "served"
    root.mkdir()
    server = LocalHttpServer(root)
    yield server
    server.close()


def pytest_report_header(config):
    """The environment the tests (and the notebooks they execute) run in, at the top of every run's log."""
    import importlib.metadata
    import platform

    names = ("tensorflow", "keras", "tf-keras", "numpy", "ipywidgets", "ipython", "ipykernel", "scikit-learn",
             "tf-models-official", "dl4cells-helpers")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    constraints = REPOSITORY_ROOT / "constraints" / "colab-gpu.txt"
    source = constraints.read_text(encoding="utf-8").splitlines()[1].lstrip("# ") if constraints.is_file() else "none"
    return [f"environment: Python {platform.python_version()}, " + ", ".join(found),
            f"constraints/colab-gpu.txt: {source}"]


FILE_TIMES = file_order.FileTimes()


def pytest_collection_modifyitems(config, items):
    """The longest test files first, so that both xdist workers stay busy to the end (see ``tests/file_order.py``)."""
    file_order.order_longest_files_first(items)


def pytest_runtest_logreport(report):
    FILE_TIMES.add(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Prints each worker's busy time and the longest files, the numbers ``LONGEST_FILES_FIRST`` is updated from."""
    lines = FILE_TIMES.table()
    if lines:
        terminalreporter.write_sep("=", "time per test file (setup + call + teardown), longest 15")
        for line in lines:
            terminalreporter.write_line(line)
