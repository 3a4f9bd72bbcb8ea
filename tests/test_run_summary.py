"""run_summary: reading a run back from a real ML Metadata store, and the status it decides.

The store is a real SQLite ML Metadata database written through ml_metadata's own API, laid
out as TFX lays out a run (a ``pipeline_run`` context, a ``node`` context per node named
``<pipeline>.<node id>``, events keyed by output name). The whole-pipeline runs of
tests/e2e and tests/faults check the same functions against what TFX really writes.
"""

from __future__ import annotations

import datetime
import json

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import artifact_properties, exit_codes, node_ids, run_summary
from pipeline.errors import InputError

PIPELINE = "social-network-ads"
COMPLETE = metadata_store_pb2.Execution.COMPLETE
FAILED = metadata_store_pb2.Execution.FAILED


class _Store:
    """Writes executions the way TFX's launcher records them, one run at a time."""

    def __init__(self, path):
        self.path = path
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        )
        self.store = metadata_store.MetadataStore(config)
        self.artifact_type = self.store.put_artifact_type(
            metadata_store_pb2.ArtifactType(name="Artifact"))
        self.execution_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name="Execution"))
        self.run_type = self.store.put_context_type(
            metadata_store_pb2.ContextType(name="pipeline_run"))
        self.node_type = self.store.put_context_type(metadata_store_pb2.ContextType(name="node"))
        self.nodes: dict[str, int] = {}
        self.run_id = 0

    def new_run(self, name: str) -> None:
        [self.run_id] = self.store.put_contexts(
            [metadata_store_pb2.Context(type_id=self.run_type, name=name)])

    def execute(self, node_id: str, state=COMPLETE, outputs=None, inputs=None) -> None:
        """One execution of ``node_id``; outputs/inputs: {key: {property: value}}."""
        if node_id not in self.nodes:
            [self.nodes[node_id]] = self.store.put_contexts([metadata_store_pb2.Context(
                type_id=self.node_type, name=f"{PIPELINE}.{node_id}")])
        execution = metadata_store_pb2.Execution(
            type_id=self.execution_type, last_known_state=state)
        artifacts_and_events = []
        for event_type, by_key in ((metadata_store_pb2.Event.OUTPUT, outputs or {}),
                                   (metadata_store_pb2.Event.INPUT, inputs or {})):
            for key, properties in by_key.items():
                artifact = metadata_store_pb2.Artifact(
                    type_id=self.artifact_type, uri=f"/artifacts/{node_id}/{key}")
                for name, value in properties.items():
                    field = "int_value" if isinstance(value, int) else "string_value"
                    setattr(artifact.custom_properties[name], field, value)
                event = metadata_store_pb2.Event(type=event_type)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                artifacts_and_events.append((artifact, event))
        contexts = self.store.get_contexts_by_id([self.run_id, self.nodes[node_id]])
        self.store.put_execution(execution, artifacts_and_events, contexts)


@pytest.fixture
def store(tmp_path):
    return _Store(tmp_path / "metadata.sqlite")


def _read(store: _Store) -> run_summary.RunRecord:
    return run_summary.read_newest_run(store.path, PIPELINE)


def _blessed(value: int) -> dict[str, int]:
    return {artifact_properties.BLESSED: value}


def _pushed(version: int) -> dict:
    return {artifact_properties.PUSHED: 1,
            artifact_properties.PUSHED_DESTINATION: f"/serving/{version}",
            artifact_properties.PUSHED_VERSION: str(version)}


def _gates(store: _Store, evaluator: int, infra: int, pushed: dict) -> None:
    """The gate nodes of one run. The Evaluator's blessing only: its evaluation needs TFMA."""
    store.execute(node_ids.EVALUATOR, outputs={"blessing": _blessed(evaluator)})
    store.execute(node_ids.INFRA_VALIDATOR, outputs={"blessing": _blessed(infra)})
    store.execute(node_ids.PUSHER, outputs={"pushed_model": pushed})


def test_no_store_is_an_empty_record(tmp_path):
    record = run_summary.read_newest_run(tmp_path / "missing.sqlite", PIPELINE)
    assert record.executions == {}
    assert record.state(node_ids.TRAINER) == "skipped"


def test_only_the_newest_run_is_read(store):
    store.new_run("run-1")
    store.execute(node_ids.TRAINER, state=FAILED)
    store.execute(node_ids.TRANSFORM)
    store.new_run("run-2")
    store.execute(node_ids.TRAINER)
    record = _read(store)
    assert record.state(node_ids.TRAINER) == "complete"
    assert record.state(node_ids.TRANSFORM) == "skipped"  # ran in run-1 only


def test_another_pipelines_nodes_are_not_read(store):
    store.new_run("run-1")
    store.store.put_contexts([metadata_store_pb2.Context(
        type_id=store.node_type, name=f"other-pipeline.{node_ids.TRAINER}")])
    store.execute(node_ids.TRANSFORM)
    assert set(_read(store).executions) == {node_ids.TRANSFORM}


def test_a_pushed_run_concludes_pushed_with_exit_0(store):
    store.new_run("run-1")
    _gates(store, evaluator=1, infra=1, pushed=_pushed(1700000000))
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    order = [node_ids.EVALUATOR, node_ids.INFRA_VALIDATOR, node_ids.PUSHER, node_ids.TRAINER]
    run_summary.conclude(summary, _read(store), order, None, 1.5)
    assert summary["status"] == run_summary.PUSHED
    assert summary["exit_code"] == exit_codes.OK
    assert summary["pushed_model"] == {"path": "/serving/1700000000", "version": 1700000000}
    assert summary["blessed"] == {"evaluator": True, "infra_validator": True}
    assert summary["gate_failures"] == []
    assert [c["id"] for c in summary["components"]] == order
    assert summary["components"][-1] == {"id": node_ids.TRAINER, "status": "skipped",
                                         "seconds": 0.0}
    assert summary["seconds"] == 1.5


