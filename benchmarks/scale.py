"""Seconds, memory and quality of a whole untuned run as the data grows, against a reference.

For each ``--rows N``: synthesises N seeded rows, runs ``tfxkfp run --no-tune`` on them in a
fresh output directory, then runs benchmarks/scale_reference.py (the same training path by
hand) on the same rows and the same eval split. For each it records wall seconds (per
component for the pipeline, from run_summary.json), the peak resident memory of the whole
process tree, CPU utilisation (CPU seconds over wall seconds times cores) and eval AUC.
Appends the rows to benchmarks/results/scale.md, redraws benchmarks/results/scale.png from
every row of that file, and ends with one line per size:

    rows=N pipeline_s=X reference_s=Y ratio=X/Y peak_rss_mib=M auc=A ref_auc=B

Usage: .venv/bin/python benchmarks/scale.py --rows 10000 100000 1000000
(without --rows it only redraws the table and the plot from scale.jsonl)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.data.synthesize import write_csv

RESULTS = Path(__file__).parent / "results"
# Every measurement, one JSON object a line; the table and the plot are made from it.
RECORDS = RESULTS / "scale.jsonl"
TABLE = RESULTS / "scale.md"
PLOT = RESULTS / "scale.png"
TFXKFP = str(Path(sys.executable).with_name("tfxkfp"))
REFERENCE = str(Path(__file__).with_name("scale_reference.py"))
# The steps whose seconds the table and plot show, in pipeline order.
STEPS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
         "Trainer", "Evaluator", "InfraValidator", "Pusher", "BulkInferrer", "PredictionsExport")


@dataclass
class Measured:
    seconds: float
    peak_rss_mib: float
    cpu_percent: float


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # ended while we looked
            total += member.memory_info().rss
    return total


def measure(command: list[str], stdout) -> Measured:
    """Runs ``command``; wall seconds, peak RSS of its process tree and its CPU use."""
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=stdout,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                  "PYTHONWARNINGS": "ignore::FutureWarning"})
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process(child.pid)
        while not done.wait(0.2):
            try:
                peak = max(peak, _tree_rss(process))
            except psutil.NoSuchProcess:
                return

    sampler = threading.Thread(target=sample)
    sampler.start()
    # wait4 reaps the child with its resource use, which includes every descendant it reaped.
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"error: {Path(command[1]).name} exited {child.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds, peak / 2**20, 100 * cpu / (seconds * os.cpu_count()))


def run_size(rows: int, workdir: Path, beam_args: list[str]) -> dict:
    """Pipeline and reference on ``rows`` synthetic rows; one record."""
    data = write_csv(workdir / f"rows_{rows}.csv", rows=rows, seed=0)
    output = workdir / f"run_{rows}"
    print(f"rows={rows}: pipeline ...", file=sys.stderr, flush=True)
    pipeline = measure(
        [TFXKFP, "run", "--no-tune", "--data", str(data), "--output", str(output),
         *(f"--beam-arg={option}" for option in beam_args)],
        stdout=subprocess.DEVNULL,
    )
    summary = json.loads((output / "run_summary.json").read_text())
    print(f"rows={rows}: pipeline {pipeline.seconds:.0f} s; reference ...",
          file=sys.stderr, flush=True)
    answer = workdir / f"reference_{rows}.json"
    with answer.open("w") as handle:
        reference = measure([sys.executable, REFERENCE, str(data), str(output)], stdout=handle)
    reference_result = json.loads(answer.read_text())
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "rows": rows,
        "beam_args": beam_args,
        "pipeline_s": round(pipeline.seconds, 1),
        # The reference's own clock leaves out looking up the pipeline's split.
        "reference_s": reference_result["seconds"],
        "peak_rss_mib": round(pipeline.peak_rss_mib),
        "reference_peak_rss_mib": round(reference.peak_rss_mib),
        "cpu_percent": round(pipeline.cpu_percent),
        "reference_cpu_percent": round(reference.cpu_percent),
        "auc": summary["metrics"]["overall"]["auc"],
        "ref_auc": reference_result["auc"],
        "eval_rows": summary["metrics"]["overall"]["example_count"],
        "steps": {component["id"]: component["seconds"] for component in summary["components"]},
    }


def latest(records: list[dict], *, default_beam_only: bool = False) -> list[dict]:
    """The newest record of each size and Beam options, by size."""
    newest = {}
    for record in records:
        options = tuple(record.get("beam_args", []))
        if not (default_beam_only and options):
            newest[record["rows"], options] = record
    return [newest[key] for key in sorted(newest)]


def write_table(records: list[dict]) -> None:
    header = ("| date | rows | Beam options | pipeline s | reference s | ratio | peak RSS MiB "
              "| CPU % | AUC | ref AUC | " + " | ".join(f"{step} s" for step in STEPS) + " |")
    lines = [
        "# Scale: a whole untuned run against a hand-written reference",
        "",
        "Made by `.venv/bin/python benchmarks/scale.py --rows ... [--beam-arg ...]` from",
        "scale.jsonl: the newest measurement of each size and Beam options. CPU % is CPU seconds",
        "over wall seconds times cores. The plot (scale.png) shows the default options.",
        "",
        header,
        "|" + "---|" * 3 + "---:|" * (header.count("|") - 4),
    ]
    for record in latest(records):
        ratio = record["pipeline_s"] / record["reference_s"]
        options = " ".join(record.get("beam_args", [])) or "default"
        lines.append(
            f"| {record['date']} | {record['rows']:,} | {options} | {record['pipeline_s']:.0f} | "
            f"{record['reference_s']:.0f} | {ratio:.1f} | {record['peak_rss_mib']:,} | "
            f"{record['cpu_percent']} | {record['auc']:.4f} | {record['ref_auc']:.4f} | "
            + " | ".join(f"{record['steps'].get(step, 0):.0f}" for step in STEPS) + " |"
        )
    TABLE.write_text("\n".join(lines) + "\n")


def draw_plot(records: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    records = latest(records, default_beam_only=True)
    rows = [record["rows"] for record in records]
    figure, (seconds, memory) = pyplot.subplots(
        1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 2], "wspace": 0.55})
    colours = pyplot.get_cmap("tab20").colors
    for index, step in enumerate(STEPS):
        # Steps under a tenth of a second are drawn at 0.1: a log axis has no zero.
        values = [max(record["steps"].get(step, 0), 0.1) for record in records]
        seconds.plot(rows, values, marker="o", linewidth=1, color=colours[index], label=step)
    seconds.plot(rows, [record["pipeline_s"] for record in records], marker="s", linewidth=2.5,
                 color="black", label="whole run")
    seconds.plot(rows, [record["reference_s"] for record in records], marker="^",
                 linewidth=2.5, linestyle="--", color="grey", label="reference")
    seconds.set(xscale="log", yscale="log", xlabel="rows", ylabel="seconds",
                title="Wall seconds per component")
    seconds.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    memory.plot(rows, [record["peak_rss_mib"] for record in records], marker="s",
                color="black", label="pipeline")
    memory.plot(rows, [record["reference_peak_rss_mib"] for record in records], marker="^",
                linestyle="--", color="grey", label="reference")
    memory.set(xscale="log", yscale="log", xlabel="rows", ylabel="peak RSS (MiB)",
               title="Peak memory of the process tree")
    memory.legend()
    figure.savefig(PLOT, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[],
                        help="sizes to measure; none: only redraw the table and plot")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="OPTION",
                        help="passed on to `tfxkfp run --beam-arg` (default: its own)")
    parser.add_argument("--workdir", type=Path,
                        help="keep data and runs here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfxkfp-scale-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        measured = []
        for rows in args.rows:
            record = run_size(rows, workdir, args.beam_arg)
            with RECORDS.open("a") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            measured.append(record)
    records = [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]
    write_table(records)
    draw_plot(records)
    for record in measured:
        print(
            f"rows={record['rows']} pipeline_s={record['pipeline_s']:.1f} "
            f"reference_s={record['reference_s']:.1f} "
            f"ratio={record['pipeline_s'] / record['reference_s']:.2f} "
            f"peak_rss_mib={record['peak_rss_mib']} auc={record['auc']:.4f} "
            f"ref_auc={record['ref_auc']:.4f}"
        )


if __name__ == "__main__":
    main()
