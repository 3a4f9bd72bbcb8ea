"""Creating, listing and deleting recurring runs against the fake KFP API server.

Cron expressions are checked through ``create_schedule`` too, so that every refused one is
shown to be refused before any request is sent.
"""

import re

import pytest

from fake_kfp import API, PIPELINE_ROOT
from pipeline.errors import InputError
from pipeline.runners.kubeflow import schedules
from pipeline.runners.kubeflow.errors import KfpApiError, KfpError, ScheduleError


def test_create_schedule_sends_cron_trigger_concurrency_and_enabled_mode(
    kfp_server, spec_path, spec
):
    schedule_id = schedules.create_schedule(
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
    schedules.create_schedule(spec_path, kfp_server.url, cron=cron, name="s")

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
        schedules.create_schedule(spec_path, kfp_server.url, cron=cron, name="s")

    assert isinstance(caught.value, InputError)
    assert kfp_server.requests == []


@pytest.mark.parametrize("concurrency", [0, 11])
def test_concurrency_outside_what_kfp_allows_is_refused(kfp_server, spec_path, concurrency):
    with pytest.raises(ScheduleError, match="max concurrency must be 1 to 10"):
        schedules.create_schedule(spec_path, kfp_server.url, cron="0 0 3 * * *", name="s",
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

    listed = schedules.list_schedules(kfp_server.url, namespace="team-a", token="t")

    assert kfp_server.calls() == [("GET", f"{API}/healthz")] + [("GET", f"{API}/recurringruns")] * 2
    assert [request.query for request in kfp_server.requests[1:]] == [
        {"page_token": "", "page_size": "100", "sort_by": "", "namespace": "team-a"},
        {"page_token": "100", "page_size": "100", "sort_by": "", "namespace": "team-a"},
    ]
    assert len(listed) == 150
    assert listed[:2] == [
        {"id": "rr-0", "name": "s0", "cron": "0 0 3 * * *", "status": "ENABLED", "enabled": True},
        {"id": "rr-1", "name": "s1", "cron": None, "status": "DISABLED", "enabled": False},
    ]


def test_list_schedules_when_there_are_none(kfp_server):
    assert schedules.list_schedules(kfp_server.url) == []
    assert kfp_server.requests[-1].query == {"page_token": "", "page_size": "100", "sort_by": ""}


def test_delete_schedule(kfp_server):
    kfp_server.recurring_runs.append({"recurring_run_id": "rr-7", "display_name": "s"})

    schedules.delete_schedule(kfp_server.url, "rr-7", token="t")

    assert kfp_server.calls()[-1] == ("DELETE", f"{API}/recurringruns/rr-7")
    assert kfp_server.requests[-1].authorization == "Bearer t"
    assert kfp_server.recurring_runs == []


def test_deleting_an_unknown_schedule_names_it_and_the_server_answer(kfp_server):
    with pytest.raises(KfpApiError) as caught:
        schedules.delete_schedule(kfp_server.url, "rr-404")

    assert str(caught.value) == (
        f"KFP at {kfp_server.url} could not delete schedule 'rr-404': HTTP 404 Job rr-404 not found"
    )
    assert isinstance(caught.value, KfpError) and not isinstance(caught.value, InputError)