def test_an_unblessed_run_names_the_gates_that_said_no(store):
    store.new_run("run-1")
    store.execute(node_ids.EVALUATOR, outputs={"blessing": _blessed(1)})
    store.execute(node_ids.INFRA_VALIDATOR, outputs={"blessing": {
        artifact_properties.BLESSED: 0, artifact_properties.INFRA_REASON: "no model loaded"}})
    store.execute(node_ids.PUSHER, outputs={"pushed_model": {
        artifact_properties.PUSHED: 0,
        artifact_properties.NOT_PUSHED_REASON: "this model was rolled back"}})
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    run_summary.conclude(summary, _read(store), [], None, 2.0)
    assert summary["status"] == run_summary.NOT_BLESSED
    assert summary["exit_code"] == exit_codes.NOT_BLESSED
    assert summary["pushed_model"] is None
    assert summary["blessed"] == {"evaluator": True, "infra_validator": False}
    assert summary["gate_failures"] == [
        {"gate": node_ids.INFRA_VALIDATOR, "reason": "no model loaded"},
        {"gate": node_ids.PUSHER, "reason": "this model was rolled back"},
    ]


def test_an_infra_blessing_without_a_reason_still_names_a_reason(store):
    store.new_run("run-1")
    store.execute(node_ids.INFRA_VALIDATOR, outputs={"blessing": _blessed(0)})
    assert run_summary.gate_failures(_read(store)) == [
        {"gate": node_ids.INFRA_VALIDATOR, "reason": "the model did not serve"}]


def test_a_run_that_raised_after_the_anomalies_gate_failed_is_anomalies(store):
    store.new_run("run-1")
    store.execute(node_ids.ANOMALIES_GATE, state=FAILED)
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    run_summary.conclude(summary, _read(store), [node_ids.ANOMALIES_GATE],
                         RuntimeError("anomalies"), 1.0)
    assert (summary["status"], summary["exit_code"]) == (run_summary.ANOMALIES,
                                                         exit_codes.ANOMALIES)
    assert [(c["id"], c["status"]) for c in summary["components"]] == [
        (node_ids.ANOMALIES_GATE, "failed")]


def test_a_run_that_raised_anywhere_else_failed(store):
    store.new_run("run-1")
    store.execute(node_ids.ANOMALIES_GATE)
    store.execute(node_ids.TRAINER, state=FAILED)
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    run_summary.conclude(summary, _read(store), [], ValueError("boom"), 1.0)
    assert (summary["status"], summary["exit_code"]) == (run_summary.FAILED, exit_codes.FAILED)


def test_a_run_that_raised_even_with_a_pushed_model_failed(store):
    """An error is never reported as success, whatever the record holds."""
    store.new_run("run-1")
    _gates(store, evaluator=1, infra=1, pushed=_pushed(7))
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    run_summary.conclude(summary, _read(store), [], OSError("disk full"), 1.0)
    assert summary["status"] == run_summary.FAILED


def test_the_baseline_is_the_version_dir_the_lookup_read(store):
    store.new_run("run-1")
    store.execute(node_ids.EVALUATOR, inputs={"baseline_model": {
        artifact_properties.BASELINE_FOUND: 1,
        artifact_properties.SOURCE_VERSION_DIR: "/serving/41"}})
    assert run_summary.describe(_read(store), [])["baseline_model"] == "/serving/41"


def test_no_baseline_when_nothing_was_served(store):
    store.new_run("run-1")
    store.execute(node_ids.EVALUATOR, inputs={"baseline_model": {
        artifact_properties.BASELINE_FOUND: 0}})
    assert run_summary.describe(_read(store), [])["baseline_model"] is None


def test_an_input_error_names_its_columns_or_the_whole_file():
    summary = run_summary.start("bad.csv", datetime.datetime.now(datetime.timezone.utc))
    run_summary.input_error(summary, InputError("bad.csv: missing age", ("age",)), 0.25)
    assert summary["status"] == run_summary.INPUT_ERROR
    assert summary["exit_code"] == exit_codes.INPUT
    assert summary["anomalies"] == [{"feature": "age", "description": "bad.csv: missing age"}]
    run_summary.input_error(summary, InputError("bad.csv: file is empty"), 0.25)
    assert [a["feature"] for a in summary["anomalies"]] == ["(file)"]


def test_every_status_has_its_documented_exit_code():
    assert run_summary.EXIT_CODES == {
        "pushed": 0, "not_blessed": 4, "anomalies": 3, "input_error": 2, "failed": 1}


def test_the_summary_is_written_whole(tmp_path):
    summary = run_summary.start("data.csv", datetime.datetime.now(datetime.timezone.utc))
    path = run_summary.write(tmp_path / "out", summary)
    assert json.loads(path.read_text()) == summary
    assert sorted(p.name for p in path.parent.iterdir()) == [run_summary.SUMMARY_FILE]


@pytest.mark.parametrize(("band", "label"), [(0, "<26"), (1, "26-35"), (4, "56+"), (9, "56+")])
def test_age_bands_have_readable_names(band, label):
    assert run_summary.age_band_label(band) == label
