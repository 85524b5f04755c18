"""Which test files start first on the pytest-xdist workers, and the time each file took.

``make test`` runs two workers with ``--dist loadfile`` (a file's tests stay in one worker, so a
module-scoped trained model is trained once) and ``--no-loadscope-reorder``. Without that option xdist
starts the files with the most tests first, which puts the few-test, slow end-to-end files (two-process
training, large fields, the notebook runs) at the end, where one worker can finish a ten-minute file
while the other has nothing left to do. Here the longest files start first instead (longest processing
time first), and the short unit-test files fill the gaps at the end.

Measured (fresh clone, 2-core machine, 742 tests): the workers were busy 2,248 and 2,410 s of the
run's 2,441 s, so neither waited long at the end. The run was no shorter than before (2,395 s of tests
for 739 tests in the last fresh clone with xdist's order, beside a benchmark): the suite is CPU-bound, each TensorFlow test
uses both cores when it runs alone, and only less work makes CI faster.

The seconds below are each file's total (setup + call + teardown of all its tests) on CI's 2-core
machine, as printed by ``FileTimes.table`` at the end of every run: update them from that table when
a file's time changes by minutes. A file missing from the list runs after the listed ones, in the
usual order.
"""

from __future__ import annotations

import collections
import pathlib

# (file name, seconds), longest first: a fresh clone of main on the 2-core dev machine, 2026-12-07, both
# workers busy (742 tests, 2,441 s; a file's seconds include waiting for the cores the other worker uses).
LONGEST_FILES_FIRST: tuple[tuple[str, int], ...] = (
    ("test_annotation_loop.py", 846),
    ("test_detection_engine.py", 635),
    ("test_multi_worker.py", 620),
    ("test_detection_large_images.py", 405),
    ("test_detection_notebook.py", 387),
    ("test_precision.py", 348),
    ("test_pretrained_parity.py", 219),
    ("test_cli.py", 201),
    ("test_detection_notebook_formats.py", 197),
    ("test_grading_resume.py", 137),
    ("test_grading_notebook.py", 129),
    ("test_classification_notebook.py", 122),
    ("test_classification_resume.py", 73),
    ("test_detection_pretrained.py", 72),
)


def order_longest_files_first(items: list) -> None:
    """Sort collected test items (in place) so that the files of ``LONGEST_FILES_FIRST`` come first, in its order.

    The sort is stable: the tests of one file stay together and in their written order, and unlisted
    files keep their collection order after the listed ones.
    """
    rank = {name: position for position, (name, _) in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(pathlib.Path(str(item.path)).name, len(rank)))


class FileTimes:
    """Seconds per test file and per xdist worker, summed from the test reports the main process receives."""

    def __init__(self) -> None:
        self.per_file: collections.Counter[str] = collections.Counter()
        self.per_worker: collections.Counter[str] = collections.Counter()
        self.files_per_worker: dict[str, set[str]] = collections.defaultdict(set)

    def add(self, report) -> None:
        """Count one report (one phase of one test: setup, call or teardown); ``report.duration`` is in seconds."""
        file_name = report.nodeid.split("::", 1)[0]
        gateway = getattr(getattr(report, "node", None), "gateway", None)  # set by xdist in the main process
        worker = gateway.id if gateway is not None else "main"
        self.per_file[file_name] += report.duration
        self.per_worker[worker] += report.duration
        self.files_per_worker[worker].add(file_name)

    def table(self, longest: int = 15) -> list[str]:
        """Lines for the end of the log: each worker's busy seconds, then the ``longest`` files' seconds."""
        if not self.per_file:
            return []
        lines = ["busy time per worker: " + ", ".join(
            f"{worker} {seconds:,.0f} s in {len(self.files_per_worker[worker])} files"
            for worker, seconds in sorted(self.per_worker.items()))]
        lines += [f"{seconds:8.1f}s {file_name}" for file_name, seconds in self.per_file.most_common(longest)]
        return lines
