"""Bad data never trains a model: one fault injected into a copy of the real data per test.

Each refused run ends with its documented exit code (2: the file itself is malformed, caught
while staging; 3: the curated schema rejects the values, caught by ExampleValidator and the
AnomaliesGate), an error naming the feature and what is wrong, the anomaly in
``run_summary.json``, and nothing pushed. Faults in the values need a pipeline run up to the
gate (marked e2e); faults in the file's shape never start the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fault_runs import Run, column, serving_dir, tfxkfp
from pipeline import exit_codes, node_ids


def _run(tmp_path: Path, data: Path) -> tuple[Run, Path]:
    output = tmp_path / "out"
    return tfxkfp(output, "run", "--data", str(data), "--output", str(output), "--no-tune",
                  "--epochs", "1"), output


def _assert_refused(
    run: Run, output: Path, *, code: int, feature: str, what: str, named: str = ""
) -> None:
    """``feature`` as run_summary.json names it; ``named``: as the error names it."""
    assert run.code == code, run.stderr
    status = {exit_codes.INPUT: "input_error", exit_codes.ANOMALIES: "anomalies"}[code]
    assert run.summary["status"] == status and run.summary["exit_code"] == code
    named = named or feature
    lines = [line for line in run.stderr if named in line and what in line]
    assert lines, f"no stderr line names {named!r} and {what!r}: {run.stderr}"
    recorded = {a["feature"]: a["description"] for a in run.summary["anomalies"]}
    assert feature in recorded and what in recorded[feature], run.summary["anomalies"]
    assert run.summary["pushed_model"] is None
    assert run.versions == [] and not serving_dir(output).exists()
    if code == exit_codes.ANOMALIES:
        states = {c["id"]: c["status"] for c in run.summary["components"]}
        assert states[node_ids.ANOMALIES_GATE] == "failed"
        assert states[node_ids.TRANSFORM] == states[node_ids.TRAINER] == "skipped"
        assert states[node_ids.PUSHER] == "skipped"
    else:
        assert not (output / "metadata.sqlite").exists()  # the pipeline never started


# --- the file's shape: refused while staging, exit 2 ---------------------------------------


def test_wrong_type_text_in_a_numeric_column(tmp_path, with_fault):
    def change(header, rows):
        rows[57][column(header, "Age")] = "forty"

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=2, feature="age", what="'forty' is not a number",
                    named="line 59, column Age")


def test_missing_column(tmp_path, with_fault):
    def change(header, rows):
        index = column(header, "EstimatedSalary")
        del header[index]
        for row in rows:
            del row[index]

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=2, feature="estimated_salary", what="missing column")


def test_extra_column(tmp_path, with_fault):
    def change(header, rows):
        header.append("Country")
        for row in rows:
            row.append("DE")

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=2, feature="country", what="unexpected column")


def test_duplicated_column_in_the_header(tmp_path, with_fault):
    def change(header, rows):
        index = column(header, "Age")
        header.insert(index, "Age")
        for row in rows:
            row.insert(index, row[index])

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=2, feature="age", what="more than once in the header")


def test_duplicated_header_row_inside_the_data(tmp_path, with_fault):
    def change(header, rows):
        rows.insert(200, list(header))  # two exports concatenated

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=2, feature="(header)", what="repeats the header",
                    named="line 202")


def test_wrong_delimiter(tmp_path, clean_rows):
    header, rows = clean_rows
    data = tmp_path / "data.csv"
    data.write_text("\n".join(";".join(row) for row in [header, *rows]) + "\n")
    run, output = _run(tmp_path, data)
    _assert_refused(run, output, code=2, feature="(header)", what="split by ';'",
                    named=f"{data}: header")


def test_empty_file(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("")
    run, output = _run(tmp_path, data)
    _assert_refused(run, output, code=2, feature="(file)", what="file is empty", named=str(data))


# --- the values: refused by the curated schema, exit 3 --------------------------------------


@pytest.mark.e2e
def test_unseen_category(tmp_path, with_fault):
    def change(header, rows):
        rows[10][column(header, "Gender")] = "Unknown"

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=3, feature="gender", what="Unknown")
    assert "Unexpected string values" in run.summary["anomalies"][0]["description"]


@pytest.mark.e2e
def test_missing_values(tmp_path, with_fault):
    def change(header, rows):
        for row in rows[100:104]:
            row[column(header, "Age")] = ""

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=3, feature="age", what="missing values")


@pytest.mark.e2e
def test_out_of_range_number(tmp_path, with_fault):
    def change(header, rows):
        rows[3][column(header, "Age")] = "250"

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=3, feature="age", what="Out-of-range values")


@pytest.mark.e2e
def test_label_outside_0_and_1(tmp_path, with_fault):
    def change(header, rows):
        rows[20][column(header, "Purchased")] = "2"

    run, output = _run(tmp_path, with_fault(tmp_path / "data.csv", change))
    _assert_refused(run, output, code=3, feature="purchased", what="Out-of-range values")
