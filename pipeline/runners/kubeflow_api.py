"""Sends a compiled pipeline spec to a Kubeflow Pipelines 2.x API server, and follows the run.

Compiling (``runners/kubeflow.py``) needs no cluster; everything here does, and talks to it
only through the ``kfp`` SDK client (v2beta1 REST API). Every failure surfaces as a
``KfpError`` whose ``str()`` is one line naming the host or the file and whose ``exit_code``
follows DESIGN.md: 2 for bad input (caught before any request is sent), 1 for the rest.
Nothing here prints; ``submit`` reports progress through an optional callback.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import urllib3
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

DEFAULT_EXPERIMENT = "social-network-ads"
DEFAULT_POLL_SECONDS = 10.0

# RuntimeState values a run does not leave (backend/api/v2beta1/run.proto). PAUSED is
# resumable and CANCELING still ends in one of these, so neither is final.
FINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})
_UNSPECIFIED_STATE = "RUNTIME_STATE_UNSPECIFIED"

# The API server refuses other values (apiserver/server/api_converter.go, KFP 2.4).
_MAX_CONCURRENCY_RANGE = range(1, 11)
_LIST_PAGE_SIZE = 100
_SPEC_SUFFIXES = (".yaml", ".yml")
_HOST = re.compile(r"^https?://\S+$")
_URLLIB3_POOL_LOG = logging.getLogger("urllib3.connectionpool")

# KFP parses schedules with robfig/cron v1 (cron.Parse): second minute hour day-of-month
# month day-of-week, with these bounds and names. Its parser also takes five fields, which
# it reads as second..month; requiring six stops '0 3 * * *' meaning "hourly at :03".
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_WEEKDAYS = {name: number for number, name in enumerate(
    ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_CRON_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _WEEKDAYS),
)

Progress = Callable[[str], None]


class KfpError(Exception):
    """A pipeline-service failure the CLI reports as one line; ``exit_code`` per DESIGN.md."""

    exit_code = 1


class InputError(KfpError):
    """Bad input found before any request was sent (the CLI's usage/input exit code)."""

    exit_code = 2


class SpecError(InputError):
    """The pipeline spec file is missing, unreadable, or not a pipeline spec."""


class ParamError(InputError):
    """A ``--param`` that is malformed or that the pipeline does not take."""


class ScheduleError(InputError):
    """A schedule the API server would refuse or misread (cron, concurrency, name)."""


class KfpUnreachableError(KfpError):
    """No KFP API server answered at the host."""


class KfpAuthError(KfpError):
    """The server (or the auth proxy in front of it) refused the credentials."""


class KfpApiError(KfpError):
    """The API server answered, but refused the request."""


class RunFailedError(KfpError):
    """A followed run ended in, or was still in, a state other than SUCCEEDED."""

    def __init__(self, message: str, *, run_id: str, state: str, run_url: str):
        super().__init__(message)
        self.run_id = run_id
        self.state = state
        self.run_url = run_url


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    run_url: str
    state: str  # the run's last known RuntimeState name


class _NotKfpServer(Exception):
    """The health check got a 200 that was not the KFP API server's answer."""


class _Client(kfp.Client):
    """``kfp.Client`` whose health check is a single request.

    ``kfp.Client()`` checks ``/apis/v2beta1/healthz`` while it is constructed (unless it
    already knows a namespace) and retries any HTTP error five times 5 s apart, logging a
    traceback each time, then raises ``TimeoutError``: a 401 from an auth proxy would take
    25 s and lose its status. One request keeps the real error. A 200 without ``multi_user``
    (which the API server always sends) is an auth proxy's login page or another service;
    the generated client would otherwise read it as an empty answer and carry on.
    """

    healthy = False

    def get_kfp_healthz(self, sleep_duration: int = 5) -> kfp_server_api.V2beta1GetHealthzResponse:
        response = self.healthzs.healthz_service_get_healthz()
        if response.multi_user is None:
            raise _NotKfpServer
        self.healthy = True
        return response


def parse_params(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``--param`` flags; a value may itself contain '='."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamError(f"--param {item!r} is not key=value")
        if not key.strip():
            raise ParamError(f"--param {item!r} has an empty key")
        if key in params:
            raise ParamError(f"--param {key!r} is given more than once")
        params[key] = value
    return params


def typed_params(
    pipeline_spec: Mapping[str, Any], params: Mapping[str, str], spec_path: str | Path
) -> dict[str, Any]:
    """Converts string values to the types the pipeline declares for its parameters.

    The client sends parameter values as they are given, and the backend would receive
    ``"5"`` for an integer parameter; the UI converts by declared type, and so does this.
    Reads both ``parameterType`` (schema 2.1) and the older ``type`` (INT/DOUBLE/STRING).
    """
    declared = pipeline_spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    typed: dict[str, Any] = {}
    for name, text in params.items():
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            raise ParamError(
                f"{spec_path}: the pipeline has no parameter {name!r} (it takes: {takes})"
            )
        kind = declared[name].get("parameterType") or declared[name].get("type", "STRING")
        typed[name] = _typed_value(name, text, kind)
    return typed


def _typed_value(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "STRING":
            return text
        if kind in ("NUMBER_INTEGER", "INT"):
            return int(text)
        if kind in ("NUMBER_DOUBLE", "DOUBLE"):
            return float(text)
        if kind == "BOOLEAN" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in ("LIST", "STRUCT"):
            value = json.loads(text)
            if isinstance(value, list if kind == "LIST" else dict):
                return value
    except ValueError:
        pass
    expected = {
        "NUMBER_INTEGER": "an integer", "INT": "an integer", "NUMBER_DOUBLE": "a number",
        "DOUBLE": "a number", "BOOLEAN": "true or false", "LIST": "a JSON list",
        "STRUCT": "a JSON object",
    }.get(kind)
    if expected is None:
        raise ParamError(f"--param {name}: parameters of type {kind} cannot be set")
    raise ParamError(f"--param {name}={text!r}: {name} takes {expected}")


def load_pipeline_spec(spec_path: str | Path) -> dict[str, Any]:
    """Reads and checks a KFP pipeline spec YAML (``tfxkfp compile --target kfp``).

    Checked here, before the experiment is created, because the client only parses the
    file while creating the run. The first YAML document must be a PipelineSpec; any
    further ones are the platform spec the client merges in.
    """
    path = Path(spec_path)
    if path.suffix.lower() not in _SPEC_SUFFIXES:
        raise SpecError(
            f"{path}: KFP takes the YAML pipeline spec of `tfxkfp compile --target kfp` "
            f"(.yaml or .yml), not a {path.suffix or 'suffix-less'} file"
        )
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such pipeline spec file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the pipeline spec: {_one_line(error)}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not YAML: {_one_line(error)}") from None
    if not documents or not isinstance(documents[0], dict):
        raise SpecError(f"{path}: not a pipeline spec (expected a YAML mapping)")
    spec = documents[0]
    if "pipelineSpec" in spec:
        raise SpecError(
            f"{path}: this is a Vertex PipelineJob; compile with --target kfp for KFP"
        )
    check_pipeline_spec(spec, path)
    for platform in documents[1:]:
        try:
            json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
        except (json_format.ParseError, TypeError, AttributeError) as error:
            raise SpecError(f"{path}: not a platform spec: {_one_line(error)}") from None
    return spec


def check_pipeline_spec(spec: Mapping[str, Any], spec_path: str | Path) -> None:
    """Refuses a mapping that is not a PipelineSpec with a name and a root DAG."""
    try:
        message = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    except (json_format.ParseError, TypeError, AttributeError) as error:
        raise SpecError(f"{spec_path}: not a pipeline spec: {_one_line(error)}") from None
    if not message.pipeline_info.name or not message.HasField("root"):
        raise SpecError(f"{spec_path}: not a pipeline spec (no pipelineInfo.name or root)")


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
    timeout_seconds: float = 3600,
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
    host = _checked_host(host)
    spec = load_pipeline_spec(spec_path)
    values = typed_params(spec, params or {}, spec_path)
    name = run_name or f"{spec['pipelineInfo']['name']} {_utc_stamp()}"
    client = _connect(host, token, namespace)
    experiment_id = _experiment_id(client, host, experiment, namespace)
    with _kfp_errors(host, f"create run {name!r}"), _quiet():
        run = client.run_pipeline(
            experiment_id=experiment_id,
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
    max_concurrency: int = 1,
) -> str:
    """Creates an enabled recurring run of the spec; returns its id.

    ``cron`` has KFP's six fields (second first). Missed runs are not caught up
    (``no_catchup``): a schedule re-enabled after a pause trains once on the latest data
    instead of replaying every missed interval.
    """
    host = _checked_host(host)
    cron = _checked_cron(cron)
    if max_concurrency not in _MAX_CONCURRENCY_RANGE:
        raise ScheduleError(f"max concurrency must be 1 to 10, got {max_concurrency}")
    if not name.strip():
        raise ScheduleError("the schedule needs a name")
    spec = load_pipeline_spec(spec_path)
    values = typed_params(spec, params or {}, spec_path)
    client = _connect(host, token, namespace)
    experiment_id = _experiment_id(client, host, experiment, namespace)
    with _kfp_errors(host, f"create schedule {name!r}"):
        recurring_run = client.create_recurring_run(
            experiment_id=experiment_id,
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
    host = _checked_host(host)
    client = _connect(host, token, namespace)
    schedules: list[dict[str, Any]] = []
    page_token = ""
    while True:
        with _kfp_errors(host, "list schedules"):
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
    host = _checked_host(host)
    if not schedule_id.strip():
        raise ScheduleError("the schedule id is empty")
    client = _connect(host, token, None)
    with _kfp_errors(host, f"delete schedule {schedule_id!r}"):
        client.delete_recurring_run(recurring_run_id=schedule_id)


def _checked_host(host: str) -> str:
    # kfp.Client would quietly prefix https:// to "localhost:8080", wrong for a port-forward.
    host = host.strip().rstrip("/")
    if not _HOST.match(host):
        raise InputError(f"KFP host {host!r} is not an http:// or https:// URL")
    return host


def _checked_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) != len(_CRON_FIELDS):
        hint = f"; did you mean '0 {' '.join(fields)}'?" if len(fields) == 5 else ""
        raise ScheduleError(
            f"cron {cron!r} has {len(fields)} fields; KFP's has 6: second minute hour "
            f"day-of-month month day-of-week{hint}"
        )
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        if not all(_cron_item_ok(item, low, high, names) for item in text.split(",")):
            raise ScheduleError(
                f"cron {cron!r}: {field} {text!r} is not valid ({field} is {low}-{high})"
            )
    return " ".join(fields)


def _cron_item_ok(item: str, low: int, high: int, names: Mapping[str, int]) -> bool:
    """``*``, ``?``, ``n`` or ``n-m``, each optionally ``/step``."""
    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if span in ("*", "?"):
        return True
    first, dash, last = span.partition("-")
    start = _cron_value(first, names)
    end = _cron_value(last, names) if dash else start
    return start is not None and end is not None and low <= start <= end <= high


def _cron_value(text: str, names: Mapping[str, int]) -> int | None:
    return int(text) if text.isdigit() else names.get(text.lower())


def _connect(host: str, token: str | None, namespace: str | None) -> _Client:
    # A known namespace stops kfp.Client() from checking health itself, so check here.
    options = {"namespace": namespace} if namespace else {}
    with _kfp_errors(host, "answer its health check"):
        with warnings.catch_warnings():
            # kfp warns on every Client() that it needs a 2.0.0-beta.2 or later server.
            warnings.simplefilter("ignore", FutureWarning)
            client = _Client(host=host, existing_token=token, **options)
        if not client.healthy:
            client.get_kfp_healthz()
    return client


def _experiment_id(client: _Client, host: str, name: str, namespace: str | None) -> str:
    with _kfp_errors(host, f"find or create experiment {name!r}"), _quiet():
        try:
            experiment = client.create_experiment(name=name, namespace=namespace)
        except ValueError as error:  # more than one experiment has the name
            raise KfpApiError(f"KFP at {host}: {_one_line(error)}") from None
    return experiment.experiment_id


def _follow(
    client: _Client,
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
        with _kfp_errors(host, f"report run {run_id}"):
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


@contextlib.contextmanager
def _kfp_errors(host: str, action: str) -> Iterator[None]:
    """Turns the client's exceptions into one-line ``KfpError``s.

    kfp 2.13 lets network failures through as urllib3 errors (``MaxRetryError`` wrapping
    ``NewConnectionError`` or ``NameResolutionError``; read timeouts bare) and raises
    ``kfp_server_api.ApiException`` for HTTP errors (status 0 for TLS failures).
    """
    _URLLIB3_POOL_LOG.addFilter(_not_a_retry_warning)
    try:
        yield
    except kfp_server_api.ApiException as error:
        if error.status in (401, 403):
            raise KfpAuthError(
                f"KFP at {host} refused the credentials (HTTP {error.status})"
            ) from None
        if not error.status:
            raise KfpUnreachableError(
                f"cannot reach KFP at {host}: {_one_line(error.reason)}"
            ) from None
        raise KfpApiError(
            f"KFP at {host} could not {action}: HTTP {error.status} {_server_message(error)}"
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise KfpUnreachableError(f"cannot reach KFP at {host}: {_network_reason(error)}") from None
    except _NotKfpServer:
        raise KfpUnreachableError(
            f"cannot reach KFP at {host}: /apis/v2beta1/healthz did not answer like a KFP API "
            "server (a login page, or another service?)"
        ) from None
    finally:
        _URLLIB3_POOL_LOG.removeFilter(_not_a_retry_warning)


def _not_a_retry_warning(record: logging.LogRecord) -> bool:
    # urllib3 logs a warning for each of its three quick retries of a failed connection;
    # without a logging setup they reach stderr ahead of the one-line error.
    return not record.getMessage().startswith("Retrying")


def _network_reason(error: urllib3.exceptions.HTTPError) -> str:
    cause = getattr(error, "reason", None) or error
    # Checked in this order: urllib3 2 derives both from ConnectTimeoutError.
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        # "...: Failed to establish a new connection: [Errno 111] Connection refused"
        return _one_line(str(cause).rsplit("] ", 1)[-1]).lower()
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return "timed out"
    return _one_line(cause)


def _server_message(error: kfp_server_api.ApiException) -> str:
    """The API server's error text (grpc-gateway's ``{"error", "code", "message"}`` body)."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return _one_line(message or error.reason or "")


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # create_experiment and run_pipeline print "... details: <link>" to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H-%M-%S")
