"""run_summary.json: the whole contract (DESIGN.md), built here and nowhere else.

The summary is rebuilt from ML Metadata rather than from what the runner saw, so it is the
same record a KFP or Vertex run leaves, and it is complete for failed runs too: whatever
executed is in the store. A run's status and exit code are decided here as well
(``conclude``), from that record and the error the run raised, if any.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types.standard_component_specs import (
    ANOMALIES_KEY,
    BASELINE_MODEL_KEY,
    BLESSING_KEY,
    EVALUATION_KEY,
    PUSHED_MODEL_KEY,
)

from pipeline import artifact_properties, exit_codes, node_ids
from pipeline.components.anomalies_gate import read_anomalies
from pipeline.components.predictions_export import PREDICTIONS_FILE, PREDICTIONS_KEY
from pipeline.data.staging import FILE
from pipeline.errors import InputError
from pipeline.models import features

SUMMARY_FILE = "run_summary.json"
# A run's status, and the exit code each one means.
PUSHED, NOT_BLESSED, ANOMALIES = "pushed", "not_blessed", "anomalies"
INPUT_ERROR, FAILED = "input_error", "failed"
EXIT_CODES = {
    PUSHED: exit_codes.OK, NOT_BLESSED: exit_codes.NOT_BLESSED,
    ANOMALIES: exit_codes.ANOMALIES, INPUT_ERROR: exit_codes.INPUT, FAILED: exit_codes.FAILED,
}

_STATES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
}
_METRICS = ("auc", "binary_accuracy", "example_count")
# TFMA names the evaluated model "candidate" when there is a baseline, "" when there is not.
_CANDIDATE_NAMES = ("", "candidate")


@dataclass
class _Execution:
    state: str
    seconds: float
    inputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)


@dataclass
class RunRecord:
    """The executions of the newest pipeline run, keyed by node id."""

    executions: dict[str, _Execution]

    def _first(
        self, node_id: str, key: str, direction: str
    ) -> metadata_store_pb2.Artifact | None:
        execution = self.executions.get(node_id)
        artifacts = getattr(execution, direction).get(key, []) if execution else []
        return artifacts[0] if artifacts else None

    def output_artifact(self, node_id: str, key: str) -> metadata_store_pb2.Artifact | None:
        return self._first(node_id, key, "outputs")

    def input_artifact(self, node_id: str, key: str) -> metadata_store_pb2.Artifact | None:
        return self._first(node_id, key, "inputs")

    def output_uri(self, node_id: str, key: str) -> str | None:
        artifact = self._first(node_id, key, "outputs")
        return artifact.uri if artifact else None

    def state(self, node_id: str) -> str:
        execution = self.executions.get(node_id)
        return execution.state if execution else "skipped"


def _store(metadata_path: Path) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(metadata_path)
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def read_newest_run(metadata_path: Path, pipeline_name: str) -> RunRecord:
    """Executions of the newest run recorded in the SQLite store (empty if none)."""
    if not metadata_path.exists():
        return RunRecord({})
    store = _store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return RunRecord({})
    run = max(runs, key=lambda context: context.id)
    run_execution_ids = {execution.id for execution in store.get_executions_by_context(run.id)}
    executions: dict[str, _Execution] = {}
    prefix = f"{pipeline_name}."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        in_run = [e for e in store.get_executions_by_context(node.id) if e.id in run_execution_ids]
        if not in_run:
            continue
        execution = max(in_run, key=lambda e: e.id)
        record = _Execution(
            state=_STATES.get(execution.last_known_state, "failed"),
            seconds=round(
                (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                / 1000.0, 3,
            ),
        )
        events = store.get_events_by_execution_ids([execution.id])
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            if event.type == metadata_store_pb2.Event.INPUT:
                by_key = record.inputs
            elif event.type == metadata_store_pb2.Event.OUTPUT:
                by_key = record.outputs
            else:
                continue
            # One event per artifact: an artifact bound to two keys (a cached candidate that
            # is also the baseline) carries both keys in its path.
            for step in event.path.steps:
                if step.HasField("key"):
                    by_key.setdefault(step.key, []).append(artifacts[event.artifact_id])
        executions[node.name[len(prefix):]] = record
    return RunRecord(executions)


def _int_property(artifact: metadata_store_pb2.Artifact | None, name: str) -> int | None:
    if artifact is None or name not in artifact.custom_properties:
        return None
    return artifact.custom_properties[name].int_value


def _string_property(artifact: metadata_store_pb2.Artifact | None, name: str) -> str:
    if artifact is None or name not in artifact.custom_properties:
        return ""
    return artifact.custom_properties[name].string_value


def _baseline(record: RunRecord) -> str | None:
    """The served version the Evaluator compared against (a Resolver's model: its URI)."""
    baseline = record.input_artifact(node_ids.EVALUATOR, BASELINE_MODEL_KEY)
    if baseline is None or _int_property(baseline, artifact_properties.BASELINE_FOUND) == 0:
        return None
    return _string_property(baseline, artifact_properties.SOURCE_VERSION_DIR) or baseline.uri


def evaluator_failures(evaluation_uri: str) -> list[str]:
    """TFMA's failed thresholds, one line each: a floor, or a drop against the baseline."""
    failures = []
    for per_slice in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
        for failure in per_slice.failures:
            name, value = failure.metric_key.name, failure.metric_value.double_value.value
            if failure.metric_key.is_diff:
                failures.append(f"{name} {value:+.4f} against the baseline model (must not drop)")
            else:
                floor = failure.metric_threshold.value_threshold.lower_bound.value
                failures.append(f"{name} {value:.4f} below the floor {floor:g}")
    return failures


def gate_failures(record: RunRecord) -> list[dict[str, str]]:
    """Why a model that got to the gates was not pushed: ``[{"gate", "reason"}]``."""
    found = []
    evaluation_uri = record.output_uri(node_ids.EVALUATOR, EVALUATION_KEY)
    evaluator_blessing = record.output_artifact(node_ids.EVALUATOR, BLESSING_KEY)
    if evaluation_uri and record.state(node_ids.EVALUATOR) == "complete" \
            and _int_property(evaluator_blessing, artifact_properties.BLESSED) == 0:
        found += [{"gate": node_ids.EVALUATOR, "reason": reason}
                  for reason in evaluator_failures(evaluation_uri)]
    infra_blessing = record.output_artifact(node_ids.INFRA_VALIDATOR, BLESSING_KEY)
    if _int_property(infra_blessing, artifact_properties.BLESSED) == 0:
        found.append({"gate": node_ids.INFRA_VALIDATOR,
                      "reason": _string_property(infra_blessing, artifact_properties.INFRA_REASON)
                      or "the model did not serve"})
    pushed = record.output_artifact(node_ids.PUSHER, PUSHED_MODEL_KEY)
    not_pushed_reason = _string_property(pushed, artifact_properties.NOT_PUSHED_REASON)
    if not_pushed_reason:
        found.append({"gate": node_ids.PUSHER, "reason": not_pushed_reason})
    return found


def age_band_label(band: int) -> str:
    """Human name of an age band id: 0 -> '<26', 1 -> '26-35', ..., last -> '56+'."""
    bounds = features.AGE_BAND_BOUNDARIES
    if band == 0:
        return f"<{bounds[0]}"
    if band >= len(bounds):
        return f"{bounds[-1]}+"
    return f"{bounds[band - 1]}-{bounds[band] - 1}"


def _slice_name(slice_key) -> str:
    if not slice_key.single_slice_keys:
        return "overall"
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind)
        value = value.decode() if isinstance(value, bytes) else value
        if single.column == features.transformed_name(features.AGE_BAND_KEY):
            parts.append(f"{features.AGE_BAND_KEY}={age_band_label(int(value))}")
        else:
            parts.append(f"{single.column}={value}")
    return ",".join(parts)


