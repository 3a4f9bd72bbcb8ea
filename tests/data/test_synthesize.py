import csv
import statistics

import pytest

from pipeline.data import synthesize
from pipeline.data.staging import TRAINING_COLUMNS, stage


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_writes_the_real_header_and_value_ranges(tmp_path):
    path = synthesize.write_csv(tmp_path / "s.csv", rows=500, seed=3)
    with path.open() as handle:
        assert next(csv.reader(handle)) == list(synthesize.HEADER)
    rows = _rows(path)
    assert len(rows) == 500
    assert {row["Gender"] for row in rows} == {"Female", "Male"}
    ages = [int(row["Age"]) for row in rows]
    salaries = [int(row["EstimatedSalary"]) for row in rows]
    assert min(ages) >= 18 and max(ages) <= 60
    assert min(salaries) >= 15_000 and max(salaries) <= 150_000
    assert all(salary % 1000 == 0 for salary in salaries)
    assert len({row["User ID"] for row in rows}) == 500


def test_staging_accepts_synthetic_data(tmp_path):
    staged = stage(synthesize.write_csv(tmp_path / "s.csv", 50, 1), tmp_path / "staged")
    assert staged.rows == 50
    assert staged.path.read_text().splitlines()[0] == ",".join(TRAINING_COLUMNS)


def test_label_balance_and_relationship(tmp_path):
    rows = _rows(synthesize.write_csv(tmp_path / "s.csv", rows=4000, seed=0))
    buyers = [row for row in rows if row["Purchased"] == "1"]
    others = [row for row in rows if row["Purchased"] == "0"]
    # The real data has 36% buyers; the generator should be in that region, not degenerate.
    assert 0.25 <= len(buyers) / len(rows) <= 0.5
    assert statistics.mean(int(r["Age"]) for r in buyers) > statistics.mean(
        int(r["Age"]) for r in others) + 5
    assert statistics.mean(int(r["EstimatedSalary"]) for r in buyers) > statistics.mean(
        int(r["EstimatedSalary"]) for r in others) + 10_000


def test_same_seed_same_data_other_seed_other_data():
    assert synthesize.synthesize(100, seed=7) == synthesize.synthesize(100, seed=7)
    assert synthesize.synthesize(100, seed=7) != synthesize.synthesize(100, seed=8)


def test_rejects_zero_rows():
    with pytest.raises(ValueError, match="rows must be at least 1"):
        synthesize.synthesize(0, seed=0)
