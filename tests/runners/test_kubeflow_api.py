"""Submitting and scheduling against a fake KFP v2beta1 API server on 127.0.0.1.

No KFP server can run here, so a small HTTP server answers the way the real one does
(request and response shapes of backend/api/v2beta1 in kubeflow/pipelines 2.4: JSON with
proto field names, grpc-gateway's {"error", "code", "message"} error bodies, the
hand-written healthz answer) and records every request. The tests drive the real kfp 2.13
client through kubeflow_api and assert the exact requests it sends.
"""

import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp
import pytest
import yaml

from pipeline.runners import kubeflow_api
from pipeline.runners.kubeflow_api import (
    InputError,
    KfpApiError,
    KfpAuthError,
    KfpUnreachableError,
    ParamError,
    RunFailedError,
    ScheduleError,
    SpecError,
)

API = "/apis/v2beta1"
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts/two-step"


@pytest.fixture(scope="module")
def spec_path(two_step_spec) -> Path:
    return two_step_spec


@pytest.fixture(scope="module")
def spec(spec_path) -> dict:
    return yaml.safe_load(spec_path.read_text())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class FakeKfp:
    """State and knobs of the fake API server; ``requests`` records what arrived."""

    requests: list[Request] = field(default_factory=list)
    experiments: list[dict] = field(default_factory=list)
    recurring_runs: list[dict] = field(default_factory=list)
    run_states: list[str] = field(default_factory=lambda: ["SUCCEEDED"])
    deny: int | None = None  # answer every API call but healthz with this status
    deny_healthz: bool = False  # ... and healthz too, like an auth proxy in front
    healthz_html: bool = False  # healthz answered by a login page
    url: str = ""

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.requests]


