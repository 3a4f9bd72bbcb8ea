"""The same pipeline on the same data, locally and on Kubeflow Pipelines on the local cluster.

Runs `tfxkfp run` (LocalDagRunner) on the data, then compiles and submits the same tuned
pipeline to the local cluster's KFP 2.16.1 and follows it, sampling the machine's used memory
(MemTotal - MemAvailable) throughout. Appends to benchmarks/results/kfp_run.md a table of each
task's seconds on both (on KFP, the executor's own time, which its launcher reports, and the
task's time from its start to the next task's, which adds KFP's driver, the pod's start and
Argo's scheduling) and the whole runs' wall time. Needs the local cluster with KFP installed
(`make cluster-up cluster-kfp`), nothing else heavy running, and DATA (default: the real data):

    .venv/bin/python benchmarks/kfp_run.py [DATA.csv]
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from local_cluster import MemorySampler, append_results, heading

REPO = Path(__file__).resolve().parents[1]
TFXKFP = str(REPO / ".venv" / "bin" / "tfxkfp")
RESULTS = Path(__file__).parent / "results" / "kfp_run.md"
DATA = REPO.parent / "shared" / "data" / "social_network_ads.csv"
STORE_DATA = Path("/var/local/tfx/data/social_network_ads")


def _settings(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return dict(pairs)


def _run(args: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}, check=True,
                          capture_output=True, text=True)
    return time.monotonic() - started, done.stdout + done.stderr


def local_run(data: Path) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as output:
        seconds, _ = _run([TFXKFP, "run", "--data", str(data), "--output", output])
        summary = json.loads((Path(output) / "run_summary.json").read_text())
    return seconds, {c["id"]: c["seconds"] for c in summary["components"]
                     if c["status"] != "skipped"}


def kfp_run(data: Path, settings: dict[str, str]) -> tuple[float, dict, int]:
    image = _settings(REPO / "build" / "local-images.env")["PIPELINE_IMAGE"]
    _run([TFXKFP, "data", "stage", str(data), "--out", str(STORE_DATA)])
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "pipeline.yaml"
        _run([TFXKFP, "compile", "--target", "kfp", "--image", image, "--output", str(spec)],
             settings)
        with MemorySampler() as memory:
            seconds, output = _run([TFXKFP, "submit", str(spec), "--wait", "--run-name",
                                    "benchmark"], settings)
    run_id = re.search(r"/#/runs/details/([0-9a-f-]{36})", output).group(1)
    _, shown = _run([TFXKFP, "runs", "show", run_id, "--output", "json"], settings)
    return seconds, json.loads(shown[shown.index("{"):]), memory.peak


def _task_spans(report: dict) -> dict[str, float]:
    """A task's start to the start of the next task that starts after it ends (or the run's
    end): its executor plus what KFP and Argo spend around it."""
    tasks = sorted(report["tasks"], key=lambda task: task["start_time"])
    starts = [task["start_time"] for task in tasks]
    parse = datetime.datetime.fromisoformat
    spans = {}
    for task in tasks:
        later = [start for start in starts if start >= task["end_time"]]
        until = min(later) if later else report["finished_at"]
        spans[task["display_name"]] = (parse(until.replace("Z", "+00:00"))
                                       - parse(task["start_time"].replace("Z", "+00:00"))
                                       ).total_seconds()
    return spans


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    settings = _settings(REPO / "k8s" / "local" / "pipeline.env")
    memory = psutil.virtual_memory()
    local_seconds, local = local_run(data)
    kfp_seconds, report, peak = kfp_run(data, settings)
    executor = {task["display_name"]: task["seconds"] for task in report["tasks"]}
    spans = _task_spans(report)
    mib = 1 << 20
    lines = [f"\n## {heading(memory)}, {data.name}, tuned\n",
             f"KFP run {report['run_id']} {report['state']}; peak used memory of the whole "
             f"machine during it {peak / mib:,.0f} MiB (before: "
             f"{(memory.total - memory.available) / mib:,.0f} MiB, the cluster and KFP idle).\n",
             "| task | local (s, run_summary.json) | KFP executor (s) | KFP task, scheduling "
             "included (s) |",
             "|---|---:|---:|---:|"]
    # In the order the tasks started on KFP, then what runs only locally.
    order = [task["display_name"] for task in sorted(report["tasks"],
                                                     key=lambda task: task["start_time"])]
    for name in order + sorted(set(local) - set(order)):
        cells = [f"{local[name]:.1f}" if name in local else "-",
                 f"{executor[name]:.0f}" if executor.get(name) is not None else "-",
                 f"{spans[name]:.0f}" if name in spans else "-"]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines.append(f"| **whole run** (`tfxkfp run`; `tfxkfp submit --wait`) | "
                 f"{local_seconds:.0f} | | {kfp_seconds:.0f} |")
    append_results(RESULTS, lines)


if __name__ == "__main__":
    main()
