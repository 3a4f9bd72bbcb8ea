"""ExampleValidator that also checks drift against the last span that passed validation.

TFX 1.16's ExampleValidator checks statistics against the schema only. Its
DistributionValidator compares two sets of statistics, but takes its comparators from a
config of its own, infers a schema from the baseline and writes anomalies in another layout.
This executor keeps ExampleValidator's output (one ``SchemaDiff.pb`` per split, which the
AnomaliesGate and ``run_summary.json`` read) and hands the baseline to the same TFDV call,
so the ``drift_comparator``s of the curated schema apply: schema and drift anomalies come
from one ``tfdv.validate_statistics``. It also records the anomalies on the artifact (custom
property ``anomalies``), so that ML Metadata alone says why a run stopped at the gate.

The baseline is what Transform computed on the last span it accepted (its pre-transform
statistics, resolved from ML Metadata by ``LatestIfAnyStrategy``): the train split of the
last span that got through validation. A rejected span never becomes the baseline, so data
that is fixed after a refusal passes again. Only the train split is compared, as the
baseline is a train split; the eval split, a quarter of the rows, would add sampling noise
and no information. Without a baseline (the first run, and targets without that Resolver:
``targets.Target.checks_drift``) the schema is checked alone.
"""

from __future__ import annotations

import os
from typing import Any

import ml_metadata as mlmd
import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.components.transform.executor import STATS_FILE
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec
from tfx.utils import io_utils, writer_utils

from pipeline import artifact_properties
from pipeline.components.anomalies_gate import SCHEMA_DIFF_FILE, read_anomalies

DRIFT_SPLIT = "train"


class LatestIfAnyStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The newest artifact of each channel, or none yet.

    TFX's LatestArtifactStrategy fails its Resolver when a channel has no artifact, which on
    a first run (no span accepted yet) records a failed execution for an expected state.
    """

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]]:
        return {key: sorted(artifacts, key=lambda artifact: artifact.id)[-1:]
                for key, artifacts in input_dict.items()}


def load_baseline(artifact: types.Artifact) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Transform's pre-transform statistics: one ``FeatureStats.pb``, no splits."""
    return tfdv.load_stats_binary(os.path.join(artifact.uri, STATS_FILE))


class DriftAwareExampleValidatorExecutor(base_executor.BaseExecutor):
    """Schema anomalies for every split; drift anomalies for the train split."""

    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        statistics = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.STATISTICS_KEY]
        )
        anomalies = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.ANOMALIES_KEY]
        )
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
            artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])
        ))
        baselines = input_dict.get(standard_component_specs.BASELINE_STATISTICS_KEY) or []
        baseline = load_baseline(baselines[0]) if baselines else None
        logging.info("Drift baseline: %s", baselines[0].uri if baselines else "none (first span)")

        splits = artifact_utils.decode_split_names(statistics.split_names)
        anomalies.split_names = artifact_utils.encode_split_names(splits)
        anomalies.span = statistics.span
        blessed = {}
        for split in splits:
            found = tfdv.validate_statistics(
                stats_artifact_utils.load_statistics(statistics, split).proto(),
                schema,
                previous_statistics=baseline if split == DRIFT_SPLIT else None,
            )
            writer_utils.write_anomalies(
                os.path.join(artifact_utils.get_split_uri([anomalies], split), SCHEMA_DIFF_FILE),
                found,
            )
            blessed[split] = int(
                not (found.anomaly_info or found.HasField("dataset_anomaly_info"))
            )
        anomalies.set_json_value_custom_property(artifact_properties.BLESSED, blessed)
        anomalies.set_json_value_custom_property(
            artifact_properties.ANOMALIES, read_anomalies(anomalies.uri))


class DriftAwareExampleValidatorSpec(ComponentSpec):
    """ExampleValidator's inputs and output, plus the optional drift baseline."""

    PARAMETERS: dict[str, Any] = {}
    INPUTS = {
        standard_component_specs.STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics
        ),
        standard_component_specs.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        standard_component_specs.BASELINE_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True
        ),
    }
    OUTPUTS = {
        standard_component_specs.ANOMALIES_KEY: ChannelParameter(
            type=standard_artifacts.ExampleAnomalies
        ),
    }


class DriftAwareExampleValidator(base_component.BaseComponent):
    """ExampleValidator with a ``baseline_statistics`` input for drift."""

    SPEC_CLASS = DriftAwareExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(DriftAwareExampleValidatorExecutor)

    def __init__(
        self,
        statistics: types.BaseChannel,
        schema: types.BaseChannel,
        baseline_statistics: types.BaseChannel | None = None,
    ):
        super().__init__(spec=DriftAwareExampleValidatorSpec(
            statistics=statistics,
            schema=schema,
            baseline_statistics=baseline_statistics,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        ))