def _error(code: int, message: str) -> dict:
    return {"error": message, "code": code, "message": message, "details": []}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: FakeKfp = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake.requests.append(Request(
            method=self.command,
            path=url.path,
            query={k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            body=json.loads(raw) if raw else None,
            authorization=self.headers.get("Authorization"),
        ))
        status, answer = self._answer(fake, url.path, fake.requests[-1])
        payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/html" if isinstance(answer, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, fake: FakeKfp, path: str, request: Request) -> tuple[int, Any]:
        if path == f"{API}/healthz":
            if fake.deny and fake.deny_healthz:
                return fake.deny, _error(16, "Unauthenticated")
            if fake.healthz_html:
                return 200, "<html><body>Sign in</body></html>"
            # The real server writes this one by hand, multi_user always present.
            return 200, {"commit_sha": "fake", "tag_name": "2.4.0", "multi_user": False}
        if fake.deny:
            return fake.deny, _error(16 if fake.deny == 401 else 7, "request denied")
        method = self.command
        if (method, path) == ("GET", f"{API}/experiments"):
            predicate = json.loads(request.query["filter"])["predicates"][0]
            found = [e for e in fake.experiments
                     if e["display_name"] == predicate["stringValue"]
                     and e["namespace"] == request.query.get("namespace", "")]
            # Proto JSON leaves out empty lists, so "none found" is an empty object.
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/experiments"):
            experiment = {**request.body, "experiment_id": f"exp-{len(fake.experiments) + 1}",
                          "created_at": "2025-01-01T00:00:00Z", "storage_state": "AVAILABLE"}
            fake.experiments.append(experiment)
            return 200, experiment
        if (method, path) == ("POST", f"{API}/runs"):
            return 200, {**request.body, "run_id": "run-1", "state": "PENDING",
                         "created_at": "2025-01-01T00:00:00Z"}
        if match := re.fullmatch(f"{API}/runs/([^/]+)", path):
            state = fake.run_states.pop(0) if len(fake.run_states) > 1 else fake.run_states[0]
            return 200, {"run_id": match[1], "display_name": "run", "state": state}
        if (method, path) == ("POST", f"{API}/recurringruns"):
            recurring_run = {
                **request.body,
                "recurring_run_id": f"rr-{len(fake.recurring_runs) + 1}",
                "status": "ENABLED" if request.body["mode"] == "ENABLE" else "DISABLED",
            }
            fake.recurring_runs.append(recurring_run)
            return 200, recurring_run
        if (method, path) == ("GET", f"{API}/recurringruns"):
            start = int(request.query.get("page_token") or 0)
            end = start + int(request.query["page_size"])
            page: dict[str, Any] = {"recurringRuns": fake.recurring_runs[start:end],
                                    "total_size": len(fake.recurring_runs)}
            if end < len(fake.recurring_runs):
                page["next_page_token"] = str(end)
            return 200, page
        if method == "DELETE" and (match := re.fullmatch(f"{API}/recurringruns/([^/]+)", path)):
            kept = [r for r in fake.recurring_runs if r["recurring_run_id"] != match[1]]
            if len(kept) == len(fake.recurring_runs):
                return 404, _error(5, f"Job {match[1]} not found")
            fake.recurring_runs[:] = kept
            return 200, {}
        return 404, _error(5, "Not Found")


@pytest.fixture(autouse=True)
def _no_kfp_context(tmp_path, monkeypatch):
    # kfp.Client reads (and in a multi-user pod, writes) ~/.config/kfp/context.json; a
    # developer's saved namespace or cookie there would change the requests under test.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def kfp_server():
    fake = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- submit -------------------------------------------------------------------------------

def test_submit_creates_experiment_then_run_with_spec_and_typed_params(
    kfp_server, spec_path, spec, capsys
):
    lines: list[str] = []
    submitted = kubeflow_api.submit(
        spec_path, kfp_server.url + "/",
        run_name="nightly",
        params={"a": "5", "b": "2.5", "msg": "yo", "flag": "True",
                "items": "[1, 2]", "conf": '{"k": "v"}'},
        progress=lines.append,
    )

    assert kfp_server.calls() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    lookup, create_experiment, create_run = kfp_server.requests[1:]
    assert json.loads(lookup.query["filter"]) == {"predicates": [
        {"operation": 1, "key": "display_name", "stringValue": "social-network-ads"}
    ]}
    assert create_experiment.body == {"display_name": "social-network-ads", "namespace": ""}
    assert create_run.body == {
        "experiment_id": "exp-1",
        "display_name": "nightly",
        "pipeline_spec": spec,
        # The backend takes the root from here only, not from the spec.
        "runtime_config": {"parameters": {
            "a": 5, "b": 2.5, "msg": "yo", "flag": True, "items": [1, 2], "conf": {"k": "v"},
        }, "pipeline_root": PIPELINE_ROOT},
    }
    assert all(request.authorization is None for request in kfp_server.requests)
    assert submitted == kubeflow_api.SubmittedRun(
        run_id="run-1", run_url=f"{kfp_server.url}/#/runs/details/run-1", state="PENDING"
    )
    assert lines == [
        f"run 'nightly' created in experiment 'social-network-ads': {submitted.run_url}"
    ]
    assert capsys.readouterr() == ("", "")  # kfp's own "details: <link>" prints are swallowed


def test_submit_reuses_an_existing_experiment_and_names_the_run_after_the_pipeline(
    kfp_server, spec_path
):
    kfp_server.experiments.append({"experiment_id": "exp-old", "display_name": "demo",
                                   "namespace": ""})

    kubeflow_api.submit(spec_path, kfp_server.url, experiment="demo")

    assert ("POST", f"{API}/experiments") not in kfp_server.calls()
    create_run = kfp_server.requests[-1]
    assert create_run.body["experiment_id"] == "exp-old"
    assert re.fullmatch(r"two-step \d{4}-\d\d-\d\d \d\d-\d\d-\d\d", create_run.body["display_name"])
    assert create_run.body["runtime_config"] == {"parameters": {}, "pipeline_root": PIPELINE_ROOT}


def test_submit_in_a_namespace_scopes_the_experiment_and_still_checks_health(
    kfp_server, spec_path
):
    kubeflow_api.submit(spec_path, kfp_server.url, namespace="team-a")

    # Given a namespace, kfp.Client skips its own health check; kubeflow_api makes one.
    assert kfp_server.calls()[0] == ("GET", f"{API}/healthz")
    assert kfp_server.calls().count(("GET", f"{API}/healthz")) == 1
    assert kfp_server.requests[1].query["namespace"] == "team-a"
    assert kfp_server.requests[2].body == {"display_name": "social-network-ads",
                                           "namespace": "team-a"}


def test_token_is_sent_as_bearer_on_every_request(kfp_server, spec_path):
    kubeflow_api.submit(spec_path, kfp_server.url, token="s3cret")

    assert len(kfp_server.requests) == 4
    assert {request.authorization for request in kfp_server.requests} == {"Bearer s3cret"}


def test_wait_polls_until_succeeded_and_reports_each_new_state(kfp_server, spec_path):
    kfp_server.run_states = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    lines: list[str] = []

    submitted = kubeflow_api.submit(
        spec_path, kfp_server.url, run_name="r", wait=True, poll_seconds=0, progress=lines.append
    )

    assert kfp_server.calls()[4:] == [("GET", f"{API}/runs/run-1")] * 4
    assert submitted.state == "SUCCEEDED"
    assert lines[1:] == ["run run-1: PENDING", "run run-1: RUNNING", "run run-1: SUCCEEDED"]


@pytest.mark.parametrize("final", ["FAILED", "CANCELED"])
def test_wait_raises_when_the_run_ends_otherwise(kfp_server, spec_path, final):
    kfp_server.run_states = ["RUNNING", final]

    with pytest.raises(RunFailedError) as caught:
        kubeflow_api.submit(spec_path, kfp_server.url, run_name="nightly", wait=True,
                            poll_seconds=0)

    url = f"{kfp_server.url}/#/runs/details/run-1"
    assert str(caught.value) == f"run 'nightly' (run-1) ended {final}: {url}"
    assert (caught.value.state, caught.value.run_id, caught.value.exit_code) == (final, "run-1", 1)


def test_wait_gives_up_after_the_timeout(kfp_server, spec_path):
    kfp_server.run_states = ["RUNNING"]
    started = time.monotonic()

    with pytest.raises(RunFailedError, match=r"\(run-1\) is still RUNNING after 0.2 s"):
        kubeflow_api.submit(spec_path, kfp_server.url, wait=True,
                            timeout_seconds=0.2, poll_seconds=0.05)

    assert 0.2 <= time.monotonic() - started < 2
    assert kfp_server.calls().count(("GET", f"{API}/runs/run-1")) >= 3


# --- failures -----------------------------------------------------------------------------

def test_closed_port_is_unreachable_and_logs_no_retry_warnings(closed_port_url, spec_path, caplog):
    with pytest.raises(KfpUnreachableError) as caught:
        kubeflow_api.submit(spec_path, closed_port_url)

    assert str(caught.value) == f"cannot reach KFP at {closed_port_url}: connection refused"
    assert caught.value.exit_code == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_fast_with_the_status(kfp_server, spec_path, status):
    kfp_server.deny = status

    with pytest.raises(KfpAuthError) as caught:
        kubeflow_api.submit(spec_path, kfp_server.url, token="expired")

    assert str(caught.value) == f"KFP at {kfp_server.url} refused the credentials (HTTP {status})"
    assert caught.value.exit_code == 1
    assert kfp_server.calls() == [("GET", f"{API}/healthz"), ("GET", f"{API}/experiments")]


def test_auth_proxy_refusing_the_health_check_is_one_request_not_kfp_retries(
    kfp_server, spec_path
):
    kfp_server.deny, kfp_server.deny_healthz = 401, True
    started = time.monotonic()

    with pytest.raises(KfpAuthError, match=r"\(HTTP 401\)"):
        kubeflow_api.submit(spec_path, kfp_server.url)

    # kfp.Client alone would retry five times, 5 s apart, and end in TimeoutError.
    assert kfp_server.calls() == [("GET", f"{API}/healthz")]
    assert time.monotonic() - started < 2


def test_login_page_instead_of_the_api_is_not_mistaken_for_kfp(kfp_server, spec_path):
    kfp_server.healthz_html = True

    with pytest.raises(KfpUnreachableError, match="did not answer like a KFP API server"):
        kubeflow_api.submit(spec_path, kfp_server.url)

    assert kfp_server.calls() == [("GET", f"{API}/healthz")]


def test_host_without_scheme_is_an_input_error(kfp_server, spec_path):
    message = "'localhost:8080' is not an http:// or https:// URL"
    with pytest.raises(InputError, match=message) as caught:
        kubeflow_api.submit(spec_path, "localhost:8080")

    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name, content, message", [
    ("missing.yaml", None, "no such pipeline spec file"),
    ("job.json", "{}", "not a .json file"),
    ("list.yaml", "- 1\n- 2\n", "expected a YAML mapping"),
    ("empty.yaml", "", "expected a YAML mapping"),
    ("broken.yaml", "a: [1,\n", "not YAML"),
    ("other.yaml", "apiVersion: v1\nkind: Pod\n", "not a pipeline spec: "),
    ("blank.yaml", "sdkVersion: kfp-2.13.0\n", "no pipelineInfo.name or root"),
    ("vertex.yaml", json.dumps({"displayName": "x", "pipelineSpec": {}}),
     "Vertex PipelineJob; compile with --target kfp"),
])
def test_bad_spec_file_is_refused_before_any_request(kfp_server, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)

    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        kubeflow_api.submit(path, kfp_server.url)

    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
    assert kfp_server.requests == []


