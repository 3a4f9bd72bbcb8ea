"""The curated schema catches what well-formed CSVs can still get wrong (real TFDV)."""

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.utils import io_utils

from pipeline.components.anomalies_gate import SCHEMA_DIFF_FILE, read_anomalies
from pipeline.config import CURATED_SCHEMA

GOOD = {"user_id": [1, 2, 3, 4], "gender": ["Male", "Female", "Male", "Female"],
        "age": [19, 35, 47, 60], "estimated_salary": [19_000, 20_000, 90_000, 150_000],
        "purchased": [0, 0, 1, 1]}


def _anomalies(**changes):
    frame = pd.DataFrame({**GOOD, **changes})
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    return tfdv.validate_statistics(statistics, schema)


def test_good_data_has_no_anomalies():
    anomalies = _anomalies()
    assert not anomalies.anomaly_info
    assert not anomalies.HasField("dataset_anomaly_info")


@pytest.mark.parametrize(
    ("changes", "feature"),
    [
        ({"gender": ["Male", "Female", "Other", "Female"]}, "gender"),
        ({"age": [19, 35, 150, 60]}, "age"),
        ({"age": [19, 35, 12, 60]}, "age"),
        ({"estimated_salary": [19_000, -5, 90_000, 150_000]}, "estimated_salary"),
        ({"purchased": [0, 2, 1, 1]}, "purchased"),
        ({"age": [19.5, 35.0, 47.0, 60.0]}, "age"),
    ],
    ids=["unknown-gender", "age-too-high", "age-too-low", "negative-salary", "label-2",
         "fractional-age"],
)
def test_anomalies_are_found_for_the_right_feature(changes, feature):
    assert set(_anomalies(**changes).anomaly_info) == {feature}


def test_missing_values_are_anomalies():
    frame = pd.DataFrame(GOOD)
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    # Drop the age column's presence: statistics as if every second row lacked age.
    feature = next(f for f in statistics.datasets[0].features if f.path.step[0] == "age")
    feature.num_stats.common_stats.num_missing = 2
    feature.num_stats.common_stats.num_non_missing = 2
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    assert "age" in tfdv.validate_statistics(statistics, schema).anomaly_info


def test_read_anomalies_lists_every_split(tmp_path):
    anomalies = _anomalies(gender=["Male", "Female", "Other", "Female"])
    split_dir = tmp_path / "Split-train"
    split_dir.mkdir()
    (split_dir / SCHEMA_DIFF_FILE).write_bytes(anomalies.SerializeToString())
    (tmp_path / "Split-eval").mkdir()
    (tmp_path / "Split-eval" / SCHEMA_DIFF_FILE).write_bytes(b"")
    found = read_anomalies(str(tmp_path))
    assert [item["feature"] for item in found] == ["gender"]
    assert found[0]["description"].startswith("train: ")
