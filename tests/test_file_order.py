"""The test files' start order under xdist and the per-file time table at the end of the log."""

import pathlib
import types

from tests import file_order

TESTS = pathlib.Path(__file__).resolve().parent


def item(path: str, name: str):
    return types.SimpleNamespace(path=TESTS / path, name=name)


def test_listed_files_start_first_in_their_order_and_each_file_keeps_its_tests_in_order():
    first, second = file_order.LONGEST_FILES_FIRST[0][0], file_order.LONGEST_FILES_FIRST[1][0]
    items = [item("test_voc.py", "a"), item(second, "b1"), item("test_split.py", "c"), item(first, "d1"),
             item(second, "b2"), item("test_voc.py", "e"), item(first, "d2")]
    file_order.order_longest_files_first(items)
    assert [entry.name for entry in items] == ["d1", "d2", "b1", "b2", "a", "c", "e"]


def test_every_listed_file_exists_and_the_list_is_longest_first():
    for name, _ in file_order.LONGEST_FILES_FIRST:
        assert (TESTS / name).is_file(), f"{name} is listed in tests/file_order.py but does not exist"
    seconds = [seconds for _, seconds in file_order.LONGEST_FILES_FIRST]
    assert seconds == sorted(seconds, reverse=True)


def test_the_table_sums_every_phase_per_file_and_per_worker():
    times = file_order.FileTimes()
    assert times.table() == []
    worker = types.SimpleNamespace(gateway=types.SimpleNamespace(id="gw1"))
    for nodeid, duration, node in [("tests/test_a.py::x", 2.0, worker), ("tests/test_a.py::x", 0.5, worker),
                                   ("tests/test_b.py::y", 7.25, None), ("tests/test_a.py::z", 1.0, worker)]:
        times.add(types.SimpleNamespace(nodeid=nodeid, duration=duration, node=node))
    assert times.table() == ["busy time per worker: gw1 4 s in 1 files, main 7 s in 1 files",
                             "     7.2s tests/test_b.py", "     3.5s tests/test_a.py"]
