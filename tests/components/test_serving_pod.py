"""The TF Serving pod the Kubernetes InfraValidator creates, as an object.

Valid for old and new clusters, admitted under the ``restricted`` Pod Security Standard and
shaped by the ServingSpec; tests/cluster has a namespace that enforces that standard admit it.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from kubernetes import client as k8s_client
from tfx.components.infra_validator import serving_bins
from tfx.proto import infra_validator_pb2

from fake_kubernetes import GCS_MODEL, NAMESPACE, STEP_POD, TAG, serving_spec
from pipeline.components import serving_pod
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.step_pod import ModelVolume

CLAIM = ModelVolume(claim_name="pipeline-root", mount_path="/pipeline-root")
CLAIM_MODEL = "/pipeline-root/run-1/blessing/.serving-model/social_network_ads/1700000000"
SCHEMA_VERSIONS = [kubernetes_validate.latest_version(), "1.30.0"]


def _pod(model_path: str = GCS_MODEL, spec: infra_validator_pb2.ServingSpec | None = None,
         model_volume: ModelVolume | None = None,
         run_as_user: int = serving_pod.DEFAULT_RUN_AS_USER,
         run_as_group: int = serving_pod.DEFAULT_RUN_AS_GROUP) -> dict:
    """The serving pod for one image of ``spec``, serialized as the API server receives it."""
    spec = spec or serving_spec()
    [binary] = serving_bins.parse_serving_binaries(spec)
    pod = serving_pod.build_serving_pod(
        model_path=model_path, image=binary.image, serving_spec=spec, step_pod=STEP_POD,
        model_volume=model_volume, run_as_user=run_as_user, run_as_group=run_as_group,
    )
    return k8s_client.ApiClient().sanitize_for_serialization(pod)


_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}


def _restricted_violations(pod: dict) -> list[str]:
    """What the `restricted` Pod Security Standard would reject in a serialized pod."""
    spec = pod["spec"]
    pod_context = spec.get("securityContext", {})
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(key)
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= _RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} type")
    if pod_context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    for container in spec.get("initContainers", []) + spec["containers"]:
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            found.append(f"{name} privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name} allowPrivilegeEscalation")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name} capabilities drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name} capabilities add")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            found.append(f"{name} runAsNonRoot")
        if context.get("runAsUser") == 0:
            found.append(f"{name} runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name} seccompProfile")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name} hostPort")
    return found

@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("model_path, volume", [(GCS_MODEL, None), (CLAIM_MODEL, CLAIM)])
def test_pod_is_a_valid_pod_for_old_and_new_clusters(version, model_path, volume):
    pod = _pod(model_path=model_path, model_volume=volume)
    kubernetes_validate.validate(pod, version, strict=True)


@pytest.mark.parametrize("model_path, volume", [(GCS_MODEL, None), (CLAIM_MODEL, CLAIM)])
def test_pod_meets_restricted_pod_security(model_path, volume):
    pod = _pod(model_path=model_path, model_volume=volume)
    assert _restricted_violations(pod) == []
    spec, [container] = pod["spec"], pod["spec"]["containers"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 1000,
        "runAsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_restricted_check_catches_a_pod_without_security_context():
    # The kind of pod TFX's own Kubernetes runner creates: no security context at all.
    pod = {"spec": {"containers": [{"name": "model-server", "image": "tensorflow/serving"}],
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}
    assert _restricted_violations(pod) == [
        "volume host type", "model-server allowPrivilegeEscalation",
        "model-server capabilities drop ALL", "model-server runAsNonRoot",
        "model-server seccompProfile",
    ]


def test_run_as_ids_are_configurable_but_never_root():
    pod = _pod(run_as_user=65532, run_as_group=65533)
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532
    assert pod["spec"]["containers"][0]["securityContext"]["runAsGroup"] == 65533
    with pytest.raises(KubernetesServingError, match="non-zero"):
        _pod(run_as_user=0)


def test_pod_is_owned_by_the_step_pod_and_labelled():
    metadata = _pod()["metadata"]
    assert metadata["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": STEP_POD.name, "uid": STEP_POD.uid}
    ]
    assert metadata["namespace"] == NAMESPACE
    assert metadata["name"].startswith(serving_pod.POD_NAME_PREFIX)
    assert metadata["labels"] == {
        "app.kubernetes.io/name": "tensorflow-serving",
        "app.kubernetes.io/component": "infra-validator",
        "app.kubernetes.io/part-of": "tfx-kfp-gke",
        "tfx-kfp-gke/step-pod-uid": STEP_POD.uid,
    }


def test_pod_runs_pinned_tf_serving_on_the_model_with_a_hard_deadline():
    pod = _pod()
    spec, [container] = pod["spec"], pod["spec"]["containers"]
    assert container["image"] == f"tensorflow/serving:{TAG}"
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert container["args"] == [
        "--port=8500", "--rest_api_port=8501", "--model_name=social_network_ads",
        ("--model_base_path=gs://tfxkfp-artifacts/root/blessing/.serving-model/"
         "social_network_ads"),
    ]
    assert container["ports"] == [{"name": "grpc", "containerPort": 8500},
                                  {"name": "http", "containerPort": 8501}]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == serving_pod.DEFAULT_ACTIVE_DEADLINE_SECONDS
    assert "serviceAccountName" not in spec
    configured = _pod(spec=serving_spec(
        active_deadline_seconds=900, service_account_name="tf-serving-reader",
    ))["spec"]
    assert configured["activeDeadlineSeconds"] == 900
    assert configured["serviceAccountName"] == "tf-serving-reader"


def test_resources_have_requests_and_limits_and_take_overrides():
    [container] = _pod()["spec"]["containers"]
    assert container["resources"] == serving_pod.DEFAULT_RESOURCES
    spec = serving_spec(serving_pod_overrides=infra_validator_pb2.PodOverrides(
        resources=infra_validator_pb2.Resources(limits={"memory": "2Gi"},
                                                requests={"cpu": "500m"}),
    ))
    [container] = _pod(spec=spec)["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}


def test_pod_overrides_add_annotations_and_env():
    spec = serving_spec(serving_pod_overrides=infra_validator_pb2.PodOverrides(
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        env=[
            infra_validator_pb2.EnvVar(name="TF_CPP_MIN_LOG_LEVEL", value="1"),
            infra_validator_pb2.EnvVar(name="TOKEN", value_from=infra_validator_pb2.EnvVarSource(
                secret_key_ref=infra_validator_pb2.SecretKeySelector(name="s", key="k"))),
        ],
    ))
    pod = _pod(spec=spec)
    assert pod["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert pod["spec"]["containers"][0]["env"] == [
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_model_on_gcs_needs_no_volume():
    pod = _pod(model_path=GCS_MODEL)
    assert [volume["name"] for volume in pod["spec"]["volumes"]] == ["tmp"]
    assert pod["spec"]["volumes"][0]["emptyDir"] == {"sizeLimit": "64Mi"}


def test_model_on_a_claim_is_mounted_read_only_where_the_step_mounts_it():
    pod = _pod(model_path=CLAIM_MODEL, model_volume=CLAIM)
    assert pod["spec"]["volumes"][1] == {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "pipeline-root", "readOnly": True},
    }
    assert pod["spec"]["containers"][0]["volumeMounts"][1] == {
        "name": "model", "mountPath": "/pipeline-root", "readOnly": True,
    }
    assert pod["spec"]["containers"][0]["args"][-1] == (
        "--model_base_path=/pipeline-root/run-1/blessing/.serving-model/social_network_ads"
    )


@pytest.mark.parametrize("model_path, volume", [
    (CLAIM_MODEL, None),  # a path, but no claim configured
    ("/elsewhere/social_network_ads/1", CLAIM),  # not under the claim's mount
    ("/pipeline-rootless/social_network_ads/1", CLAIM),  # a prefix is not a parent
    ("s3://bucket/social_network_ads/1", CLAIM),
])
def test_model_the_serving_pod_cannot_read_is_refused(model_path, volume):
    with pytest.raises(KubernetesServingError, match="TF Serving cannot read"):
        _pod(model_path=model_path, model_volume=volume)


def test_model_outside_tf_serving_layout_is_refused():
    with pytest.raises(KubernetesServingError, match="TF Serving's layout"):
        _pod(model_path="gs://bucket/model/Format-Serving")


@pytest.mark.parametrize("tag", ["latest", "", "latest-gpu"])
def test_unpinned_image_is_refused(tag):
    with pytest.raises(KubernetesServingError, match="not pinned"):
        _pod(spec=serving_spec(tag=tag))


@pytest.mark.parametrize("image, pinned", [
    ("tensorflow/serving:2.16.1", True),
    ("tensorflow/serving@sha256:" + "a" * 64, True),
    ("localhost:5000/tensorflow/serving:2.16.1", True),
    ("localhost:5000/tensorflow/serving", False),
    ("tensorflow/serving", False),
])
def test_pinned_means_a_fixed_tag_or_a_digest(image, pinned):
    if pinned:
        assert serving_pod.check_pinned(image) == image
    else:
        with pytest.raises(KubernetesServingError):
            serving_pod.check_pinned(image)

