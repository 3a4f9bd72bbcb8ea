"""Recurring runs (KFP's schedules) of a compiled pipeline spec: create, list, delete.

Continuous training on Kubeflow Pipelines 2.x: the API server starts the runs, so nothing
here stays running. A schedule is checked (cron, concurrency, name, spec, parameters)
before any request is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_EXPERIMENT, DEFAULT_MAX_CONCURRENCY
from pipeline.runners.kubeflow.client import checked_host, connect, experiment_id
from pipeline.runners.kubeflow.cron import checked_cron
from pipeline.runners.kubeflow.errors import ScheduleError, kfp_errors
from pipeline.runners.kubeflow.spec_file import load_pipeline_spec, typed_params

# The API server refuses other values (apiserver/server/api_converter.go, KFP 2.4).
_MAX_CONCURRENCY_RANGE = range(1, 11)
_LIST_PAGE_SIZE = 100


def create_schedule(
    spec_path: str | Path,
    host: str,
    *,
    cron: str,
    name: str,
    experiment: str = DEFAULT_EXPERIMENT,
    params: dict[str, str] | None = None,
    namespace: str | None = None,
    token: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> str:
    """Creates an enabled recurring run of the spec; returns its id.

    ``cron`` has KFP's six fields (second first). Missed runs are not caught up
    (``no_catchup``): a schedule re-enabled after a pause trains once on the latest data
    instead of replaying every missed interval.
    """
    host = checked_host(host)
    cron = checked_cron(cron)
    if max_concurrency not in _MAX_CONCURRENCY_RANGE:
        raise ScheduleError(f"max concurrency must be 1 to 10, got {max_concurrency}")
    if not name.strip():
        raise ScheduleError("the schedule needs a name")
    spec = load_pipeline_spec(spec_path)
    values = typed_params(spec, params or {}, spec_path)
    client = connect(host, token, namespace)
    experiment_key = experiment_id(client, host, experiment, namespace)
    with kfp_errors(host, f"create schedule {name!r}"):
        recurring_run = client.create_recurring_run(
            experiment_id=experiment_key,
            job_name=name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=values,
            pipeline_package_path=str(spec_path),
            enabled=True,
            pipeline_root=spec.get("defaultPipelineRoot"),
        )
    return recurring_run.recurring_run_id


def list_schedules(
    host: str, *, namespace: str | None = None, token: str | None = None
) -> list[dict[str, Any]]:
    """Every recurring run (all pages): id, name, cron (None if periodic), status, enabled."""
    host = checked_host(host)
    client = connect(host, token, namespace)
    schedules: list[dict[str, Any]] = []
    page_token = ""
    while True:
        with kfp_errors(host, "list schedules"):
            page = client.list_recurring_runs(
                page_token=page_token, page_size=_LIST_PAGE_SIZE, namespace=namespace
            )
        for recurring_run in page.recurring_runs or []:
            trigger = recurring_run.trigger
            cron_schedule = trigger.cron_schedule if trigger else None
            status = recurring_run.status or "STATUS_UNSPECIFIED"
            schedules.append({
                "id": recurring_run.recurring_run_id,
                "name": recurring_run.display_name,
                "cron": cron_schedule.cron if cron_schedule else None,
                "status": status,
                "enabled": status == "ENABLED",
            })
        page_token = page.next_page_token
        if not page_token:
            return schedules


def delete_schedule(host: str, schedule_id: str, *, token: str | None = None) -> None:
    """Deletes a recurring run by id; nothing more is scheduled from it."""
    host = checked_host(host)
    if not schedule_id.strip():
        raise ScheduleError("the schedule id is empty")
    client = connect(host, token, None)
    with kfp_errors(host, f"delete schedule {schedule_id!r}"):
        client.delete_recurring_run(recurring_run_id=schedule_id)
