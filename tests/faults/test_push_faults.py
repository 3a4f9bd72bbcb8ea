"""An interrupted push never shows TF Serving a partial version; old versions leave whole.

TF Serving loads any integer-named directory under the model base path, so the serving
directory must only ever hold complete versions there. These tests watch the directory the
way TF Serving's poller does: after every file a real pushing process copies, until it is
killed with SIGKILL in the middle of its copy, and while retention deletes old versions.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline import model_versions
from pipeline.components.atomic_pusher import push_atomically
from push_in_subprocess import COPIED, STEP_FLAG
from push_in_subprocess import main as push_in_this_process

PUSH_SCRIPT = Path(__file__).with_name("push_in_subprocess.py")
MODEL_FILES = 200
KILL_AFTER_FILES = 10
# The first report comes after the child has imported TensorFlow and TFX: on a busy machine
# that takes tens of seconds.
REPORT_TIMEOUT_SECONDS = 180


def _listing(serving: Path) -> list[str]:
    try:
        return os.listdir(serving)
    except FileNotFoundError:
        return []


def _read_lines(stream, lines: queue.Queue) -> None:
    """Puts every line of ``stream`` on ``lines``, then None at its end (the process exited).

    On a thread of its own, so that the test can wait for a line with a timeout.
    """
    for line in stream:
        lines.put(line)
    lines.put(None)


def _next_copy(lines: queue.Queue, log: Path) -> str:
    """Waits for the child's next ``COPIED`` report; fails on its exit or after the timeout."""
    while True:
        try:
            line = lines.get(timeout=REPORT_TIMEOUT_SECONDS)
        except queue.Empty:
            pytest.fail(f"no copy reported in {REPORT_TIMEOUT_SECONDS} s: {log.read_text()}")
        if line is None:
            pytest.fail(f"the push exited before copying {KILL_AFTER_FILES} files: "
                        f"{log.read_text()}")
        if line.startswith(COPIED):
            return line.split(" ", 1)[1].strip()


def test_a_push_killed_mid_copy_leaves_no_partial_version_and_the_next_push_recovers(
    tmp_path, fake_saved_model
):
    serving = tmp_path / "serving"
    served, _ = push_atomically(str(fake_saved_model(tmp_path / "m1", "one")), str(serving))
    big = tmp_path / "m2"
    fake_saved_model(big / "Format-Serving", "two", files=MODEL_FILES)
    log = tmp_path / "pusher.log"
    integer_entries = set()
    with log.open("w") as stderr, subprocess.Popen(
        [sys.executable, str(PUSH_SCRIPT), str(big), str(serving), str(tmp_path / "pushed"),
         STEP_FLAG],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
    ) as pusher:
        reports: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(pusher.stdout, reports), daemon=True)
        reader.start()
        try:
            # Look at the directory as TF Serving's poller would, after every file copied,
            # and kill the push in the middle of its copy.
            for copied_count in range(1, KILL_AFTER_FILES + 1):
                copied_to = Path(_next_copy(reports, log))
                integer_entries |= {entry for entry in _listing(serving) if entry.isdigit()}
                if copied_count < KILL_AFTER_FILES:
                    pusher.stdin.write("\n")
                    pusher.stdin.flush()
            os.kill(pusher.pid, signal.SIGKILL)
        finally:
            pusher.kill()  # when the test failed before its own kill
            pusher.wait()
            reader.join(REPORT_TIMEOUT_SECONDS)  # at the end of the output the child left
    stderr = log.read_text()
    assert pusher.returncode == -signal.SIGKILL, f"the push was not killed mid-copy: {stderr}"
    integer_entries |= {entry for entry in _listing(serving) if entry.isdigit()}
    [partial] = [serving / e for e in _listing(serving)
                 if e.startswith(model_versions.PARTIAL_PREFIX)]
    assert partial in copied_to.parents  # the files went to the hidden name, nowhere else

    # TF Serving only ever saw the version that was there before.
    assert integer_entries == {str(served)}
    assert model_versions.served_versions(str(serving)) == [served]
    copied = [p for p in partial.rglob("*") if p.is_file()]
    # Killed in the middle, left under a hidden name.
    assert KILL_AFTER_FILES == len(copied) < MODEL_FILES + 1

    # The next push cleans up after the killed one by itself and publishes the model whole.
    push_in_this_process(str(big), str(serving), str(tmp_path / "pushed-again"))
    assert not partial.exists()
    assert not [entry for entry in _listing(serving) if entry.startswith(".")]
    versions = model_versions.served_versions(str(serving))
    assert versions[0] == served and len(versions) == 2
    assert model_versions.directory_digest(str(serving / str(versions[1]))) == (
        model_versions.directory_digest(str(big / "Format-Serving"))
    )