def no_metrics() -> dict[str, Any]:
    return {"overall": {}, "slices": {}}


def read_metrics(evaluation_uri: str) -> dict[str, Any]:
    """``{"overall": {...}, "slices": {"gender=Female": {...}}}`` for the candidate model."""
    metrics = no_metrics()
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        values = {}
        for key_and_value in metrics_for_slice.metric_keys_and_values:
            key = key_and_value.key
            if key.model_name not in _CANDIDATE_NAMES or key.is_diff:
                continue
            if key.name in _METRICS:
                number = key_and_value.value.double_value.value
                values[key.name] = (
                    int(number) if key.name == "example_count" else round(number, 6)
                )
        name = _slice_name(metrics_for_slice.slice_key)
        if name == "overall":
            metrics["overall"] = values
        else:
            metrics["slices"][name] = values
    return metrics


def describe(record: RunRecord, node_order: list[str]) -> dict[str, Any]:
    """The summary fields that come from the pipeline's executions and artifacts."""
    anomalies_uri = record.output_uri(node_ids.EXAMPLE_VALIDATOR, ANOMALIES_KEY)
    evaluation_uri = record.output_uri(node_ids.EVALUATOR, EVALUATION_KEY)
    evaluator_blessing = record.output_artifact(node_ids.EVALUATOR, BLESSING_KEY)
    infra_blessing = record.output_artifact(node_ids.INFRA_VALIDATOR, BLESSING_KEY)
    pushed = record.output_artifact(node_ids.PUSHER, PUSHED_MODEL_KEY)
    predictions_uri = record.output_uri(node_ids.PREDICTIONS_EXPORT, PREDICTIONS_KEY)

    pushed_model = None
    if _int_property(pushed, artifact_properties.PUSHED) == 1:
        pushed_model = {
            "path": _string_property(pushed, artifact_properties.PUSHED_DESTINATION),
            "version": int(_string_property(pushed, artifact_properties.PUSHED_VERSION)),
        }
    predictions = None
    if predictions_uri and os.path.exists(os.path.join(predictions_uri, PREDICTIONS_FILE)):
        predictions = os.path.join(predictions_uri, PREDICTIONS_FILE)
    return {
        "components": [
            {
                "id": node_id,
                "status": record.state(node_id),
                "seconds": record.executions[node_id].seconds
                if node_id in record.executions else 0.0,
            }
            for node_id in node_order
        ],
        "anomalies": read_anomalies(anomalies_uri) if anomalies_uri else [],
        "metrics": read_metrics(evaluation_uri)
        if evaluation_uri and record.state(node_ids.EVALUATOR) != "failed" else no_metrics(),
        "blessed": {
            "evaluator": _int_property(evaluator_blessing, artifact_properties.BLESSED) == 1,
            "infra_validator": _int_property(infra_blessing, artifact_properties.BLESSED) == 1,
        },
        "gate_failures": gate_failures(record),
        "baseline_model": _baseline(record),
        "pushed_model": pushed_model,
        "predictions": predictions,
    }


