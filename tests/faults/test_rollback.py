"""``tfxkfp rollback --to VERSION``: the old model becomes the newest version, safely.

The restored model is published again as a new, highest version (TF Serving's default
``latest`` policy serves it; history stays), the models it replaces are revoked so the next
pipeline run cannot push them back, and a bad request changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fault_runs import serving_dir, tfxkfp
from pipeline import locking, model_versions
from pipeline.components.atomic_pusher import RevokedModelError, push_atomically


def _tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``directory`` with its size and modification time, but the lock."""
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*")) if path.name != locking.LOCK_FILE
    }


@pytest.fixture
def served(tmp_path, fake_saved_model) -> tuple[Path, dict[str, str], list[int]]:
    """An output directory whose serving directory holds three pushed models."""
    output = tmp_path / "out"
    models = {tag: str(fake_saved_model(tmp_path / tag, tag)) for tag in ("one", "two", "three")}
    versions = [push_atomically(path, str(serving_dir(output)))[0] for path in models.values()]
    return output, models, versions


def _rollback(output: Path, version: int, *more: str):
    return tfxkfp(output, "rollback", "--to", str(version), "--output", str(output), *more)


def test_rollback_publishes_the_old_model_as_the_newest_version(served, fake_saved_model):
    output, models, (v1, v2, v3) = served
    run = _rollback(output, v1)
    assert run.code == 0, run.stderr
    [v4] = [v for v in run.versions if v not in (v1, v2, v3)]
    assert run.versions == [v1, v2, v3, v4] and v4 > v3  # history stays
    digest = model_versions.directory_digest
    assert digest(str(serving_dir(output) / str(v4))) == digest(models["one"])
    # The replaced models are revoked: a run that proposes them again does not push them.
    for tag in ("two", "three"):
        with pytest.raises(RevokedModelError, match=f"rolled back to version {v1}"):
            push_atomically(models[tag], str(serving_dir(output)))
    # The restored model is the newest: proposing it is "already served", not a new version.
    assert push_atomically(models["one"], str(serving_dir(output))) == (v4, False)
    # A new model still goes through.
    v5, pushed = push_atomically(str(fake_saved_model(output.parent / "four", "four")),
                                 str(serving_dir(output)))
    assert pushed and v5 > v4


def test_rolling_back_to_a_revoked_model_is_a_decision_that_lifts_its_revocation(served):
    output, models, (v1, v2, v3) = served
    assert _rollback(output, v1).code == 0
    run = _rollback(output, v2)
    assert run.code == 0, run.stderr
    assert push_atomically(models["two"], str(serving_dir(output)))[1] is False  # served now
    with pytest.raises(RevokedModelError):
        push_atomically(models["three"], str(serving_dir(output)))


@pytest.mark.parametrize("version", ["12345", "newest"])
def test_a_version_that_is_not_there_or_already_newest_changes_nothing(served, version):
    output, _, versions = served
    before = _tree(output)
    if version == "newest":
        run = _rollback(output, versions[-1])
        assert run.code == 0
    else:
        run = _rollback(output, int(version))
        assert run.code == 2
        [line] = run.stderr
        assert line == (f"error: {serving_dir(output)}: no version 12345 (versions: "
                        f"{', '.join(map(str, versions))})")
    assert _tree(output) == before


def test_rollback_of_a_missing_output_directory_is_refused(tmp_path):
    run = _rollback(tmp_path / "nowhere", 1)
    assert run.code == 2
    assert run.stderr == [f"error: {tmp_path / 'nowhere'}: no such output directory"]
    assert not (tmp_path / "nowhere").exists()


def test_rollback_waits_for_no_one_while_a_run_holds_the_output(served):
    output, _, versions = served
    with locking.exclusive(output, "tfxkfp run"):
        before = _tree(output)
        run = _rollback(output, versions[0])
        assert _tree(output) == before
    assert run.code == 2
    [line] = run.stderr
    assert f"another tfxkfp command (tfxkfp run, pid {os.getpid()})" in line


def test_rollback_of_any_serving_directory(served):
    output, models, (v1, v2, v3) = served
    run = tfxkfp(output, "rollback", "--to", str(v2), "--serving-dir", str(serving_dir(output)))
    assert run.code == 0, run.stderr
    assert len(run.versions) == 4
    with pytest.raises(RevokedModelError):
        push_atomically(models["three"], str(serving_dir(output)))
