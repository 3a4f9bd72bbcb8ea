"""The runner of the Kubernetes InfraValidator: how it drives the serving pod through the API.

Against fake_kubernetes' stand-in API server; tests/cluster runs the same calls on a cluster.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s_client
from tfx.components.infra_validator import error_types, serving_bins

from fake_kubernetes import (
    GCS_MODEL,
    NAMESPACE,
    POD_IP,
    STEP_POD,
    FakeApiServer,
    core_api,
    serving_spec,
)
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.kubernetes_serving_runner import KubernetesModelServerRunner

FAST = 0.01  # poll interval for the control-flow tests


def _runner(server: FakeApiServer | None = None) -> KubernetesModelServerRunner:
    spec = serving_spec()
    [binary] = serving_bins.parse_serving_binaries(spec)
    return KubernetesModelServerRunner(
        GCS_MODEL, binary, spec, core_api(server or FakeApiServer()), STEP_POD,
        poll_interval_seconds=FAST,
    )


def _manifest(runner) -> dict:
    return k8s_client.ApiClient().sanitize_for_serialization(runner.pod)


def test_start_wait_endpoint_logs_stop():
    server = FakeApiServer(phases=["Pending", "Pending", "Running"])
    runner = _runner(server)
    runner.Start()
    assert server.created == [_manifest(runner)]
    runner.WaitUntilRunning(time.time() + 5)
    assert runner.GetEndpoint() == f"{POD_IP}:8500"
    assert "Running gRPC 8500" in runner.GetLogs()
    assert server.log_queries == [{"container": "tf-serving", "tailLines": 500}]
    runner.Stop()
    assert server.deleted == [runner.pod.metadata.name]
    assert server.pods == {}


def test_endpoint_is_refused_before_the_pod_runs():
    runner = _runner()
    with pytest.raises(AssertionError):
        runner.GetEndpoint()


def test_failed_pod_is_an_error_and_is_still_deleted():
    server = FakeApiServer(phases=["Pending", "Failed"])
    runner = _runner(server)
    runner.Start()
    with pytest.raises(error_types.JobAborted, match="exited 1 .Error. Could not find base path"):
        runner.WaitUntilRunning(time.time() + 5)
    runner.Stop()
    assert server.pods == {}


@pytest.mark.parametrize("phase, reason", [
    ("Pending", "tf-serving waiting: ContainerCreating"),
    ("Unschedulable", "PodScheduled: 0/1 nodes are available: 1 Insufficient memory"),
])
def test_deadline_is_an_error_that_says_why_and_the_pod_is_still_deleted(phase, reason):
    server = FakeApiServer(phases=[phase])
    runner = _runner(server)
    runner.Start()
    started = time.monotonic()
    with pytest.raises(error_types.DeadlineExceeded, match=reason):
        runner.WaitUntilRunning(time.time() + 0.1)
    assert time.monotonic() - started < 1
    runner.Stop()
    assert server.pods == {}


def test_pod_deleted_by_someone_else_aborts_the_wait():
    server = FakeApiServer(phases=["Pending"])
    runner = _runner(server)
    runner.Start()
    server.pods.clear()
    with pytest.raises(error_types.JobAborted, match="is gone"):
        runner.WaitUntilRunning(time.time() + 5)
    runner.Stop()  # 404: already gone, nothing to do


def test_forbidden_create_says_why_and_stop_is_still_safe():
    message = ('pods is forbidden: User "system:serviceaccount:pipelines:pipeline-runner" '
               'cannot create resource "pods" in API group "" in the namespace "pipelines"')
    server = FakeApiServer(forbid_create=message)
    runner = _runner(server)
    with pytest.raises(KubernetesServingError) as raised:
        runner.Start()
    assert message in str(raised.value)
    assert "pods create/get/list/watch/delete and pods/log get" in str(raised.value)
    assert runner.GetLogs() is None
    runner.Stop()
    assert ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{runner.pod.metadata.name}") \
        in server.requests


def test_stop_retries_api_errors_and_is_idempotent():
    server = FakeApiServer(failing_deletes=1)
    runner = _runner(server)
    runner.Start()
    runner.Stop()
    assert server.pods == {}
    runner.Stop()
    assert [method for method, _ in server.requests].count("DELETE") == 3


def test_stop_before_start_sends_nothing():
    server = FakeApiServer()
    _runner(server).Stop()
    assert server.requests == []


def test_start_twice_is_refused():
    runner = _runner()
    runner.Start()
    with pytest.raises(RuntimeError, match="already started"):
        runner.Start()
