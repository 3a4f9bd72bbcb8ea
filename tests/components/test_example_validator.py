"""The drift-aware ExampleValidator on real TFDV statistics, and its resolver strategy.

Statistics are TFDV's own, of synthetic rows, written where StatisticsGen (one
``FeatureStats.pb`` per split) and Transform (one unsplit ``FeatureStats.pb``) write them. The
executor runs as the pipeline's ExampleValidator step runs it, and what it writes is read
back as the AnomaliesGate and ``run_summary.json`` read it.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.components.transform.executor import STATS_FILE
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import io_utils

from pipeline import artifact_properties
from pipeline.components import example_validator
from pipeline.components.anomalies_gate import SCHEMA_DIFF_FILE, read_anomalies
from pipeline.config import CURATED_SCHEMA
from pipeline.data.synthesize import synthesize
from pipeline.models import features

COLUMNS = (features.ID_KEY, *features.FEATURE_KEYS, features.LABEL_KEY)
COMPARED = {"gender", "age", "estimated_salary"}  # the curated schema's drift comparators
SPAN = 7


def _rows(count: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(synthesize(count, seed=seed), columns=list(COLUMNS))


def _in_thousands(frame: pd.DataFrame) -> pd.DataFrame:
    # Inside the schema's salary range: only a comparison with the baseline can tell.
    return frame.assign(estimated_salary=frame.estimated_salary // 1000)


def _statistics(root, splits: dict[str, pd.DataFrame]) -> standard_artifacts.ExampleStatistics:
    """StatisticsGen's output: ``Split-<split>/FeatureStats.pb`` for every split."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    artifact.span = SPAN
    for split, frame in splits.items():
        (root / f"Split-{split}").mkdir(parents=True)
        (root / f"Split-{split}" / stats_artifact_utils.BINARY_PB_BASENAME).write_bytes(
            tfdv.generate_statistics_from_dataframe(frame).SerializeToString()
        )
    return artifact


def _baseline(root, frame: pd.DataFrame) -> standard_artifacts.ExampleStatistics:
    """Transform's pre-transform statistics: one ``FeatureStats.pb``, no splits."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(root)
    root.mkdir(parents=True)
    (root / STATS_FILE).write_bytes(
        tfdv.generate_statistics_from_dataframe(frame).SerializeToString()
    )
    return artifact


def _schema(root, schema: schema_pb2.Schema | None = None) -> standard_artifacts.Schema:
    """ImportSchemaGen's output: a directory holding one schema file."""
    artifact = standard_artifacts.Schema()
    artifact.uri = str(root)
    root.mkdir(parents=True)
    schema = schema or io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    io_utils.write_pbtxt_file(str(root / "schema.pbtxt"), schema)
    return artifact


def _validate(
    tmp_path,
    splits: dict[str, pd.DataFrame],
    baselines: list[standard_artifacts.ExampleStatistics] | None = None,
    schema: schema_pb2.Schema | None = None,
) -> standard_artifacts.ExampleAnomalies:
    """Runs the executor; ``baselines`` None leaves the optional input out altogether."""
    inputs = {
        standard_component_specs.STATISTICS_KEY: [_statistics(tmp_path / "statistics", splits)],
        standard_component_specs.SCHEMA_KEY: [_schema(tmp_path / "schema", schema)],
    }
    if baselines is not None:
        inputs[standard_component_specs.BASELINE_STATISTICS_KEY] = baselines
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    example_validator.DriftAwareExampleValidatorExecutor().Do(
        inputs, {standard_component_specs.ANOMALIES_KEY: [anomalies]}, {}
    )
    return anomalies


def _schema_diff(anomalies: standard_artifacts.ExampleAnomalies, split: str):
    split_uri = artifact_utils.get_split_uri([anomalies], split)
    return load_anomalies_binary(os.path.join(split_uri, SCHEMA_DIFF_FILE))


def _blessed(anomalies: standard_artifacts.ExampleAnomalies) -> dict:
    return anomalies.get_json_value_custom_property(artifact_properties.BLESSED)


@pytest.mark.parametrize("baselines", [None, []], ids=["no-input", "nothing-resolved"])
def test_without_a_baseline_the_schema_alone_is_checked(tmp_path, baselines):
    # The first span: salary in thousands would be drift from any earlier span, but there is
    # none to compare with, and the values are inside the schema's range.
    drifted = _in_thousands(_rows(400, seed=1))
    anomalies = _validate(tmp_path, {"train": drifted[:300], "eval": drifted[300:]}, baselines)
    assert artifact_utils.decode_split_names(anomalies.split_names) == ["train", "eval"]
    assert anomalies.span == SPAN
    assert _blessed(anomalies) == {"train": 1, "eval": 1}
    for split in ("train", "eval"):
        diff = _schema_diff(anomalies, split)
        assert not diff.anomaly_info and not diff.HasField("dataset_anomaly_info")
        assert not diff.drift_skew_info  # nothing was compared
    assert read_anomalies(anomalies.uri) == []
    assert anomalies.get_json_value_custom_property(artifact_properties.ANOMALIES) == []


