"""Shared test fixtures: where the real datasets live and a skip when they are absent."""

import pathlib

import pytest

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
