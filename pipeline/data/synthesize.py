"""Seeded synthetic Social Network Ads data with the real CSV's header and value ranges.

The real data set (Kaggle "Social Network Ads") is not ours to ship, so the default run and
the scale benchmarks use this generator. Purchases follow a logistic relationship in which
older and higher-salary users buy more, roughly as in the real data, so a model has
something real to learn.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

# Rows of the synthetic data a run without --data trains on: as many as the real data set.
DEFAULT_ROWS = 400
HEADER = ("User ID", "Gender", "Age", "EstimatedSalary", "Purchased")

_AGE_RANGE = (18, 60)
_SALARY_RANGE = (15_000, 150_000)
_FIRST_USER_ID = 15_600_000


def purchase_probability(age: int, salary: int) -> float:
    """The generator's ground truth: P(purchased | age, salary)."""
    # Centred near age 42 / salary 90k, where the real data's classes meet.
    score = 0.22 * (age - 42) + 0.00006 * (salary - 90_000)
    return 1.0 / (1.0 + math.exp(-score))


def synthesize(rows: int, seed: int) -> list[tuple[int, str, int, int, int]]:
    """Returns ``rows`` records ``(user_id, gender, age, salary, purchased)``."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = random.Random(seed)
    records = []
    for index in range(rows):
        age = rng.randint(*_AGE_RANGE)
        # Salaries are rounded to the thousand, as in the real data.
        salary = round(rng.uniform(*_SALARY_RANGE), -3)
        gender = rng.choice(("Female", "Male"))
        purchased = int(rng.random() < purchase_probability(age, salary))
        records.append((_FIRST_USER_ID + index, gender, age, int(salary), purchased))
    return records


def write_csv(path: Path, rows: int, seed: int) -> Path:
    """Writes synthetic data to ``path`` with the real header; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(synthesize(rows, seed))
    return path
