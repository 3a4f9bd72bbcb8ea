"""Time and memory of the local cluster (k8s/local): a warm `cluster.sh up`, the cluster tier.

Warm means the Go binaries and image tarballs are cached (a previous `cluster.sh up` built
them): the figure CI pays on every run. It stops the cluster, starts it again, runs the
cluster tier on it, samples the machine's used memory throughout, and appends a Markdown
table to benchmarks/results/local_cluster.md. Run as root, with nothing else heavy running:

    .venv/bin/python benchmarks/local_cluster.py

The cold build (nothing cached) is measured by hand, as the README says, because it means
deleting the caches: `rm -rf ~/.cache/tfx-kfp-gke ~/.cache/go-build` then
`time k8s/local/build-binaries.sh` and `time k8s/local/build-images.sh`.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CLUSTER = str(REPO / "k8s" / "local" / "cluster.sh")
RESULTS = Path(__file__).parent / "results" / "local_cluster.md"


class MemorySampler:
    """Peak of the machine's used memory (MemTotal - MemAvailable) while it runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = psutil.virtual_memory()
            self.peak = max(self.peak, memory.total - memory.available)
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def _timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, check=True, **kwargs)
    return time.monotonic() - started, done


def main() -> None:
    _timed([CLUSTER, "down"])
    memory = psutil.virtual_memory()
    baseline = memory.total - memory.available
    with MemorySampler() as sampler:
        up_seconds, up = _timed([CLUSTER, "up"], stdout=subprocess.PIPE, text=True)
        up_peak = sampler.peak
        tier_seconds, _ = _timed(
            [sys.executable, "-m", "pytest", "-m", "cluster", "-q", "tests/cluster"],
            env={**os.environ, "KUBECONFIG": up.stdout.strip().splitlines()[-1]},
        )
    mib = 1 << 20
    rows = [
        ("warm `cluster.sh up` (binaries and image tarballs cached)", f"{up_seconds:.0f} s",
         f"{up_peak / mib:,.0f} MiB"),
        ("cluster tier (`pytest -m cluster tests/cluster`)", f"{tier_seconds:.0f} s",
         f"{sampler.peak / mib:,.0f} MiB"),
    ]
    append_results(RESULTS, [
        f"\n## {heading(memory)}, used with the cluster down {baseline / mib:,.0f} MiB\n",
        "| step | wall time | peak used memory (whole machine) |", "|---|---:|---:|",
        *(f"| {step} | {seconds} | {peak} |" for step, seconds, peak in rows)])


def heading(memory) -> str:
    """When, and on what machine: the start of a results section."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp}, {os.cpu_count()} cores, {memory.total / (1 << 30):.0f} GiB"


def append_results(path: Path, lines: list[str]) -> None:
    """Appends a results section to `path` and prints it."""
    path.parent.mkdir(exist_ok=True)
    with path.open("a") as results:
        results.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