@pytest.mark.parametrize("params, message", [
    ({"epochs": "3"}, "has no parameter 'epochs' (it takes: a, b, conf, flag, items, msg)"),
    ({"a": "five"}, "--param a='five': a takes an integer"),
    ({"b": "x"}, "b takes a number"),
    ({"flag": "yes"}, "flag takes true or false"),
    ({"items": '{"k": 1}'}, "items takes a JSON list"),
    ({"conf": "[1]"}, "conf takes a JSON object"),
])
def test_params_the_pipeline_cannot_take_are_refused_before_any_request(
    kfp_server, spec_path, params, message
):
    with pytest.raises(ParamError, match=re.escape(message)) as caught:
        kubeflow_api.submit(spec_path, kfp_server.url, params=params)

    assert caught.value.exit_code == 2
    assert kfp_server.requests == []


def test_legacy_parameter_types_are_converted_too():
    spec = {"root": {"inputDefinitions": {"parameters": {
        "steps": {"type": "INT"}, "rate": {"type": "DOUBLE"}, "name": {"type": "STRING"},
    }}}}

    assert kubeflow_api.typed_params(spec, {"steps": "7", "rate": "0.5", "name": "n"}, "p.yaml") \
        == {"steps": 7, "rate": 0.5, "name": "n"}


