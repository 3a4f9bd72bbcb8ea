"""The cluster tier: tests against the cluster KUBECONFIG points at (`make test-cluster`).

`make test-cluster` starts the local cluster (k8s/local) and points KUBECONFIG at it; without a
KUBECONFIG these tests skip, saying so. When a test fails, the events and the logs of every pod
in the namespaces it used are printed with its report: what a person would look at first.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
# Written by k8s/local/build-images.sh: the names of the images loaded into the cluster.
LOCAL_IMAGES = REPO / "build" / "local-images.env"
_SERVICE_ACCOUNT_WAIT_SECONDS = 60
_LOG_LINES = 60

# Namespaces the running test touched, and those of module-scoped fixtures that every test of
# the module touches, for the failure report.
_namespaces_in_use: list[str] = []
_shared_namespaces: list[str] = []


@pytest.fixture(scope="session")
def api_client() -> k8s_client.ApiClient:
    """A client for the KUBECONFIG cluster; skips the test when there is none."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set: no cluster to run the cluster tests against "
                    "(`make test-cluster` starts the local one)")
    return k8s_config.new_client_from_config()


@pytest.fixture(scope="session")
def core_api(api_client) -> k8s_client.CoreV1Api:
    return k8s_client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def local_images() -> dict[str, str]:
    """Image names loaded into the local cluster (PIPELINE_IMAGE, PYTHON_BASE_IMAGE, ...)."""
    if not LOCAL_IMAGES.is_file():
        pytest.fail(f"{LOCAL_IMAGES} is missing: the images are built by `make cluster-up`")
    settings = {}
    for line in LOCAL_IMAGES.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.endswith("_IMAGE"):
            settings[key] = value
    return settings


def watch_namespace(name: str, shared: bool = False) -> None:
    """Includes namespace `name` in the diagnostics printed if the running test fails.

    `shared`: for a fixture that outlives the test (module or session scope), every later test.
    """
    (_shared_namespaces if shared else _namespaces_in_use).append(name)


def make_namespace(core_api: k8s_client.CoreV1Api, level: str = "restricted") -> str:
    """A throwaway namespace enforcing Pod Security `level`, with its default service account."""
    name = f"tfxkfp-test-{secrets.token_hex(3)}"
    core_api.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(
        name=name,
        labels={
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )))
    watch_namespace(name)
    # Pods need the namespace's default service account, which a controller adds.
    deadline = time.monotonic() + _SERVICE_ACCOUNT_WAIT_SECONDS
    while not core_api.list_namespaced_service_account(
        name, field_selector="metadata.name=default"
    ).items:
        assert time.monotonic() < deadline, f"no default service account in {name}"
        time.sleep(1)
    return name


@pytest.fixture
def restricted_namespace(core_api: k8s_client.CoreV1Api):
    """A throwaway namespace that enforces the `restricted` Pod Security Standard."""
    name = make_namespace(core_api)
    try:
        yield name
    finally:
        core_api.delete_namespace(name)


def wait_for_pod_phase(core_api: k8s_client.CoreV1Api, namespace: str, name: str,
                       phases: set[str], seconds: float) -> k8s_client.V1Pod:
    """The pod once its phase is one of `phases`; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        pod = core_api.read_namespaced_pod(name, namespace)
        if pod.status.phase in phases:
            return pod
        if time.monotonic() > deadline:
            pytest.fail(f"pod {namespace}/{name} is {pod.status.phase}, not one of "
                        f"{sorted(phases)}, after {seconds}s")
        time.sleep(1)


def _workflows(api_client: k8s_client.ApiClient, namespace: str) -> list[str]:
    """Every Argo Workflow (a KFP run) of the namespace, with each node that did not succeed."""
    try:
        workflows = k8s_client.CustomObjectsApi(api_client).list_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "workflows")["items"]
    except ApiException:
        return []  # no Argo here
    lines = []
    for workflow in workflows:
        status = workflow.get("status") or {}
        lines.append(f"----- workflow {workflow['metadata']['name']}: {status.get('phase')} "
                     f"{status.get('message') or ''}")
        for node in (status.get("nodes") or {}).values():
            if node.get("phase") != "Succeeded":
                lines.append(f"  {node.get('displayName')} ({node.get('type')}, pod "
                             f"{node.get('id')}): {node.get('phase')} {node.get('message') or ''}")
    return lines


def _diagnostics(core_api: k8s_client.CoreV1Api, namespace: str) -> str:
    lines = [f"----- namespace {namespace}: events"]
    try:
        events = core_api.list_namespaced_event(namespace).items
    except ApiException as error:
        return f"----- namespace {namespace}: cannot list events ({error.status})"
    for event in sorted(events, key=lambda e: e.last_timestamp or e.event_time or 0):
        lines.append(f"{event.type} {event.involved_object.kind}/{event.involved_object.name}: "
                     f"{event.reason}: {event.message}")
    lines += _workflows(core_api.api_client, namespace)
    for pod in core_api.list_namespaced_pod(namespace).items:
        for container in pod.spec.containers:
            lines.append(f"----- pod {pod.metadata.name} ({pod.status.phase}) "
                         f"container {container.name}: last {_LOG_LINES} log lines")
            try:
                lines.append(core_api.read_namespaced_pod_log(
                    pod.metadata.name, namespace, container=container.name,
                    tail_lines=_LOG_LINES))
            except ApiException as error:
                lines.append(f"(no log: {error.reason})")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, before fixtures delete the test's namespaces, attach what they hold."""
    outcome = yield
    report = outcome.get_result()
    namespaces = dict.fromkeys(_namespaces_in_use + _shared_namespaces)
    if report.failed and report.when in ("setup", "call") and namespaces:
        core_api = k8s_client.CoreV1Api(k8s_config.new_client_from_config())
        text = "\n".join(_diagnostics(core_api, ns) for ns in namespaces)
        report.sections.append(("cluster diagnostics", text))
    if report.when == "teardown":
        _namespaces_in_use.clear()