def start(data: str, started_at: datetime.datetime) -> dict[str, Any]:
    """A summary of a run that has not got past its input checks (status ``input_error``)."""
    return {
        "pipeline_name": None, "status": INPUT_ERROR, "exit_code": EXIT_CODES[INPUT_ERROR],
        "data": data, "started_at": started_at.isoformat(), "seconds": 0.0,
        "components": [], "anomalies": [], "metrics": no_metrics(),
        "blessed": {"evaluator": False, "infra_validator": False}, "gate_failures": [],
        "baseline_model": None, "pushed_model": None, "predictions": None,
    }


def input_error(summary: dict[str, Any], error: InputError, seconds: float) -> None:
    """Records bad input: each column the error names is an anomaly, or the whole file."""
    summary["anomalies"] = [{"feature": feature, "description": str(error)}
                            for feature in error.features or (FILE,)]
    summary.update(status=INPUT_ERROR, exit_code=EXIT_CODES[INPUT_ERROR], seconds=seconds)


def conclude(
    summary: dict[str, Any], record: RunRecord, node_order: list[str],
    error: BaseException | None, seconds: float,
) -> None:
    """Fills in what the run did and decides its status and exit code.

    A run that raised stopped at anomalies if the anomalies gate failed, else it failed;
    a run that finished pushed a model or was not blessed.
    """
    summary.update(describe(record, node_order))
    if error is not None:
        anomalies_stopped = record.state(node_ids.ANOMALIES_GATE) == "failed"
        status = ANOMALIES if anomalies_stopped else FAILED
    else:
        status = PUSHED if summary["pushed_model"] is not None else NOT_BLESSED
    summary.update(status=status, exit_code=EXIT_CODES[status], seconds=seconds)


def write(output_dir: Path, summary: dict[str, Any]) -> Path:
    """Writes the summary atomically, so a reader never sees half a file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SUMMARY_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.replace(path)
    return path
