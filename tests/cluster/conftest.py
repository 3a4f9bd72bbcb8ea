"""Cluster tests run against the cluster KUBECONFIG points at, and skip without one."""

from __future__ import annotations

import os
import secrets
import time

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

_SERVICE_ACCOUNT_WAIT_SECONDS = 60


@pytest.fixture(scope="session")
def core_api() -> k8s_client.CoreV1Api:
    """A client for the KUBECONFIG cluster; skips the test when there is none."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set: no cluster to run the cluster tests against")
    return k8s_client.CoreV1Api(k8s_config.new_client_from_config())


@pytest.fixture
def restricted_namespace(core_api: k8s_client.CoreV1Api):
    """A throwaway namespace that enforces the `restricted` Pod Security Standard."""
    name = f"tfxkfp-test-{secrets.token_hex(3)}"
    core_api.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(
        name=name,
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )))
    try:
        # Pods need the namespace's default service account, which a controller adds.
        deadline = time.monotonic() + _SERVICE_ACCOUNT_WAIT_SECONDS
        while not core_api.list_namespaced_service_account(
            name, field_selector="metadata.name=default"
        ).items:
            assert time.monotonic() < deadline, f"no default service account in {name}"
            time.sleep(1)
        yield name
    finally:
        core_api.delete_namespace(name)
