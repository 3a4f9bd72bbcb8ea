"""Running ``tfxkfp`` on faulty inputs and reading back what it did."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline import cli, model_versions
from pipeline.config import MODEL_NAME

Rows = list[list[str]]


def write_rows(path: Path, header: list[str], rows: Rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def column(header: list[str], name: str) -> int:
    return header.index(name)


def serving_dir(output: Path) -> Path:
    return output / "serving" / MODEL_NAME


@dataclass
class Run:
    """What one ``tfxkfp`` command did, and the served versions right after it."""

    code: int
    stderr: list[str]
    summary: dict | None
    versions: list[int]


def tfxkfp(output: Path, *args: str) -> Run:
    """Runs a ``tfxkfp`` command in this process, as ``main`` would from a shell.

    In process rather than as a subprocess: each pipeline run then skips importing
    TensorFlow, TFX and Beam again, which is most of a short run's time.
    """
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(list(args))
    lines = stderr.getvalue().strip().splitlines()
    print(*lines, sep="\n")
    summary_path = output / "run_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Run(code, lines, summary, model_versions.served_versions(str(serving_dir(output))))
