"""A run on Kubeflow Pipelines as a person reads it, without the UI: ``tfxkfp runs``.

Two sources, each for what only it knows:

- KFP's API: the run (name, state, times) and its tasks. Its task list is Argo's node tree
  (the pipeline's DAG, each task's DAG node, and their ``-driver`` and ``executor`` pods);
  a task is the DAG node named after the pipeline's node id, with the state the KFP UI shows.
  Tasks Argo omitted after a failed one have no state there: they are reported SKIPPED. KFP
  2.16.1 records no error for a failed task, so the report names where its log is (the
  launcher's ``executor-logs`` artifact) and the pod that ran it. The DAG node's times are
  Argo's, which close a node at its next pass over the workflow, often seconds late.
- ML Metadata: what each task wrote. KFP's launcher records an execution per task in the run's
  ``system.PipelineRun`` context (custom property ``task_name``: the node id) and every output
  artifact with the metadata the executor set, which TFX's executors and this project's use for
  the verdicts (``pipeline.artifact_properties``): the Evaluator's ``blessed``, its metrics and
  failed thresholds, the baseline it was given, the InfraValidator's verdict and reason, the
  version the Pusher published, and the anomalies ExampleValidator found. A task taken from
  KFP's cache has an execution in state CACHED.

A task's start and duration are those of its executor: the launcher reports to the API server
a task of its own, under the ML Metadata execution's id, from the moment it starts the step's
command to the moment it records the outcome. A task without one (taken from the cache, run
with caching off, which the launcher then does not report, or stopped before it ran) keeps
its DAG node's times.

``read_run`` returns a dict shaped like the kfp CLI's run (``run_id``, ``display_name``,
``state``, ``created_at``, ``finished_at``, and ``tasks`` with ``display_name``, ``state``,
``start_time``, ``end_time``), plus what this pipeline's gates decided.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import artifact_properties, node_ids
from pipeline.errors import InputError
from pipeline.runners.kubeflow.client import checked_host, connect
from pipeline.runners.kubeflow.errors import KfpUnreachableError, kfp_errors

# Task states (KFP's RuntimeState names), and CACHED for a task KFP's cache answered.
CACHED, SKIPPED = "CACHED", "SKIPPED"
FINAL_TASK_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", SKIPPED, CACHED})
_UNSPECIFIED = "RUNTIME_STATE_UNSPECIFIED"
_NO_TIME = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)
_TASK_NODES = frozenset(
    value for name, value in vars(node_ids).items() if name.isupper() and isinstance(value, str))
_PIPELINE_RUN_CONTEXT = "system.PipelineRun"
_MLMD_SECONDS = 30


def _time(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC; None for KFP's unset times (the epoch, or year 1)."""
    if value is None or value < _NO_TIME:
        return None
    return value.astimezone(datetime.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _seconds(start: datetime.datetime | None, end: datetime.datetime | None) -> float | None:
    if _time(start) is None or _time(end) is None:
        return None
    return round((end - start).total_seconds(), 1)


def metadata_address(address: str) -> tuple[str, int]:
    """``host:port`` of ML Metadata's gRPC service; ``InputError`` otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"ML Metadata address {address!r} is not host:port")
    return host, int(port)


def metadata_store_at(address: str) -> metadata_store.MetadataStore:
    """A client of ML Metadata's gRPC service at ``host:port``."""
    host, port = metadata_address(address)
    config = metadata_store_pb2.MetadataStoreClientConfig(host=host, port=port)
    config.client_timeout_sec = _MLMD_SECONDS
    return metadata_store.MetadataStore(config)


def _value(value: metadata_store_pb2.Value) -> Any:
    """A custom property as Python: KFP records numbers as doubles, TFX JSON as a struct."""
    kind = value.WhichOneof("value")
    if kind == "struct_value":
        decoded = json_format.MessageToDict(value.struct_value)
        # TFX wraps a JSON value in a one-key struct ({"list": [...]}, {"struct": {...}}).
        return next(iter(decoded.values())) if len(decoded) == 1 else decoded
    if kind == "double_value" and value.double_value.is_integer():
        return int(value.double_value)
    return getattr(value, kind) if kind else None


def _properties(artifact: metadata_store_pb2.Artifact) -> dict[str, Any]:
    return {key: _value(value) for key, value in artifact.custom_properties.items()}


def _artifacts_by_task(store: metadata_store.MetadataStore, run_id: str
                       ) -> dict[str, dict[str, Any]]:
    """Per task name: its execution's state, and its input and output artifacts' properties."""
    context = store.get_context_by_type_and_name(_PIPELINE_RUN_CONTEXT, run_id)
    if context is None:
        return {}
    tasks: dict[str, dict[str, Any]] = {}
    executions = store.get_executions_by_context(context.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id({e.artifact_id for e in events})}
    for execution in executions:
        name = execution.custom_properties["task_name"].string_value \
            if "task_name" in execution.custom_properties else ""
        if name not in _TASK_NODES:
            continue
        record = tasks.setdefault(name, {"inputs": {}, "outputs": {}})
        record["state"] = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        record["execution_id"] = execution.id
        record["pod_name"] = _value(execution.custom_properties["pod_name"]) \
            if "pod_name" in execution.custom_properties else None
        for event in (e for e in events if e.execution_id == execution.id):
            direction = "inputs" if event.type == metadata_store_pb2.Event.INPUT else "outputs"
            artifact = artifacts[event.artifact_id]
            for step in event.path.steps:
                if step.HasField("key"):
                    record[direction][step.key] = {"uri": artifact.uri, **_properties(artifact)}
    return tasks


def _tasks(run, executions: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline's tasks in the order they started; CACHED where KFP's cache answered,
    SKIPPED where an ended run never started them."""
    run_ended = run.state in FINAL_TASK_STATES
    found = []
    details = run.run_details.task_details or [] if run.run_details else []
    # int64 ids travel as JSON strings.
    by_execution = {int(detail.execution_id): detail for detail in details
                    if detail.execution_id}
    for task in details:
        if task.display_name not in _TASK_NODES:
            continue
        state = task.state or _UNSPECIFIED
        execution = executions.get(task.display_name, {})
        if execution.get("state") == CACHED:
            state = CACHED
        elif state == _UNSPECIFIED and not execution and run_ended:
            # Argo omits the tasks after a failed one; KFP reports them without a state.
            state = SKIPPED
        executor = by_execution.get(execution.get("execution_id"), task)
        start, end = executor.start_time, executor.end_time
        ran = state in FINAL_TASK_STATES and state != SKIPPED
        error = task.error.message if task.error and task.error.message else None
        found.append({
            "display_name": task.display_name,
            "state": state,
            "start_time": _time(start) if state != SKIPPED else None,
            "end_time": _time(end) if ran else None,
            "seconds": _seconds(start, end) if ran else None,
            "pod_name": execution.get("pod_name"),
            "error": error,
        })
    return sorted(found, key=lambda task: (task["start_time"] or "~", task["display_name"]))


def _output(executions: Mapping[str, Mapping[str, Any]], task: str, key: str
            ) -> dict[str, Any]:
    return executions.get(task, {}).get("outputs", {}).get(key, {})


def _blessed(properties: Mapping[str, Any]) -> bool | None:
    value = properties.get(artifact_properties.BLESSED)
    return None if value is None else value == 1


def _verdicts(executions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the gates decided, from the artifacts' properties (module docstring)."""
    evaluation = _output(executions, node_ids.EVALUATOR, "evaluation")
    blessing = _output(executions, node_ids.EVALUATOR, "blessing")
    baseline = executions.get(node_ids.EVALUATOR, {}).get("inputs", {}).get("baseline_model", {})
    infra = _output(executions, node_ids.INFRA_VALIDATOR, "blessing")
    pushed = _output(executions, node_ids.PUSHER, "pushed_model")
    anomalies = _output(executions, node_ids.EXAMPLE_VALIDATOR, "anomalies")
    failures = blessing.get(artifact_properties.EVALUATOR_FAILURES)
    found_baseline = baseline.get(artifact_properties.BASELINE_FOUND) == 1
    metrics = {name: evaluation[name] for name in ("auc", "binary_accuracy", "example_count")
               if name in evaluation}
    return {
        "evaluator": None if not blessing else {
            "blessed": _blessed(blessing),
            "metrics": metrics,
            "baseline": baseline.get(artifact_properties.SOURCE_VERSION_DIR) or baseline.get("uri")
            if found_baseline else None,
            "failures": failures.splitlines() if failures else [],
        },
        "infra_validator": None if not infra else {
            "blessed": _blessed(infra),
            "reason": infra.get(artifact_properties.INFRA_REASON) or None,
        },
        "pushed": None if pushed.get(artifact_properties.PUSHED) != 1 else {
            "version": int(pushed[artifact_properties.PUSHED_VERSION]),
            "path": pushed.get(artifact_properties.PUSHED_DESTINATION),
        },
        "not_pushed": pushed.get(artifact_properties.NOT_PUSHED_REASON) or None,
        "anomalies": anomalies.get(artifact_properties.ANOMALIES) or [],
    }


def read_run(host: str, run_id: str, store: metadata_store.MetadataStore, *,
             token: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """The run ``run_id`` with its tasks and verdicts (module docstring), from KFP at ``host``
    and the ML Metadata ``store`` of that installation (``metadata_store_at``)."""
    host = checked_host(host)
    client = connect(host, token, namespace)
    with kfp_errors(host, f"report run {run_id}"):
        run = client.get_run(run_id)
    try:
        executions = _artifacts_by_task(store, run_id)
    except mlmd_errors.UnavailableError as error:
        raise KfpUnreachableError(
            f"cannot reach ML Metadata: {str(error).splitlines()[0]}") from None
    tasks = _tasks(run, executions)
    failed = [task for task in tasks if task["state"] == "FAILED"]
    # Where each task's log is kept: KFP's launcher uploads it as the task's executor-logs.
    logs = {name: record["outputs"]["executor-logs"]["uri"] for name, record in executions.items()
            if "executor-logs" in record["outputs"]}
    return {
        "run_id": run.run_id,
        "display_name": run.display_name,
        "experiment_id": run.experiment_id,
        "state": run.state,
        "created_at": _time(run.created_at),
        "finished_at": _time(run.finished_at),
        "seconds": _seconds(run.created_at, run.finished_at),
        "url": f"{host}/#/runs/details/{run.run_id}",
        "error": run.error.message if run.error and run.error.message else None,
        "tasks": tasks,
        "failed_tasks": [task["display_name"] for task in failed],
        "logs": logs,
        **_verdicts(executions),
    }


def list_runs(host: str, *, token: str | None = None, namespace: str | None = None,
              page_size: int = 20) -> list[dict[str, Any]]:
    """The newest runs first: id, name, state, creation time and duration."""
    host = checked_host(host)
    client = connect(host, token, namespace)
    with kfp_errors(host, "list runs"):
        response = client.list_runs(page_size=page_size, sort_by="created_at desc",
                                    namespace=namespace)
    return [{
        "run_id": run.run_id,
        "display_name": run.display_name,
        "state": run.state,
        "created_at": _time(run.created_at),
        "seconds": _seconds(run.created_at, run.finished_at),
    } for run in response.runs or []]


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def format_run(report: Mapping[str, Any]) -> str:
    """The report as a person reads it in a terminal."""
    lines = [f"run {report['run_id']}  {report['display_name']!r}  {report['state']}  "
             f"created {report['created_at']}  took {_duration(report['seconds'])}",
             f"  {report['url']}"]
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    width = max((len(task["display_name"]) for task in report["tasks"]), default=4)
    lines.append(f"  {'TASK':<{width}}  {'STATE':<10} {'STARTED':<20}  DURATION")
    for task in report["tasks"]:
        lines.append(f"  {task['display_name']:<{width}}  {task['state']:<10} "
                     f"{task['start_time'] or '-':<20}  {_duration(task['seconds'])}")
        if task["error"]:
            lines.append(f"  {'':<{width}}  error: {task['error']}")
    for failed in report["failed_tasks"]:
        [task] = [task for task in report["tasks"] if task["display_name"] == failed]
        lines.append(f"failed at {failed}: its log is {report['logs'].get(failed, 'not kept')}"
                     + (f" (pod {task['pod_name']})" if task["pod_name"] else ""))
    if report["anomalies"]:
        lines.append("anomalies:")
        lines += [f"  {item['feature']}: {item['description']}" for item in report["anomalies"]]
    evaluator = report["evaluator"]
    if evaluator:
        verdict = "blessed" if evaluator["blessed"] else "not blessed"
        metrics = "  ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                            for name, value in evaluator["metrics"].items())
        lines.append(f"Evaluator: {verdict}  {metrics}")
        lines.append(f"  baseline: {evaluator['baseline'] or 'none (nothing served yet)'}")
        lines += [f"  {failure}" for failure in evaluator["failures"]]
    infra = report["infra_validator"]
    if infra:
        lines.append(f"InfraValidator: {'blessed' if infra['blessed'] else 'not blessed'}"
                     + (f": {infra['reason']}" if infra["reason"] else ""))
    if report["pushed"]:
        served = evaluator and evaluator["baseline"] == report["pushed"]["path"]
        lines.append(f"Pusher: version {report['pushed']['version']} at "
                     f"{report['pushed']['path']}"
                     + (" (already served: the model is identical to it)" if served else ""))
    elif report["not_pushed"]:
        lines.append(f"Pusher: nothing pushed: {report['not_pushed']}")
    return "\n".join(lines)


def format_runs(runs: list[Mapping[str, Any]]) -> str:
    lines = [f"{'RUN ID':<36}  {'STATE':<10} {'CREATED':<20}  {'DURATION':>8}  NAME"]
    lines += [f"{run['run_id']:<36}  {run['state']:<10} {run['created_at'] or '-':<20}  "
              f"{_duration(run['seconds']):>8}  {run['display_name']}" for run in runs]
    return "\n".join(lines)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
