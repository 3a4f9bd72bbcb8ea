"""The Kubernetes InfraValidator's pod on a real cluster, in a namespace enforcing `restricted`.

The runner is driven from the test process; tests/cluster/test_infra_validator_in_pod.py runs
the whole executor inside a step pod. A pause container stands in for the KFP step pod: it is
the serving pod's owner, as the step pod is in a pipeline run. TF Serving is the stand-in image
(TF_SERVING_STANDIN_IMAGE: tensorflow/serving:2.16.1 cannot be pulled here), chosen through
ServingSpec.tensorflow_serving image_name and tags. The model path points at a bucket that
does not exist; the server keeps running without a model, which is enough to see the pod
admitted, running and gone.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from tfx.components.infra_validator import serving_bins
from tfx.proto import infra_validator_pb2

from pipeline.components.kubernetes_serving_runner import KubernetesModelServerRunner
from pipeline.components.serving_pod import GRPC_PORT
from pipeline.components.step_pod import StepPod

pytestmark = pytest.mark.cluster

MODEL_PATH = "gs://tfx-kfp-gke-test-no-such-bucket/probe/1"
START_SECONDS = 120  # the image is in the node's containerd already: no pull
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


def _runner(core_api, namespace: str, image: str) -> KubernetesModelServerRunner:
    step = _stand_in_step_pod(core_api, namespace)
    # As in a step whose KFP_POD_UID is missing: the uid is read through the API.
    step_pod = StepPod.discover(
        core_api, {"KFP_NAMESPACE": namespace, "HOSTNAME": step.metadata.name}
    )
    assert step_pod.uid == step.metadata.uid
    image_name, _, tag = image.rpartition(":")
    spec = infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(
            image_name=image_name, tags=[tag]),
        kubernetes=infra_validator_pb2.KubernetesConfig(active_deadline_seconds=600),
        model_name="probe",
    )
    [binary] = serving_bins.parse_serving_binaries(spec)
    return KubernetesModelServerRunner(
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


def _wait_for_log(runner: KubernetesModelServerRunner, text: str) -> str:
    deadline = time.monotonic() + START_SECONDS
    while text not in (logs := runner.GetLogs() or ""):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not in the serving pod's log after {START_SECONDS}s:\n{logs}")
        time.sleep(1)
    return logs


def test_serving_pod_is_admitted_runs_and_is_deleted(core_api, local_images,
                                                     restricted_namespace):
    image = local_images["TF_SERVING_STANDIN_IMAGE"]
    runner = _runner(core_api, restricted_namespace, image)
    name = runner.pod.metadata.name
    try:
        runner.Start()  # a namespace enforcing `restricted` admits it
        runner.WaitUntilRunning(time.time() + START_SECONDS)
        pod = core_api.read_namespaced_pod(name, restricted_namespace)
        assert runner.GetEndpoint() == f"{pod.status.pod_ip}:{GRPC_PORT}"
        assert pod.metadata.owner_references[0].name == "step"
        assert pod.spec.containers[0].image == image
        # The stand-in's first line: the image's server is what runs.
        _wait_for_log(runner, "tf_serving_standin: this is the TF Serving stand-in")
    finally:
        runner.Stop()
    _wait_until_gone(core_api, restricted_namespace, name)
    runner.Stop()  # already gone: nothing to do, no error


def test_serving_pod_goes_with_its_step_pod(core_api, local_images, restricted_namespace):
    runner = _runner(core_api, restricted_namespace, local_images["TF_SERVING_STANDIN_IMAGE"])
    runner.Start()
    core_api.delete_namespaced_pod("step", restricted_namespace)
    _wait_until_gone(core_api, restricted_namespace, runner.pod.metadata.name)
    runner.Stop()
