"""`tfxkfp runs show` and `runs list` on runs a real KFP 2.16.1 made on the local cluster.

The fixtures under kfp_runs/ were recorded from the local cluster by capture_kfp_run.py: the
API server's answer for the run, served again by the fake KFP API server, and the run's ML
Metadata, written into a real ML Metadata store (SQLite) with ml-metadata's own API. The
cluster tier (tests/cluster/test_kfp_runs.py) reads live runs with the same code.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.cli import main
from pipeline.runners.kubeflow import run_report

RUNS = Path(__file__).parent / "kfp_runs"
# The first run of the pipeline on a fresh installation, tuned, on the real data; and the
# first on another, on the real data with one user 150 years old.
FIRST_RUN = RUNS / "first-run.json"
FAULTY_RUN = RUNS / "faulty-data.json"
MLMD_STANDIN = Path(__file__).parents[1] / "standins" / "mlmd_server" / "ml_metadata_standin.py"


def _parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _load_metadata(recorded: dict, path: Path) -> metadata_store.MetadataStore:
    """A SQLite store holding the recorded run's metadata, ids mapped to the ones it assigns."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    store = metadata_store.MetadataStore(config)

    def parse(message, cls):
        return json_format.ParseDict(message, cls(), ignore_unknown_fields=True)

    type_ids = {}
    for kind, cls, put in (
            ("artifact_types", metadata_store_pb2.ArtifactType, store.put_artifact_type),
            ("execution_types", metadata_store_pb2.ExecutionType, store.put_execution_type)):
        for message in recorded[kind]:
            recorded_type = parse(message, cls)
            old = recorded_type.id
            recorded_type.ClearField("id")
            type_ids[kind, old] = put(recorded_type)
    context_type = parse(recorded["context_type"], metadata_store_pb2.ContextType)
    context_type.ClearField("id")
    context = parse(recorded["context"], metadata_store_pb2.Context)
    context.ClearField("id")
    context.type_id = store.put_context_type(context_type)
    [context_id] = store.put_contexts([context])

    def put_all(kind, cls, types, put):
        items = sorted((parse(message, cls) for message in recorded[kind]),
                       key=lambda item: item.id)
        old_ids = [item.id for item in items]
        for item in items:
            item.ClearField("id")
            item.type_id = type_ids[types, item.type_id]
        return dict(zip(old_ids, put(items), strict=True))

    artifact_ids = put_all("artifacts", metadata_store_pb2.Artifact, "artifact_types",
                           store.put_artifacts)
    execution_ids = put_all("executions", metadata_store_pb2.Execution, "execution_types",
                            store.put_executions)
    # The recorded run is KFP's first on its installation, and KFP's task list names
    # executions by id: the new store must give them the same ids.
    assert all(old == new for old, new in execution_ids.items()), execution_ids
    events = [parse(message, metadata_store_pb2.Event) for message in recorded["events"]]
    for event in events:
        event.artifact_id = artifact_ids[event.artifact_id]
        event.execution_id = execution_ids[event.execution_id]
    store.put_events(events)
    store.put_attributions_and_associations(
        [metadata_store_pb2.Attribution(context_id=context_id, artifact_id=artifact_id)
         for artifact_id in artifact_ids.values()],
        [metadata_store_pb2.Association(context_id=context_id, execution_id=execution_id)
         for execution_id in execution_ids.values()])
    return store


def _serve(path: Path, kfp_server, tmp_path) -> tuple[dict, metadata_store.MetadataStore]:
    """The recorded run from the fake API server, and its metadata in a store."""
    recorded = json.loads(path.read_text())
    kfp_server.runs[recorded["run"]["run_id"]] = recorded["run"]
    return recorded["run"], _load_metadata(recorded["metadata"], tmp_path / "metadata.sqlite")


@pytest.fixture
def first_run(tmp_path, kfp_server) -> tuple[dict, metadata_store.MetadataStore]:
    return _serve(FIRST_RUN, kfp_server, tmp_path)


def test_every_task_with_its_state_start_and_duration(first_run, kfp_server):
    run, store = first_run
    report = run_report.read_run(kfp_server.url, run["run_id"], store)
    assert report["state"] == "SUCCEEDED" and report["run_id"] == run["run_id"]
    names = [task["display_name"] for task in report["tasks"]]
    # The pipeline's tasks only, not Argo's driver and executor pods or the root DAG.
    assert sorted(names) == sorted({
        "CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
        "AnomaliesGate", "Transform", "Tuner", "Trainer", "LatestServedModel", "Evaluator",
        "InfraValidator", "Pusher", "BulkInferrer", "PredictionsExport"})
    starts = [task["start_time"] for task in report["tasks"]]
    assert starts == sorted(starts)  # in the order they started
    for task in report["tasks"]:
        assert task["state"] == "SUCCEEDED" and task["error"] is None
        assert task["end_time"] > task["start_time"] and task["seconds"] > 0
    # The executor's own time, which the launcher reported: not its DAG node's, which Argo
    # closes at its next pass, often a minute later.
    [tuner] = [task for task in report["tasks"] if task["display_name"] == "Tuner"]
    recorded = {d.get("display_name"): d for d in run["run_details"]["task_details"]}
    assert tuner["seconds"] < (_parse(recorded["Tuner"]["end_time"])
                               - _parse(recorded["Tuner"]["start_time"])).total_seconds()
    assert report["seconds"] >= sum(task["seconds"] for task in report["tasks"]
                                    if task["display_name"] in ("Tuner", "Trainer"))


