"""Submitting a run, following it, and its failures, against the fake KFP API server.

The real kfp 2.13 client talks to ``fake_kfp`` on 127.0.0.1; the tests assert the exact
requests it sends, and that bad input is refused before any request.
"""

import json
import logging
import re
import time

import pytest

from fake_kfp import API, PIPELINE_ROOT
from pipeline import cli, exit_codes
from pipeline.errors import InputError
from pipeline.runners.kubeflow import runs
from pipeline.runners.kubeflow.errors import (
    KfpAuthError,
    KfpError,
    KfpUnreachableError,
    ParamError,
    RunFailedError,
    SpecError,
)

# --- submit -------------------------------------------------------------------------------

def test_submit_creates_experiment_then_run_with_spec_and_typed_params(
    kfp_server, spec_path, spec, capsys
):
    lines: list[str] = []
    submitted = runs.submit(
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
    assert submitted == runs.SubmittedRun(
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

    runs.submit(spec_path, kfp_server.url, experiment="demo")

    assert ("POST", f"{API}/experiments") not in kfp_server.calls()
    create_run = kfp_server.requests[-1]
    assert create_run.body["experiment_id"] == "exp-old"
    assert re.fullmatch(r"two-step \d{4}-\d\d-\d\d \d\d-\d\d-\d\d", create_run.body["display_name"])
    assert create_run.body["runtime_config"] == {"parameters": {}, "pipeline_root": PIPELINE_ROOT}


def test_submit_in_a_namespace_scopes_the_experiment_and_still_checks_health(
    kfp_server, spec_path
):
    runs.submit(spec_path, kfp_server.url, namespace="team-a")

    # Given a namespace, kfp.Client skips its own health check; connect() makes one.
    assert kfp_server.calls()[0] == ("GET", f"{API}/healthz")
    assert kfp_server.calls().count(("GET", f"{API}/healthz")) == 1
    assert kfp_server.requests[1].query["namespace"] == "team-a"
    assert kfp_server.requests[2].body == {"display_name": "social-network-ads",
                                           "namespace": "team-a"}


def test_token_is_sent_as_bearer_on_every_request(kfp_server, spec_path):
    runs.submit(spec_path, kfp_server.url, token="s3cret")

    assert len(kfp_server.requests) == 4
    assert {request.authorization for request in kfp_server.requests} == {"Bearer s3cret"}


def test_wait_polls_until_succeeded_and_reports_each_new_state(kfp_server, spec_path):
    kfp_server.run_states = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    lines: list[str] = []

    submitted = runs.submit(
        spec_path, kfp_server.url, run_name="r", wait=True, poll_seconds=0, progress=lines.append
    )

    assert kfp_server.calls()[4:] == [("GET", f"{API}/runs/run-1")] * 4
    assert submitted.state == "SUCCEEDED"
    assert lines[1:] == ["run run-1: PENDING", "run run-1: RUNNING", "run run-1: SUCCEEDED"]


@pytest.mark.parametrize("final", ["FAILED", "CANCELED"])
def test_wait_raises_when_the_run_ends_otherwise(kfp_server, spec_path, final):
    kfp_server.run_states = ["RUNNING", final]

    with pytest.raises(RunFailedError) as caught:
        runs.submit(spec_path, kfp_server.url, run_name="nightly", wait=True, poll_seconds=0)

    url = f"{kfp_server.url}/#/runs/details/run-1"
    assert str(caught.value) == f"run 'nightly' (run-1) ended {final}: {url}"
    assert (caught.value.state, caught.value.run_id) == (final, "run-1")
    assert isinstance(caught.value, KfpError) and not isinstance(caught.value, InputError)


def test_a_failed_run_s_address_is_still_printed_for_scripts(kfp_server, spec_path, capsys):
    # make cluster-submit reads the run from what submit prints, to show why it failed.
    kfp_server.run_states = ["RUNNING", "FAILED"]
    code = cli.main(["submit", str(spec_path), "--host", kfp_server.url, "--wait"])
    assert code == exit_codes.FAILED
    out, err = capsys.readouterr()
    assert out == f"{kfp_server.url}/#/runs/details/run-1\n"
    assert err.splitlines()[-1].startswith("error: run ") and "ended FAILED" in err


def test_wait_gives_up_after_the_timeout(kfp_server, spec_path):
    kfp_server.run_states = ["RUNNING"]
    started = time.monotonic()

    with pytest.raises(RunFailedError, match=r"\(run-1\) is still RUNNING after 0.2 s"):
        runs.submit(spec_path, kfp_server.url, wait=True,
                    timeout_seconds=0.2, poll_seconds=0.05)

    assert 0.2 <= time.monotonic() - started < 2
    assert kfp_server.calls().count(("GET", f"{API}/runs/run-1")) >= 3


# --- failures -----------------------------------------------------------------------------

def test_closed_port_is_unreachable_and_logs_no_retry_warnings(closed_port_url, spec_path, caplog):
    with pytest.raises(KfpUnreachableError) as caught:
        runs.submit(spec_path, closed_port_url)

    assert str(caught.value) == f"cannot reach KFP at {closed_port_url}: connection refused"
    assert isinstance(caught.value, KfpError) and not isinstance(caught.value, InputError)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_fast_with_the_status(kfp_server, spec_path, status):
    kfp_server.deny = status

    with pytest.raises(KfpAuthError) as caught:
        runs.submit(spec_path, kfp_server.url, token="expired")

    assert str(caught.value) == f"KFP at {kfp_server.url} refused the credentials (HTTP {status})"
    assert isinstance(caught.value, KfpError) and not isinstance(caught.value, InputError)
    assert kfp_server.calls() == [("GET", f"{API}/healthz"), ("GET", f"{API}/experiments")]


def test_auth_proxy_refusing_the_health_check_is_one_request_not_kfp_retries(
    kfp_server, spec_path
):
    kfp_server.deny, kfp_server.deny_healthz = 401, True
    started = time.monotonic()

    with pytest.raises(KfpAuthError, match=r"\(HTTP 401\)"):
        runs.submit(spec_path, kfp_server.url)

    # kfp.Client alone would retry five times, 5 s apart, and end in TimeoutError.
    assert kfp_server.calls() == [("GET", f"{API}/healthz")]
    assert time.monotonic() - started < 2


def test_login_page_instead_of_the_api_is_not_mistaken_for_kfp(kfp_server, spec_path):
    kfp_server.healthz_html = True

    with pytest.raises(KfpUnreachableError, match="did not answer like a KFP API server"):
        runs.submit(spec_path, kfp_server.url)

    assert kfp_server.calls() == [("GET", f"{API}/healthz")]


def test_host_without_scheme_is_an_input_error(kfp_server, spec_path):
    message = "'localhost:8080' is not an http:// or https:// URL"
    with pytest.raises(InputError, match=message) as caught:
        runs.submit(spec_path, "localhost:8080")

    assert not isinstance(caught.value, KfpError)  # the CLI's input error, not a server one


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
        runs.submit(path, kfp_server.url)

    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, InputError)
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
        runs.submit(spec_path, kfp_server.url, params=params)

    assert isinstance(caught.value, InputError)
    assert kfp_server.requests == []
