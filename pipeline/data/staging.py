"""Checks a user's CSV and stages a normalised copy for CsvExampleGen.

Staging catches what would otherwise surface deep inside Beam as a stack trace, or not at
all: a missing or empty file, a wrong delimiter, missing, unknown or duplicated columns, a
header repeated inside the data (two exports concatenated), ragged rows and non-numeric
values. It names the file and the column or line in one sentence (``InputError``, which also
carries the feature for ``run_summary.json``). What a well-formed file can still get wrong
(out-of-domain gender, implausible age, missing values, drift) is the curated schema's job,
checked by ExampleValidator inside the pipeline.

Headers are normalised to the schema's snake_case names (``User ID`` -> ``user_id``,
``EstimatedSalary`` -> ``estimated_salary``). A column the schema does not know is refused
rather than dropped: it usually means the export changed, and the columns next to it may
have moved too. Inference data may carry the label column; it is dropped.
The staged file is rewritten only when its content changes, because CsvExampleGen's input
fingerprint includes the file's modification time: an unchanged file keeps the pipeline
cache valid.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.models.features import FEATURE_KEYS, ID_KEY, LABEL_KEY

TRAINING_COLUMNS = (ID_KEY, *FEATURE_KEYS, LABEL_KEY)
INFERENCE_COLUMNS = (ID_KEY, *FEATURE_KEYS)
_NUMERIC_COLUMNS = {ID_KEY, "age", "estimated_salary", LABEL_KEY}
_OTHER_DELIMITERS = (";", "\t", "|")
# What an InputError names when the fault is not one column's: the whole file, its
# header, or one data row.
FILE, HEADER, ROW = "(file)", "(header)", "(row)"




@dataclass(frozen=True)
class StagedData:
    path: Path  # the normalised CSV
    rows: int


def normalise_column_name(name: str) -> str:
    """``EstimatedSalary`` -> ``estimated_salary``; ``User ID`` -> ``user_id``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def _read_text(source: Path) -> str:
    if not source.exists():
        raise InputError(f"{source}: no such file", (FILE,))
    if source.is_dir():
        raise InputError(f"{source}: is a directory, expected a CSV file", (FILE,))
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{source}: not UTF-8 text (byte {error.start})", (FILE,)) from None
    if not text.strip():
        raise InputError(f"{source}: file is empty", (FILE,))
    return text


def _column_indexes(
    source: Path, header: list[str], required: tuple[str, ...], optional: tuple[str, ...]
) -> list[int]:
    names = [normalise_column_name(name) for name in header]
    if len(header) == 1:
        for delimiter in _OTHER_DELIMITERS:
            if delimiter in header[0]:
                raise InputError(
                    f"{source}: header is one column split by {delimiter!r}; "
                    "expected comma-separated columns", (HEADER,)
                )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(
            f"{source}: column(s) {', '.join(duplicated)} appear more than once in the header "
            f"(header: {', '.join(header)})", tuple(duplicated)
        )
    missing = [column for column in required if column not in names]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)} "
            f"(header: {', '.join(header)})", tuple(missing)
        )
    unknown = [name for name in names if name not in required + optional]
    if unknown:
        raise InputError(
            f"{source}: unexpected column(s) {', '.join(unknown)}; expected exactly "
            f"{', '.join(required)}", tuple(unknown)
        )
    return [names.index(column) for column in required]


def _normalised_number(source: Path, line: int, column: str, value: str) -> str:
    """Integral numbers as integers ('37.0' -> '37'); empty stays empty (schema checks it)."""
    value = value.strip()
    if not value:
        return value
    try:
        number = float(value)
    except ValueError:
        raise InputError(
            f"{source}: line {line}, column {column}: {value!r} is not a number",
            (normalise_column_name(column),),
        ) from None
    return str(int(number)) if number.is_integer() else value


def read_rows(
    source: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[list[str]]:
    """Parses ``source`` and returns its rows restricted to ``columns``, in that order.

    ``optional`` columns may be present and are dropped; any other column is refused.
    """
    reader = csv.reader(io.StringIO(_read_text(source)))
    header = next(reader)
    indexes = _column_indexes(source, header, columns, optional)
    rows = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not data
        line = reader.line_num
        if record == header:
            raise InputError(f"{source}: line {line} repeats the header", (HEADER,))
        if len(record) != len(header):
            raise InputError(
                f"{source}: line {line} has {len(record)} fields, the header has {len(header)}",
                (ROW,),
            )
        row = []
        for column, index in zip(columns, indexes, strict=True):
            value = record[index].strip()
            if column in _NUMERIC_COLUMNS:
                value = _normalised_number(source, line, header[index], value)
            row.append(value)
        rows.append(row)
    if not rows:
        raise InputError(f"{source}: has a header but no data rows", (FILE,))
    return rows


def stage(source: Path, destination_dir: Path, *, labelled: bool = True) -> StagedData:
    """Validates ``source`` and writes ``destination_dir/data.csv`` with normalised columns."""
    columns = TRAINING_COLUMNS if labelled else INFERENCE_COLUMNS
    rows = read_rows(source, columns, optional=() if labelled else (LABEL_KEY,))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    content = buffer.getvalue()

    destination = destination_dir / "data.csv"
    destination_dir.mkdir(parents=True, exist_ok=True)
    if not destination.exists() or destination.read_text() != content:
        # Write then rename, so a crash never leaves a half-written span for ExampleGen.
        partial = destination.with_suffix(".csv.partial")
        partial.write_text(content)
        partial.replace(destination)
    return StagedData(path=destination, rows=len(rows))