def test_parse_params():
    assert kubeflow_api.parse_params(["a=1", "url=http://x/?q=1", "empty="]) == {
        "a": "1", "url": "http://x/?q=1", "empty": ""
    }
    for items, message in [
        (["novalue"], "--param 'novalue' is not key=value"),
        (["=1"], "--param '=1' has an empty key"),
        (["a=1", "a=2"], "--param 'a' is given more than once"),
    ]:
        with pytest.raises(ParamError, match=re.escape(message)) as caught:
            kubeflow_api.parse_params(items)
        assert caught.value.exit_code == 2


# --- schedules ----------------------------------------------------------------------------

def test_create_schedule_sends_cron_trigger_concurrency_and_enabled_mode(
    kfp_server, spec_path, spec
):
    schedule_id = kubeflow_api.create_schedule(
        spec_path, kfp_server.url, cron="0  0 3 * * mon-fri", name="weekday retrain",
        params={"a": "2"}, token="t", max_concurrency=2,
    )

    assert schedule_id == "rr-1"
    assert kfp_server.calls() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/recurringruns"),
    ]
    assert kfp_server.requests[-1].body == {
        "experiment_id": "exp-1",
        "display_name": "weekday retrain",
        "mode": "ENABLE",
        "trigger": {"cron_schedule": {"cron": "0 0 3 * * mon-fri"}},
        "max_concurrency": 2,
        "no_catchup": True,
        "pipeline_spec": spec,
        "runtime_config": {"parameters": {"a": 2}, "pipeline_root": PIPELINE_ROOT},
    }
    assert kfp_server.requests[-1].authorization == "Bearer t"


@pytest.mark.parametrize("cron", [
    "0 0 3 * * *", "*/15 * * * * ?", "0 30 9-17/2 1,15 jan-jun SUN", "5/10 0 0 31 12 6",
])
def test_valid_six_field_crons_are_accepted(kfp_server, spec_path, cron):
    kubeflow_api.create_schedule(spec_path, kfp_server.url, cron=cron, name="s")

    assert kfp_server.requests[-1].body["trigger"] == {"cron_schedule": {"cron": cron}}


