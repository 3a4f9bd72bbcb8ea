"""Fault injection on a copy of the real data, made at run time in a temporary directory.

The real CSV is read from ../shared (never copied into the repository); without it the tests
use 400 synthetic rows with the same header and say so (tests/conftest.py).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from fault_runs import Rows, write_rows
from pipeline.data.synthesize import HEADER, synthesize


@pytest.fixture(scope="session")
def clean_rows(real_data) -> tuple[list[str], Rows]:
    """Header and data rows of the real CSV (or synthetic rows), as strings."""
    if real_data is not None:
        with real_data.open(newline="") as handle:
            header, *rows = list(csv.reader(handle))
        return header, rows
    return list(HEADER), [[str(value) for value in row] for row in synthesize(400, seed=11)]


@pytest.fixture(scope="session")
def with_fault(clean_rows) -> Callable[..., Path]:
    """``with_fault(path, change)``: writes the clean data with ``change`` applied to a copy.

    ``change(header, rows)`` edits the header and the rows (copies) in place.
    """

    def write(path: Path, change: Callable[[list[str], Rows], None]) -> Path:
        header, rows = list(clean_rows[0]), [list(row) for row in clean_rows[1]]
        change(header, rows)
        return write_rows(path, header, rows)

    return write