def test_drift_from_the_baseline_is_an_anomaly_of_the_train_split_only(tmp_path):
    drifted = _in_thousands(_rows(400, seed=1))
    baseline = _baseline(tmp_path / "transform_stats", _rows(300, seed=2))
    anomalies = _validate(tmp_path, {"train": drifted[:300], "eval": drifted[300:]}, [baseline])
    train = _schema_diff(anomalies, "train")
    assert set(train.anomaly_info) == {"estimated_salary"}
    assert [r.type for r in train.anomaly_info["estimated_salary"].reason] == [
        anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    ]
    # The eval split, as drifted as the train split, is not compared: no noise from a
    # quarter of the rows, and the verdict on the span is the train split's.
    eval_diff = _schema_diff(anomalies, "eval")
    assert not eval_diff.anomaly_info and not eval_diff.drift_skew_info
    assert _blessed(anomalies) == {"train": 0, "eval": 1}
    [found] = read_anomalies(anomalies.uri)
    assert found["feature"] == "estimated_salary"
    assert found["description"].startswith("train: drift from the previous span: ")


def test_another_sample_of_the_same_population_is_compared_and_passes(tmp_path):
    baseline = _baseline(tmp_path / "transform_stats", _rows(300, seed=2))
    current = _rows(400, seed=3)
    anomalies = _validate(tmp_path, {"train": current[:300], "eval": current[300:]}, [baseline])
    assert _blessed(anomalies) == {"train": 1, "eval": 1}
    train = _schema_diff(anomalies, "train")
    assert not train.anomaly_info, dict(train.anomaly_info)
    # Every comparator of the curated schema ran, and on the features only, not the label.
    assert {info.path.step[0] for info in train.drift_skew_info} == COMPARED


def test_a_schema_anomaly_unblesses_its_split_even_with_a_baseline(tmp_path):
    current = _rows(400, seed=3)
    current.loc[350, "gender"] = "Unknown"  # outside the schema's gender domain
    baseline = _baseline(tmp_path / "transform_stats", _rows(300, seed=2))
    anomalies = _validate(tmp_path, {"train": current[:300], "eval": current[300:]}, [baseline])
    assert _blessed(anomalies) == {"train": 1, "eval": 0}
    assert set(_schema_diff(anomalies, "eval").anomaly_info) == {"gender"}
    assert [a["feature"] for a in read_anomalies(anomalies.uri)] == ["gender"]
    # The same list travels with the artifact into ML Metadata, where `tfxkfp runs show`
    # reads why a KFP run stopped at the gate without the object store.
    assert anomalies.get_json_value_custom_property(artifact_properties.ANOMALIES) == \
        read_anomalies(anomalies.uri)


def test_a_dataset_anomaly_alone_unblesses_the_split(tmp_path):
    # No feature is wrong; the data set as a whole breaks a constraint of the schema.
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    schema.dataset_constraints.min_examples_count = 200
    current = _rows(400, seed=3)
    anomalies = _validate(tmp_path, {"train": current[:300], "eval": current[300:]}, None, schema)
    eval_diff = _schema_diff(anomalies, "eval")
    assert not eval_diff.anomaly_info and eval_diff.HasField("dataset_anomaly_info")
    assert _blessed(anomalies) == {"train": 1, "eval": 0}
    assert [a["feature"] for a in read_anomalies(anomalies.uri)] == ["(dataset)"]


def _with_id(artifact_id: int) -> standard_artifacts.ExampleStatistics:
    artifact = standard_artifacts.ExampleStatistics()
    artifact.id = artifact_id
    return artifact


def test_the_strategy_resolves_the_newest_artifact_of_each_channel():
    resolved = example_validator.LatestIfAnyStrategy().resolve_artifacts(
        None, {"statistics": [_with_id(3), _with_id(11), _with_id(7)], "other": [_with_id(2)]}
    )
    assert {key: [a.id for a in artifacts] for key, artifacts in resolved.items()} == {
        "statistics": [11], "other": [2]
    }


def test_the_strategy_resolves_nothing_rather_than_failing_before_the_first_span():
    resolved = example_validator.LatestIfAnyStrategy().resolve_artifacts(
        None, {"statistics": []}
    )
    assert resolved == {"statistics": []}
