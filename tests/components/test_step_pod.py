"""Finding the KFP step pod the Kubernetes InfraValidator runs in, and the claim it mounts."""

from __future__ import annotations

import pytest

from fake_kubernetes import NAMESPACE, FakeApiServer, core_api
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.step_pod import ModelVolume, StepPod


def test_namespace_from_kfp_environment_wins(tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("from-file")
    environ = {"KFP_NAMESPACE": "from-env", "KFP_POD_NAME": "step", "KFP_POD_UID": "u-1"}
    step = StepPod.discover(core_api(FakeApiServer()), environ, str(namespace_file))
    assert step == StepPod(namespace="from-env", name="step", uid="u-1")


def test_namespace_from_the_service_account_mount(tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("ml-team\n")
    server = FakeApiServer()
    environ = {"KFP_POD_NAME": "step", "KFP_POD_UID": "u-1"}
    step = StepPod.discover(core_api(server), environ, str(namespace_file))
    assert step.namespace == "ml-team"
    assert server.requests == []  # uid from the downward API: no read needed


def test_no_namespace_anywhere_is_a_clear_error(tmp_path):
    with pytest.raises(KubernetesServingError, match="KFP_NAMESPACE is unset and .* missing"):
        StepPod.discover(core_api(FakeApiServer()), {"KFP_POD_NAME": "step"},
                             str(tmp_path / "namespace"))


def test_missing_uid_is_read_from_the_pod_named_by_hostname():
    server = FakeApiServer()
    server.add_pod(NAMESPACE, "step-pod-7", "uid-of-step")
    environ = {"KFP_NAMESPACE": NAMESPACE, "HOSTNAME": "step-pod-7"}
    step = StepPod.discover(core_api(server), environ)
    assert step == StepPod(namespace=NAMESPACE, name="step-pod-7", uid="uid-of-step")
    assert server.requests == [("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/step-pod-7")]


def test_missing_uid_of_an_unknown_pod_is_a_clear_error():
    environ = {"KFP_NAMESPACE": NAMESPACE, "HOSTNAME": "nowhere"}
    with pytest.raises(KubernetesServingError, match="KFP_POD_UID is unset .* not found"):
        StepPod.discover(core_api(FakeApiServer()), environ)


def test_no_pod_name_is_a_clear_error():
    with pytest.raises(KubernetesServingError, match="KFP_POD_NAME and HOSTNAME"):
        StepPod.discover(core_api(FakeApiServer()), {"KFP_NAMESPACE": NAMESPACE})


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"TFXKFP_MODEL_PVC": "root", "TFXKFP_MODEL_PVC_MOUNT_PATH": "/root/"},
     ModelVolume("root", "/root")),
])
def test_model_volume_from_the_step_environment(environ, expected):
    assert ModelVolume.from_environment(environ) == expected


@pytest.mark.parametrize("environ", [
    {"TFXKFP_MODEL_PVC": "root"},
    {"TFXKFP_MODEL_PVC_MOUNT_PATH": "/root"},
    {"TFXKFP_MODEL_PVC": "root", "TFXKFP_MODEL_PVC_MOUNT_PATH": "relative"},
])
def test_half_a_model_volume_is_refused(environ):
    with pytest.raises(KubernetesServingError, match="go together"):
        ModelVolume.from_environment(environ)