def test_the_evaluator_s_verdict_and_the_pushed_version(first_run, kfp_server):
    run, store = first_run
    report = run_report.read_run(kfp_server.url, run["run_id"], store)
    evaluator = report["evaluator"]
    assert evaluator["blessed"] is True and evaluator["failures"] == []
    assert evaluator["baseline"] is None  # the first run: nothing was served
    assert set(evaluator["metrics"]) == {"auc", "binary_accuracy", "example_count"}
    assert 0.85 <= evaluator["metrics"]["auc"] <= 1
    assert isinstance(evaluator["metrics"]["example_count"], int)
    assert report["infra_validator"] == {"blessed": True, "reason": None}
    version = report["pushed"]["version"]
    assert report["pushed"]["path"] == f"/tfx/serving/social_network_ads/{version}"
    assert report["anomalies"] == [] and report["failed_tasks"] == []
    assert report["logs"]["Trainer"].startswith("s3://mlpipeline/v2/artifacts/")


@pytest.fixture
def metadata_service(first_run, tmp_path) -> Iterator[str]:
    """The recorded store behind ML Metadata's gRPC service (the local cluster's stand-in,
    tests/standins/mlmd_server, which hands each call to the same library): its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "server_config.pbtxt"
    database = tmp_path / "metadata.sqlite"
    config.write_text(f'connection_config {{ sqlite {{ filename_uri: "{database}" }} }}\n')
    with (tmp_path / "mlmd.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, str(MLMD_STANDIN), f"--grpc_port={port}",
                                   f"--metadata_store_server_config_file={config}"],
                                  stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert server.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "mlmd.log").read_text()
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def test_show_prints_the_run_as_text_and_as_json(first_run, kfp_server, metadata_service,
                                                 capsys):
    run, store = first_run
    args = ["runs", "show", run["run_id"], "--host", kfp_server.url,
            "--metadata-grpc", metadata_service]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"run {run['run_id']}" in text and "SUCCEEDED" in text
    assert "Evaluator: blessed  auc 0.939382" in text
    assert "baseline: none (nothing served yet)" in text
    assert main([*args, "--output", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == run_report.read_run(kfp_server.url, run["run_id"], store)


def test_list_shows_the_newest_runs(first_run, kfp_server, capsys):
    run, _ = first_run
    assert main(["runs", "list", "--host", kfp_server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "ID", "STATE", "CREATED", "DURATION", "NAME"]
    assert lines[1].startswith(run["run_id"]) and "SUCCEEDED" in lines[1]


def test_a_bad_metadata_address_is_an_input_error(kfp_server, capsys):
    assert main(["runs", "show", "x", "--host", kfp_server.url, "--metadata-grpc", "nowhere"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: ML Metadata address 'nowhere' is not host:port"


def test_a_run_stopped_at_the_gate_names_the_gate_the_anomaly_and_the_log(
        kfp_server, tmp_path):
    run, store = _serve(FAULTY_RUN, kfp_server, tmp_path)
    report = run_report.read_run(kfp_server.url, run["run_id"], store)
    assert report["state"] == "FAILED" and report["failed_tasks"] == ["AnomaliesGate"]
    states = {task["display_name"]: task["state"] for task in report["tasks"]}
    ran = {"CsvExampleGen", "ImportSchemaGen", "LatestServedModel", "StatisticsGen",
           "SchemaGen", "ExampleValidator"}
    assert {name for name, state in states.items() if state == "SUCCEEDED"} == ran
    # Argo never started what comes after the gate; KFP leaves those states unset.
    skipped = [task for task in report["tasks"] if task["state"] == "SKIPPED"]
    assert {task["display_name"] for task in skipped} == {
        "Transform", "Tuner", "Trainer", "Evaluator", "InfraValidator", "Pusher",
        "BulkInferrer", "PredictionsExport"}
    assert all(task["start_time"] is None and task["seconds"] is None for task in skipped)
    assert report["anomalies"] == [{"feature": "age", "description":
                                    "eval: Out-of-range values: Unexpectedly large value: 150."}]
    assert report["evaluator"] is None and report["pushed"] is None
    [gate] = [task for task in report["tasks"] if task["display_name"] == "AnomaliesGate"]
    assert gate["pod_name"].startswith("social-network-ads-")
    text = run_report.format_run(report)
    assert f"failed at AnomaliesGate: its log is {report['logs']['AnomaliesGate']}" in text
    assert "  age: eval: Out-of-range values" in text
