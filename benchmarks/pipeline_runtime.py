"""Wall time and peak memory of a whole local run as the data grows.

Runs `tfxkfp run --no-tune` on seeded synthetic data of each size in a fresh output
directory, samples the resident memory of the run's process tree, and appends a Markdown
table to benchmarks/results/pipeline_runtime.md. Usage:

    .venv/bin/python benchmarks/pipeline_runtime.py 400 4000 40000
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pipeline.data.synthesize import write_csv

RESULTS = Path(__file__).parent / "results" / "pipeline_runtime.md"
TFXKFP = str(Path(sys.executable).with_name("tfxkfp"))


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(rows: int, workdir: Path) -> tuple[float, float, int]:
    """Returns (seconds, peak RSS in MiB, exit code) of one run on ``rows`` rows."""
    data = write_csv(workdir / f"synthetic_{rows}.csv", rows=rows, seed=0)
    started = time.monotonic()
    child = subprocess.Popen(
        [TFXKFP, "run", "--no-tune", "--data", str(data), "--output", str(workdir / str(rows))],
        stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, _tree_rss(process))
        time.sleep(0.2)
    return time.monotonic() - started, peak / 2**20, child.returncode


def main(sizes: list[int]) -> None:
    lines = [
        f"\n## {datetime.date.today()} — {platform.node()}, {os.cpu_count()} cores, "
        f"`benchmarks/pipeline_runtime.py {' '.join(map(str, sizes))}`\n",
        "| rows | seconds | peak RSS (MiB) | exit code |",
        "|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as workdir:
        for rows in sizes:
            seconds, peak_mib, code = measure(rows, Path(workdir))
            lines.append(f"| {rows} | {seconds:.1f} | {peak_mib:.0f} | {code} |")
            print(lines[-1], flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main([int(size) for size in sys.argv[1:]] or [400, 4000])
