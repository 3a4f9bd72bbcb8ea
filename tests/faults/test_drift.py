"""The curated schema's drift comparators: unit changes are drift, resampling is not.

Real TFDV on statistics of the real data (synthetic without ../shared): what the pipeline's
ExampleValidator does with the previous span's statistics, without the pipeline around it.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.utils import io_utils

from pipeline.components.anomalies_gate import SCHEMA_DIFF_FILE, read_anomalies
from pipeline.config import CURATED_SCHEMA
from pipeline.data.staging import normalise_column_name

_DRIFT = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
          anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}


@pytest.fixture(scope="module")
def frame(clean_rows) -> pd.DataFrame:
    header, rows = clean_rows
    data = pd.DataFrame(rows, columns=[normalise_column_name(name) for name in header])
    return data.astype({"user_id": int, "age": int, "estimated_salary": int, "purchased": int})


@pytest.fixture(scope="module")
def schema():
    return io_utils.SchemaReader().read(str(CURATED_SCHEMA))


def _validate(schema, current: pd.DataFrame, previous: pd.DataFrame):
    return tfdv.validate_statistics(
        tfdv.generate_statistics_from_dataframe(current),
        schema,
        previous_statistics=tfdv.generate_statistics_from_dataframe(previous),
    )


def _drifted(anomalies) -> set[str]:
    return {feature for feature, info in anomalies.anomaly_info.items()
            if any(reason.type in _DRIFT for reason in info.reason)}


def test_the_schema_compares_every_feature_and_not_the_label(schema):
    compared = {f.name for f in schema.feature if f.HasField("drift_comparator")}
    assert compared == {"gender", "age", "estimated_salary"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_another_sample_of_the_same_population_is_not_drift(schema, frame, seed):
    # Two disjoint samples, the sizes of a new span's train split and of a smaller one.
    order = list(range(len(frame)))
    random.Random(seed).shuffle(order)
    current = frame.iloc[order[:300]].reset_index(drop=True)
    previous = frame.iloc[order[300:]].reset_index(drop=True)
    anomalies = _validate(schema, current, previous)
    assert not anomalies.anomaly_info, dict(anomalies.anomaly_info)
    assert {step.path.step[0] for step in anomalies.drift_skew_info} == {
        "gender", "age", "estimated_salary"
    }


def test_salary_in_thousands_is_caught_by_drift_alone(schema, frame):
    # Still inside the schema's 0..1,000,000 range: only the comparison with the previous
    # span can tell.
    thousands = frame.assign(estimated_salary=frame.estimated_salary // 1000)
    anomalies = _validate(schema, thousands, frame)
    assert set(anomalies.anomaly_info) == {"estimated_salary"}
    assert [r.type for r in anomalies.anomaly_info["estimated_salary"].reason] == [
        anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    ]


def test_salary_in_cents_is_drift_and_out_of_range(schema, frame):
    cents = frame.assign(estimated_salary=frame.estimated_salary * 100)
    anomalies = _validate(schema, cents, frame)
    assert _drifted(anomalies) == {"estimated_salary"}


def test_a_shifted_gender_mix_is_drift(schema, frame):
    men = frame.assign(gender=["Male" if i % 10 else "Female" for i in range(len(frame))])
    assert _drifted(_validate(schema, men, frame)) == {"gender"}


def test_drift_reads_as_drift_in_the_run_summary(schema, frame, tmp_path):
    anomalies = _validate(schema, frame.assign(estimated_salary=frame.estimated_salary // 1000),
                          frame)
    (tmp_path / "Split-train").mkdir()
    (tmp_path / "Split-train" / SCHEMA_DIFF_FILE).write_bytes(anomalies.SerializeToString())
    [found] = read_anomalies(str(tmp_path))
    assert found["feature"] == "estimated_salary"
    assert found["description"].startswith("train: drift from the previous span: ")
    assert "Jensen-Shannon divergence" in found["description"]