def test_retention_keeps_the_newest_versions_and_always_the_one_just_pushed(
    tmp_path, fake_saved_model
):
    serving = str(tmp_path / "serving")
    pushed = []
    for index in range(6):
        model = fake_saved_model(tmp_path / f"m{index}", str(index))
        version, newly = push_atomically(str(model), serving, keep_versions=3)
        assert newly
        pushed.append(version)
        assert model_versions.served_versions(serving) == pushed[-3:]
    assert sorted(os.listdir(serving)) == sorted(str(v) for v in pushed[-3:])  # nothing hidden

    version, _ = push_atomically(str(fake_saved_model(tmp_path / "m6", "6")),
                                 serving, keep_versions=1)
    assert model_versions.served_versions(serving) == [version]


def test_keep_versions_zero_keeps_every_version(tmp_path, fake_saved_model):
    serving = str(tmp_path / "serving")
    for index in range(4):
        push_atomically(str(fake_saved_model(tmp_path / f"m{index}", str(index))),
                        serving, keep_versions=0)
    assert len(model_versions.served_versions(serving)) == 4


def test_an_old_version_disappears_whole_even_if_deleting_it_is_interrupted(
    tmp_path, monkeypatch, fake_saved_model
):
    serving = tmp_path / "serving"
    first, _ = push_atomically(str(fake_saved_model(tmp_path / "m1", "one")), str(serving))
    real_rmtree = tf.io.gfile.rmtree

    def crash_while_deleting(path):
        if Path(path).name.startswith(model_versions.RETIRED_PREFIX):
            (Path(path) / "saved_model.pb").unlink()  # half deleted, then the crash
            raise OSError("killed")
        real_rmtree(path)

    monkeypatch.setattr(tf.io.gfile, "rmtree", crash_while_deleting)
    with pytest.raises(OSError, match="killed"):
        push_atomically(str(fake_saved_model(tmp_path / "m2", "two")), str(serving),
                        keep_versions=1)
    monkeypatch.undo()
    # The half-deleted version is under a hidden name: TF Serving no longer sees it at all.
    [second] = model_versions.served_versions(str(serving))
    assert second > first
    assert (serving / f"{model_versions.RETIRED_PREFIX}{first}").is_dir()

    third, _ = push_atomically(str(fake_saved_model(tmp_path / "m3", "three")),
                               str(serving), keep_versions=2)
    assert sorted(os.listdir(serving)) == sorted([str(second), str(third)])


def test_retention_on_an_object_store(tmp_path, fake_saved_model):
    # TensorFlow's in-memory filesystem stands in for gs://: no rename there.
    serving = "ram://retention-test/social_network_ads"
    pushed = [push_atomically(str(fake_saved_model(tmp_path / f"m{i}", str(i))),
                              serving, keep_versions=2)[0] for i in range(3)]
    assert model_versions.served_versions(serving) == pushed[-2:]


def test_the_pusher_executor_applies_the_retention_of_its_custom_config(
    tmp_path, fake_saved_model
):
    serving = tmp_path / "serving"
    for index in range(7):  # the script's custom_config keeps 5
        model = fake_saved_model(tmp_path / f"m{index}" / "Format-Serving", str(index))
        push_in_this_process(str(model.parent), str(serving), str(tmp_path / f"pushed{index}"))
    assert len(model_versions.served_versions(str(serving))) == 5
