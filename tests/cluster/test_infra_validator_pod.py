"""The Kubernetes InfraValidator's pod on a real cluster, in a `restricted` namespace.

A pause container stands in for the KFP step pod: it is the serving pod's owner, as the step
pod is in a pipeline run. The model path points at a bucket that does not exist; TF Serving
keeps running and retrying it, which is enough to see the pod admitted, running and gone.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from tfx.components.infra_validator import serving_bins
from tfx.proto import infra_validator_pb2

from pipeline.components import kubernetes_infra_validator as kiv
from pipeline.config import TF_SERVING_TAG

pytestmark = pytest.mark.cluster

MODEL_PATH = "gs://tfx-kfp-gke-test-no-such-bucket/probe/1"
PULL_AND_START_SECONDS = 300  # the first run pulls TF Serving's image
GONE_SECONDS = 120


def _stand_in_step_pod(core_api: k8s_client.CoreV1Api, namespace: str) -> k8s_client.V1Pod:
    runtime_default = k8s_client.V1SeccompProfile(type="RuntimeDefault")
    return core_api.create_namespaced_pod(namespace, k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(name="step"),
        spec=k8s_client.V1PodSpec(
            containers=[k8s_client.V1Container(
                name="main",
                image="registry.k8s.io/pause:3.10",
                security_context=k8s_client.V1SecurityContext(
                    allow_privilege_escalation=False,
                    capabilities=k8s_client.V1Capabilities(drop=["ALL"]),
                ),
            )],
            security_context=k8s_client.V1PodSecurityContext(
                run_as_non_root=True, run_as_user=65535, seccomp_profile=runtime_default,
            ),
            automount_service_account_token=False,
        ),
    ))


def _runner(core_api, namespace: str) -> kiv.KubernetesModelServerRunner:
    step = _stand_in_step_pod(core_api, namespace)
    # As in a step whose KFP_POD_UID is missing: the uid is read through the API.
    step_pod = kiv.StepPod.discover(
        core_api, {"KFP_NAMESPACE": namespace, "HOSTNAME": step.metadata.name}
    )
    assert step_pod.uid == step.metadata.uid
    spec = infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TF_SERVING_TAG]),
        kubernetes=infra_validator_pb2.KubernetesConfig(active_deadline_seconds=600),
        model_name="probe",
    )
    [binary] = serving_bins.parse_serving_binaries(spec)
    return kiv.KubernetesModelServerRunner(
        MODEL_PATH, binary, spec, core_api, step_pod, poll_interval_seconds=1
    )


def _wait_until_gone(core_api, namespace: str, name: str) -> None:
    deadline = time.monotonic() + GONE_SECONDS
    while time.monotonic() < deadline:
        try:
            core_api.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(1)
    pytest.fail(f"pod {namespace}/{name} still exists after {GONE_SECONDS}s")


def test_serving_pod_is_admitted_runs_and_is_deleted(core_api, restricted_namespace):
    runner = _runner(core_api, restricted_namespace)
    name = runner.pod.metadata.name
    try:
        runner.Start()
        runner.WaitUntilRunning(time.time() + PULL_AND_START_SECONDS)
        pod = core_api.read_namespaced_pod(name, restricted_namespace)
        assert runner.GetEndpoint().endswith(f"{pod.status.pod_ip}:{kiv.GRPC_PORT}")
        assert pod.metadata.owner_references[0].name == "step"
        assert isinstance(runner.GetLogs(), str)
    finally:
        runner.Stop()
    _wait_until_gone(core_api, restricted_namespace, name)
    runner.Stop()  # already gone: nothing to do, no error


def test_serving_pod_goes_with_its_step_pod(core_api, restricted_namespace):
    runner = _runner(core_api, restricted_namespace)
    runner.Start()
    core_api.delete_namespaced_pod("step", restricted_namespace)
    _wait_until_gone(core_api, restricted_namespace, runner.pod.metadata.name)
    runner.Stop()
