"""One rule for a served version, used by retention, rollback and the baseline lookup."""

import time

import pytest

from pipeline import model_versions
from pipeline.components.baseline_model import newest_version_dir


def _version(serving, number, complete=True):
    path = serving / str(number)
    (path / "variables").mkdir(parents=True)
    if complete:
        (path / model_versions.SAVED_MODEL_FILE).write_bytes(f"model {number}".encode())
    return path


def test_a_version_without_saved_model_pb_is_not_served(tmp_path):
    _version(tmp_path, 1)
    _version(tmp_path, 2, complete=False)  # a publish to an object store that stopped short
    (tmp_path / "notes").mkdir()
    assert model_versions.served_versions(str(tmp_path)) == [1]
    assert model_versions.version_numbers(str(tmp_path)) == [1, 2]


def test_the_baseline_is_the_newest_served_version(tmp_path):
    _version(tmp_path, 1)
    _version(tmp_path, 2, complete=False)
    assert newest_version_dir(str(tmp_path)) == str(tmp_path / "1")
    assert newest_version_dir(str(tmp_path / "missing")) is None


def test_a_new_version_is_above_every_number_even_incomplete_ones(tmp_path, monkeypatch):
    """TF Serving may have seen the incomplete number: it is never reused."""
    _version(tmp_path, 1)
    _version(tmp_path, 50, complete=False)
    monkeypatch.setattr(time, "time", lambda: 10.0)  # a clock behind the versions on disk
    source = _version(tmp_path / "model", 0)
    assert model_versions.publish(str(source), str(tmp_path)) == 51


@pytest.mark.parametrize(("version", "message"), [
    (2, r"version 2 has no saved_model\.pb"),
    (3, r"no version 3 \(versions: 1\)"),
])
def test_rollback_only_to_a_served_version(tmp_path, version, message):
    _version(tmp_path, 1)
    _version(tmp_path, 2, complete=False)
    with pytest.raises(model_versions.VersionError, match=message):
        model_versions.rollback(str(tmp_path), version)


def test_retention_keeps_served_versions_and_an_incomplete_newer_one(tmp_path):
    for number in (1, 3, 5):
        _version(tmp_path, number)
    _version(tmp_path, 2, complete=False)  # stopped short long ago: goes with 1
    _version(tmp_path, 6, complete=False)  # newer than every kept version: may be in progress
    assert model_versions.retire_old(str(tmp_path), keep=2) == [1, 2]
    assert model_versions.version_numbers(str(tmp_path)) == [3, 5, 6]
    assert model_versions.retire_old(str(tmp_path), keep=0) == []
