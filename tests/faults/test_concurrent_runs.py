"""Two commands on one output directory at once: the second is refused and touches nothing.

Both are real processes. A second ``tfxkfp run`` exits 2 with one line naming the holder,
before it stages data, opens ML Metadata or looks at the serving directory; the lock dies
with its holder, SIGKILL included, so a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline import locking

_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# Taking the lock comes after the command's imports: tens of seconds on a busy machine.
LOCK_TIMEOUT_SECONDS = 300


def _tree(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
    }


def _wait_for_lock_holder(output: Path, holder: subprocess.Popen) -> None:
    """Blocks until ``holder`` has written its pid into the lock file (it holds the lock)."""
    lock = output / locking.LOCK_FILE
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while holder.poll() is None and time.monotonic() < deadline:
        if lock.exists() and f"pid {holder.pid}" in lock.read_text():
            return
        time.sleep(0.01)
    if holder.returncode is None:
        raise AssertionError(f"the first command held no lock after {LOCK_TIMEOUT_SECONDS} s")
    raise AssertionError(f"the first command exited ({holder.returncode}) before locking")


def _refused_run(tfxkfp_script: str, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tfxkfp_script, "run", "--output", str(output), "--no-tune"],
                          capture_output=True, text=True, env=_ENV, timeout=300)


def test_a_second_run_is_refused_while_a_first_run_is_in_progress(tmp_path, tfxkfp_script):
    output = tmp_path / "out"
    first = subprocess.Popen(
        [tfxkfp_script, "run", "--output", str(output), "--no-tune", "--epochs", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV,
    )
    try:
        _wait_for_lock_holder(output, first)
        second = _refused_run(tfxkfp_script, output)
        assert first.poll() is None  # the refusal happened while the first run was running
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"error: {output}: another tfxkfp command (tfxkfp run, pid {first.pid}) is using this "
        "output directory; wait for it to finish or choose another --output"
    ]
    assert not (output / "run_summary.json").exists()  # neither run got to write one
    # The kernel released the killed run's lock: nothing stale blocks the next command.
    with locking.exclusive(output, "test"):
        pass


def test_the_refused_run_touches_nothing_in_the_output_directory(tmp_path, tfxkfp_script):
    output = tmp_path / "out"
    (output / "serving" / "social_network_ads" / "1").mkdir(parents=True)
    (output / "metadata.sqlite").write_bytes(b"store")
    (output / "run_summary.json").write_text("{}\n")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom pipeline import locking\n"
         "with locking.exclusive(Path(sys.argv[1]), 'tfxkfp run'):\n    time.sleep(600)\n",
         str(output)],
        env=_ENV,
    )
    try:
        _wait_for_lock_holder(output, holder)
        before = _tree(output)
        second = _refused_run(tfxkfp_script, output)
        after = _tree(output)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert second.returncode == 2, second.stderr
    assert f"pid {holder.pid}" in second.stderr
    assert after == before
