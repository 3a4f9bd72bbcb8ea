"""Starts a run of a compiled pipeline spec on Kubeflow Pipelines 2.x, and follows it.

Nothing here prints; ``submit`` reports progress through an optional callback. Its
experiment and ``--wait`` timeout defaults are the CLI's too, so both live in ``config.py``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import DEFAULT_EXPERIMENT, DEFAULT_RUN_TIMEOUT_SECONDS
from pipeline.runners.kubeflow.client import (
    Client,
    checked_host,
    connect,
    experiment_id,
    quiet,
)
from pipeline.runners.kubeflow.errors import RunFailedError, kfp_errors
from pipeline.runners.kubeflow.spec_file import load_pipeline_spec, typed_params

# How often a followed run's state is read: a TFX step takes minutes, not seconds.
DEFAULT_POLL_SECONDS = 10.0

# RuntimeState values a run does not leave (backend/api/v2beta1/run.proto). PAUSED is
# resumable and CANCELING still ends in one of these, so neither is final.
FINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})
_UNSPECIFIED_STATE = "RUNTIME_STATE_UNSPECIFIED"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    run_url: str
    state: str  # the run's last known RuntimeState name


def submit(
    spec_path: str | Path,
    host: str,
    *,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    params: dict[str, str] | None = None,
    token: str | None = None,
    wait: bool = False,
    timeout_seconds: float = DEFAULT_RUN_TIMEOUT_SECONDS,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    progress: Progress | None = None,
) -> SubmittedRun:
    """Creates a run of the spec in ``experiment`` (created if missing).

    The run's pipeline root is the spec's ``defaultPipelineRoot``: KFP 2.x's backend reads
    the root only from the run's runtime config, else from its ``kfp-launcher`` ConfigMap
    (apiserver api_converter.go, driver root_dag.go), never from the spec.

    With ``wait`` the run is followed until it ends; anything but SUCCEEDED, or still
    running after ``timeout_seconds``, raises ``RunFailedError``. ``token`` is sent as a
    bearer token; without one, ``kfp.Client`` applies its own default credentials.
    """
    report = progress or (lambda line: None)
    host = checked_host(host)
    spec = load_pipeline_spec(spec_path)
    values = typed_params(spec, params or {}, spec_path)
    name = run_name or f"{spec['pipelineInfo']['name']} {_utc_stamp()}"
    client = connect(host, token, namespace)
    experiment_key = experiment_id(client, host, experiment, namespace)
    with kfp_errors(host, f"create run {name!r}"), quiet():
        run = client.run_pipeline(
            experiment_id=experiment_key,
            job_name=name,
            pipeline_package_path=str(spec_path),
            params=values,
            pipeline_root=spec.get("defaultPipelineRoot"),
        )
    run_url = f"{host}/#/runs/details/{run.run_id}"
    state = run.state or _UNSPECIFIED_STATE
    report(f"run {name!r} created in experiment {experiment!r}: {run_url}")
    if wait:
        state = _follow(client, host, run.run_id, name, run_url,
                        timeout_seconds, poll_seconds, report)
    return SubmittedRun(run_id=run.run_id, run_url=run_url, state=state)


def _follow(
    client: Client,
    host: str,
    run_id: str,
    name: str,
    run_url: str,
    timeout_seconds: float,
    poll_seconds: float,
    report: Progress,
) -> str:
    """Polls the run until a final state; its own loop, as kfp's misses CANCELED."""
    deadline = time.monotonic() + timeout_seconds
    last_state = None
    while True:
        with kfp_errors(host, f"report run {run_id}"):
            state = client.get_run(run_id).state or _UNSPECIFIED_STATE
        if state != last_state:
            report(f"run {run_id}: {state}")
            last_state = state
        if state in FINAL_RUN_STATES:
            if state != "SUCCEEDED":
                raise RunFailedError(
                    f"run {name!r} ({run_id}) ended {state}: {run_url}",
                    run_id=run_id, state=state, run_url=run_url,
                )
            return state
        if time.monotonic() >= deadline:
            raise RunFailedError(
                f"run {name!r} ({run_id}) is still {state} after {timeout_seconds:g} s: {run_url}",
                run_id=run_id, state=state, run_url=run_url,
            )
        time.sleep(poll_seconds)


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H-%M-%S")
