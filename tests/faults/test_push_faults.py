"""An interrupted push never shows TF Serving a partial version; old versions leave whole.

TF Serving loads any integer-named directory under the model base path, so the serving
directory must only ever hold complete versions there. These tests watch the directory the
way TF Serving's poller does, while a real process pushes and is killed with SIGKILL, and
while retention deletes old versions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from push_in_subprocess import main as push_in_this_process

from pipeline import model_versions
from pipeline.components.atomic_pusher import push_atomically

PUSH_SCRIPT = Path(__file__).with_name("push_in_subprocess.py")
MODEL_FILES = 200


def _model(root: Path, tag: str, files: int = 3) -> Path:
    """A fake Model artifact: ``<root>/Format-Serving`` holding a SavedModel-shaped tree."""
    model = root / "Format-Serving"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(f"graph {tag}".encode())
    for index in range(files):
        (model / "variables" / f"variables.data-{index:05d}").write_bytes(
            f"{tag} {index}".encode() * 512
        )
    return root


def _listing(serving: Path) -> list[str]:
    try:
        return os.listdir(serving)
    except FileNotFoundError:
        return []


def test_a_push_killed_mid_copy_leaves_no_partial_version_and_the_next_push_recovers(tmp_path):
    serving = tmp_path / "serving"
    served, _ = push_atomically(str(_model(tmp_path / "m1", "one") / "Format-Serving"),
                                str(serving))
    big = _model(tmp_path / "m2", "two", files=MODEL_FILES)
    pusher = subprocess.Popen(
        [sys.executable, str(PUSH_SCRIPT), str(big), str(serving), str(tmp_path / "pushed"),
         "0.02"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    integer_entries, partial = set(), None
    try:
        # Watch as TF Serving's poller would, until the copy is under way, then kill.
        while pusher.poll() is None:
            entries = _listing(serving)
            integer_entries |= {entry for entry in entries if entry.isdigit()}
            partials = [e for e in entries if e.startswith(model_versions.PARTIAL_PREFIX)]
            if partials:
                partial = serving / partials[0]
                copied = [p for p in partial.rglob("*") if p.is_file()]
                if len(copied) >= 10:
                    os.kill(pusher.pid, signal.SIGKILL)
                    break
    finally:
        pusher.wait()
        _, stderr = pusher.communicate()
    assert pusher.returncode == -signal.SIGKILL, f"the push was not killed mid-copy: {stderr}"
    integer_entries |= {entry for entry in _listing(serving) if entry.isdigit()}

    # TF Serving only ever saw the version that was there before.
    assert integer_entries == {str(served)}
    assert model_versions.served_versions(str(serving)) == [served]
    copied = [p for p in partial.rglob("*") if p.is_file()]
    assert 10 <= len(copied) < MODEL_FILES + 1  # killed in the middle, left under a hidden name

    # The next push cleans up after the killed one by itself and publishes the model whole.
    push_in_this_process(str(big), str(serving), str(tmp_path / "pushed-again"))
    assert not partial.exists()
    assert not [entry for entry in _listing(serving) if entry.startswith(".")]
    versions = model_versions.served_versions(str(serving))
    assert versions[0] == served and len(versions) == 2
    assert model_versions.directory_digest(str(serving / str(versions[1]))) == (
        model_versions.directory_digest(str(big / "Format-Serving"))
    )


def test_retention_keeps_the_newest_versions_and_always_the_one_just_pushed(tmp_path):
    serving = str(tmp_path / "serving")
    pushed = []
    for index in range(6):
        model = _model(tmp_path / f"m{index}", str(index)) / "Format-Serving"
        version, newly = push_atomically(str(model), serving, keep_versions=3)
        assert newly
        pushed.append(version)
        assert model_versions.served_versions(serving) == pushed[-3:]
    assert sorted(os.listdir(serving)) == sorted(str(v) for v in pushed[-3:])  # nothing hidden

    version, _ = push_atomically(str(_model(tmp_path / "m6", "6") / "Format-Serving"),
                                 serving, keep_versions=1)
    assert model_versions.served_versions(serving) == [version]


def test_keep_versions_zero_keeps_every_version(tmp_path):
    serving = str(tmp_path / "serving")
    for index in range(4):
        push_atomically(str(_model(tmp_path / f"m{index}", str(index)) / "Format-Serving"),
                        serving, keep_versions=0)
    assert len(model_versions.served_versions(serving)) == 4


def test_an_old_version_disappears_whole_even_if_deleting_it_is_interrupted(
    tmp_path, monkeypatch
):
    serving = tmp_path / "serving"
    first, _ = push_atomically(str(_model(tmp_path / "m1", "one") / "Format-Serving"),
                               str(serving))
    real_rmtree = tf.io.gfile.rmtree

    def crash_while_deleting(path):
        if Path(path).name.startswith(model_versions.RETIRED_PREFIX):
            (Path(path) / "saved_model.pb").unlink()  # half deleted, then the crash
            raise OSError("killed")
        real_rmtree(path)

    monkeypatch.setattr(tf.io.gfile, "rmtree", crash_while_deleting)
    with pytest.raises(OSError, match="killed"):
        push_atomically(str(_model(tmp_path / "m2", "two") / "Format-Serving"), str(serving),
                        keep_versions=1)
    monkeypatch.undo()
    # The half-deleted version is under a hidden name: TF Serving no longer sees it at all.
    [second] = model_versions.served_versions(str(serving))
    assert second > first
    assert (serving / f"{model_versions.RETIRED_PREFIX}{first}").is_dir()

    third, _ = push_atomically(str(_model(tmp_path / "m3", "three") / "Format-Serving"),
                               str(serving), keep_versions=2)
    assert sorted(os.listdir(serving)) == sorted([str(second), str(third)])


def test_retention_on_an_object_store(tmp_path):
    # TensorFlow's in-memory filesystem stands in for gs://: no rename there.
    serving = "ram://retention-test/social_network_ads"
    pushed = [push_atomically(str(_model(tmp_path / f"m{i}", str(i)) / "Format-Serving"),
                              serving, keep_versions=2)[0] for i in range(3)]
    assert model_versions.served_versions(serving) == pushed[-2:]


def test_the_pusher_executor_applies_the_retention_of_its_custom_config(tmp_path):
    serving = tmp_path / "serving"
    for index in range(7):  # the script's custom_config keeps 5
        push_in_this_process(str(_model(tmp_path / f"m{index}", str(index))), str(serving),
                             str(tmp_path / f"pushed{index}"))
    assert len(model_versions.served_versions(str(serving))) == 5