@pytest.mark.parametrize("cron, message", [
    ("0 3 * * *", ("has 5 fields; KFP's has 6: second minute hour day-of-month month "
                   "day-of-week; did you mean '0 0 3 * * *'?")),
    ("@daily", "has 1 fields"),
    ("60 * * * * *", "second '60' is not valid (second is 0-59)"),
    ("0 0 24 * * *", "hour '24' is not valid"),
    ("0 0 0 0 * *", "day-of-month '0' is not valid (day-of-month is 1-31)"),
    ("0 0 0 * 13 *", "month '13' is not valid"),
    ("0 0 0 * * 7", "day-of-week '7' is not valid (day-of-week is 0-6)"),
    ("0 0 0 * * mon-xyz", "day-of-week 'mon-xyz' is not valid"),
    ("*/0 * * * * *", "second '*/0' is not valid"),
    ("0 10-5 * * * *", "minute '10-5' is not valid"),
    ("0 1,,2 * * * *", "minute '1,,2' is not valid"),
    ("0 0 0 L * *", "day-of-month 'L' is not valid"),
])
def test_bad_cron_is_refused_before_any_request(kfp_server, spec_path, cron, message):
    with pytest.raises(ScheduleError, match=re.escape(message)) as caught:
        kubeflow_api.create_schedule(spec_path, kfp_server.url, cron=cron, name="s")

    assert caught.value.exit_code == 2
    assert kfp_server.requests == []


@pytest.mark.parametrize("concurrency", [0, 11])
def test_concurrency_outside_what_kfp_allows_is_refused(kfp_server, spec_path, concurrency):
    with pytest.raises(ScheduleError, match="max concurrency must be 1 to 10"):
        kubeflow_api.create_schedule(spec_path, kfp_server.url, cron="0 0 3 * * *", name="s",
                                     max_concurrency=concurrency)

    assert kfp_server.requests == []


def test_list_schedules_reads_every_page(kfp_server):
    kfp_server.recurring_runs.extend(
        {"recurring_run_id": f"rr-{n}", "display_name": f"s{n}", "status": "ENABLED",
         "trigger": {"cron_schedule": {"cron": "0 0 3 * * *"}}}
        for n in range(150)
    )
    kfp_server.recurring_runs[1].update(status="DISABLED",
                                        trigger={"periodic_schedule": {"interval_second": "3600"}})

    schedules = kubeflow_api.list_schedules(kfp_server.url, namespace="team-a", token="t")

    assert kfp_server.calls() == [("GET", f"{API}/healthz")] + [("GET", f"{API}/recurringruns")] * 2
    assert [request.query for request in kfp_server.requests[1:]] == [
        {"page_token": "", "page_size": "100", "sort_by": "", "namespace": "team-a"},
        {"page_token": "100", "page_size": "100", "sort_by": "", "namespace": "team-a"},
    ]
    assert len(schedules) == 150
    assert schedules[:2] == [
        {"id": "rr-0", "name": "s0", "cron": "0 0 3 * * *", "status": "ENABLED", "enabled": True},
        {"id": "rr-1", "name": "s1", "cron": None, "status": "DISABLED", "enabled": False},
    ]


def test_list_schedules_when_there_are_none(kfp_server):
    assert kubeflow_api.list_schedules(kfp_server.url) == []
    assert kfp_server.requests[-1].query == {"page_token": "", "page_size": "100", "sort_by": ""}


def test_delete_schedule(kfp_server):
    kfp_server.recurring_runs.append({"recurring_run_id": "rr-7", "display_name": "s"})

    kubeflow_api.delete_schedule(kfp_server.url, "rr-7", token="t")

    assert kfp_server.calls()[-1] == ("DELETE", f"{API}/recurringruns/rr-7")
    assert kfp_server.requests[-1].authorization == "Bearer t"
    assert kfp_server.recurring_runs == []


def test_deleting_an_unknown_schedule_names_it_and_the_server_answer(kfp_server):
    with pytest.raises(KfpApiError) as caught:
        kubeflow_api.delete_schedule(kfp_server.url, "rr-404")

    assert str(caught.value) == (
        f"KFP at {kfp_server.url} could not delete schedule 'rr-404': HTTP 404 Job rr-404 not found"
    )
    assert caught.value.exit_code == 1
