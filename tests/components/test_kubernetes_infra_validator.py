"""InfraValidator's Kubernetes flavour: the pod it creates and how it drives that pod.

No cluster here. The real kubernetes client runs, and only the API server is replaced: an
in-process stand-in for urllib3's PoolManager answers the pod requests the way the API
server does (JSON pods, Status errors, 404 after deletion), so the requests checked are the
exact ones a cluster would receive. tests/cluster runs the same calls against a cluster.
"""

from __future__ import annotations

import json
import re
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import urllib3
from kubernetes import client as k8s_client
from tfx import v1 as tfx
from tfx.components.infra_validator import error_types, serving_bins
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from pipeline.components import kubernetes_infra_validator as kiv

NAMESPACE = "pipelines"
STEP_POD = kiv.StepPod(
    namespace=NAMESPACE,
    name="social-network-ads-abcde-system-container-impl-1234567890",
    uid="0b4c9a1e-58d3-4f4e-9d52-6f1c2b7e8a90",
)
TAG = "2.16.1"
GCS_MODEL = "gs://tfxkfp-artifacts/root/blessing/.serving-model/social_network_ads/1700000000"
CLAIM = kiv.ModelVolume(claim_name="pipeline-root", mount_path="/pipeline-root")
CLAIM_MODEL = "/pipeline-root/run-1/blessing/.serving-model/social_network_ads/1700000000"
POD_IP = "10.244.0.7"
FAST = 0.01  # poll interval for the control-flow tests
SCHEMA_VERSIONS = [kubernetes_validate.latest_version(), "1.30.0"]
_POD_PATH = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?(?P<log>/log)?")
_ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def _json_response(status: int, payload: dict) -> urllib3.HTTPResponse:
    return urllib3.HTTPResponse(
        body=json.dumps(payload).encode(), status=status, reason=HTTPStatus(status).phrase,
        headers={"Content-Type": "application/json"}, preload_content=True,
    )


def _status_response(code: int, reason: str, message: str) -> urllib3.HTTPResponse:
    """A metav1.Status, the body the API server sends with every error."""
    return _json_response(code, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })


def _pod_status(phase: str, image: str) -> dict:
    container = {"name": kiv.CONTAINER_NAME, "image": image, "imageID": "", "restartCount": 0,
                 "ready": phase == "Running"}
    if phase == "Unschedulable":
        return {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory.",
        }]}
    if phase == "Pending":
        container["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return {"phase": phase, "containerStatuses": [container]}
    if phase == "Running":
        container["state"] = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
        return {"phase": phase, "podIP": POD_IP, "containerStatuses": [container]}
    container["state"] = {"terminated": {
        "exitCode": 1, "reason": "Error", "message": "Could not find base path",
    }}
    return {"phase": phase, "podIP": POD_IP, "containerStatuses": [container]}


class FakeApiServer:
    """The pods API of a Kubernetes API server, in place of the client's connection pool.

    A created pod walks through ``phases``, one per read (the last one repeats). Bodies are
    checked strictly against the Kubernetes schema, as the API server's decoder does.
    """

    def __init__(self, phases=("Pending", "Running"), forbid_create: str | None = None,
                 failing_deletes: int = 0, on_create=None, denied: frozenset[str] = frozenset(),
                 access_review_error: int | None = None):
        self.phases = list(phases)
        # What SelfSubjectAccessReviews answer "no" to, as "<verb> <resource>[/<subresource>]".
        self.denied = denied
        self.access_review_error = access_review_error
        self.forbid_create = forbid_create
        self.failing_deletes = failing_deletes
        self.on_create = on_create
        self.pods: dict[tuple[str, str], dict] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.log_queries: list[dict] = []
        self._reads: dict[str, int] = {}

    def add_pod(self, namespace: str, name: str, uid: str) -> None:
        self.pods[(namespace, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"containers": [{"name": "main", "image": "pipeline:dev"}]},
            "status": {"phase": "Running"},
        }

    def request(self, method, url, body=None, fields=None, **_):
        parts = urlsplit(url)
        self.requests.append((method, parts.path))
        if method == "POST" and parts.path == _ACCESS_REVIEW_PATH:
            return self._review_access(json.loads(body))
        match = _POD_PATH.fullmatch(parts.path)
        assert match, f"unexpected request {method} {url}"
        namespace, name = match["ns"], match["name"]
        if method == "POST" and name is None:
            return self._create(namespace, json.loads(body))
        pod = self.pods.get((namespace, name))
        if pod is None:
            return _status_response(404, "NotFound", f'pods "{name}" not found')
        if method == "GET" and match["log"]:
            self.log_queries.append(dict(fields or []))
            return urllib3.HTTPResponse(
                body=b"Building single TensorFlow model file config\nRunning gRPC 8500\n",
                status=200, reason="OK", preload_content=True,
            )
        if method == "GET":
            return _json_response(200, self._advance(pod))
        if method == "DELETE":
            if self.failing_deletes:
                self.failing_deletes -= 1
                return _status_response(500, "InternalError", "etcdserver: request timed out")
            del self.pods[(namespace, name)]
            self.deleted.append(name)
            return _json_response(200, pod)
        raise AssertionError(f"unexpected request {method} {url}")

    def _review_access(self, review: dict) -> urllib3.HTTPResponse:
        """The authorizer's answer, as the API server returns it (observed on v1.34)."""
        if self.access_review_error:
            return _status_response(self.access_review_error, "Forbidden", "access reviews off")
        attributes = review["spec"]["resourceAttributes"]
        asked = f"{attributes['verb']} {attributes['resource']}/{attributes.get('subresource', '')}"
        review["status"] = {"allowed": asked.rstrip("/") not in self.denied}
        return _json_response(201, {"apiVersion": "authorization.k8s.io/v1",
                                    "kind": "SelfSubjectAccessReview", **review})

    def _create(self, namespace: str, pod: dict) -> urllib3.HTTPResponse:
        if self.forbid_create:
            return _status_response(403, "Forbidden", self.forbid_create)
        pod = {"apiVersion": "v1", "kind": "Pod", **pod}  # the URL says what it is
        try:
            kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as error:
            return _status_response(422, "Invalid", str(error))
        self.created.append(json.loads(json.dumps(pod)))
        if self.on_create:
            self.on_create(pod)
        pod["metadata"]["uid"] = f"uid-{len(self.created)}"
        pod["status"] = {"phase": "Pending"}
        self.pods[(namespace, pod["metadata"]["name"])] = pod
        return _json_response(201, pod)

    def _advance(self, pod: dict) -> dict:
        name = pod["metadata"]["name"]
        if not name.startswith(kiv.POD_NAME_PREFIX):
            return pod
        step = self._reads.get(name, 0)
        self._reads[name] = step + 1
        phase = self.phases[min(step, len(self.phases) - 1)]
        pod["status"] = _pod_status(phase, pod["spec"]["containers"][0]["image"])
        return pod


def _core_api(server: FakeApiServer) -> k8s_client.CoreV1Api:
    api_client = k8s_client.ApiClient(k8s_client.Configuration(host="https://kube-apiserver"))
    api_client.rest_client.pool_manager = server
    return k8s_client.CoreV1Api(api_client)


def _spec(tag: str = TAG, **kubernetes) -> infra_validator_pb2.ServingSpec:
    return infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[tag]),
        kubernetes=infra_validator_pb2.KubernetesConfig(**kubernetes),
        model_name="social_network_ads",
    )


def _runner(server: FakeApiServer | None = None, model_path: str = GCS_MODEL,
            spec: infra_validator_pb2.ServingSpec | None = None, **kwargs):
    spec = spec or _spec()
    [binary] = serving_bins.parse_serving_binaries(spec)
    kwargs.setdefault("poll_interval_seconds", FAST)
    return kiv.KubernetesModelServerRunner(
        model_path, binary, spec, _core_api(server or FakeApiServer()), STEP_POD, **kwargs
    )


def _manifest(runner) -> dict:
    return k8s_client.ApiClient().sanitize_for_serialization(runner.pod)


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


# The pod, as an object.


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("model_path, volume", [(GCS_MODEL, None), (CLAIM_MODEL, CLAIM)])
def test_pod_is_a_valid_pod_for_old_and_new_clusters(version, model_path, volume):
    pod = _manifest(_runner(model_path=model_path, model_volume=volume))
    kubernetes_validate.validate(pod, version, strict=True)


@pytest.mark.parametrize("model_path, volume", [(GCS_MODEL, None), (CLAIM_MODEL, CLAIM)])
def test_pod_meets_restricted_pod_security(model_path, volume):
    pod = _manifest(_runner(model_path=model_path, model_volume=volume))
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
    pod = _manifest(_runner(run_as_user=65532, run_as_group=65533))
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532
    assert pod["spec"]["containers"][0]["securityContext"]["runAsGroup"] == 65533
    with pytest.raises(kiv.KubernetesServingError, match="non-zero"):
        _runner(run_as_user=0)


def test_pod_is_owned_by_the_step_pod_and_labelled():
    metadata = _manifest(_runner())["metadata"]
    assert metadata["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": STEP_POD.name, "uid": STEP_POD.uid}
    ]
    assert metadata["namespace"] == NAMESPACE
    assert metadata["name"].startswith(kiv.POD_NAME_PREFIX)
    assert metadata["labels"] == {
        "app.kubernetes.io/name": "tensorflow-serving",
        "app.kubernetes.io/component": "infra-validator",
        "app.kubernetes.io/part-of": "tfx-kfp-gke",
        "tfx-kfp-gke/step-pod-uid": STEP_POD.uid,
    }


def test_pod_runs_pinned_tf_serving_on_the_model_with_a_hard_deadline():
    pod = _manifest(_runner())
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
    assert spec["activeDeadlineSeconds"] == kiv.DEFAULT_ACTIVE_DEADLINE_SECONDS
    assert "serviceAccountName" not in spec
    configured = _manifest(_runner(spec=_spec(
        active_deadline_seconds=900, service_account_name="tf-serving-reader",
    )))["spec"]
    assert configured["activeDeadlineSeconds"] == 900
    assert configured["serviceAccountName"] == "tf-serving-reader"


def test_resources_have_requests_and_limits_and_take_overrides():
    [container] = _manifest(_runner())["spec"]["containers"]
    assert container["resources"] == kiv.DEFAULT_RESOURCES
    spec = _spec(serving_pod_overrides=infra_validator_pb2.PodOverrides(
        resources=infra_validator_pb2.Resources(limits={"memory": "2Gi"},
                                                requests={"cpu": "500m"}),
    ))
    [container] = _manifest(_runner(spec=spec))["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}


def test_pod_overrides_add_annotations_and_env():
    spec = _spec(serving_pod_overrides=infra_validator_pb2.PodOverrides(
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        env=[
            infra_validator_pb2.EnvVar(name="TF_CPP_MIN_LOG_LEVEL", value="1"),
            infra_validator_pb2.EnvVar(name="TOKEN", value_from=infra_validator_pb2.EnvVarSource(
                secret_key_ref=infra_validator_pb2.SecretKeySelector(name="s", key="k"))),
        ],
    ))
    pod = _manifest(_runner(spec=spec))
    assert pod["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert pod["spec"]["containers"][0]["env"] == [
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_model_on_gcs_needs_no_volume():
    pod = _manifest(_runner(model_path=GCS_MODEL))
    assert [volume["name"] for volume in pod["spec"]["volumes"]] == ["tmp"]
    assert pod["spec"]["volumes"][0]["emptyDir"] == {"sizeLimit": "64Mi"}


def test_model_on_a_claim_is_mounted_read_only_where_the_step_mounts_it():
    pod = _manifest(_runner(model_path=CLAIM_MODEL, model_volume=CLAIM))
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
    with pytest.raises(kiv.KubernetesServingError, match="TF Serving cannot read"):
        _runner(model_path=model_path, model_volume=volume)


def test_model_outside_tf_serving_layout_is_refused():
    with pytest.raises(kiv.KubernetesServingError, match="TF Serving's layout"):
        _runner(model_path="gs://bucket/model/Format-Serving")


@pytest.mark.parametrize("tag", ["latest", "", "latest-gpu"])
def test_unpinned_image_is_refused(tag):
    with pytest.raises(kiv.KubernetesServingError, match="not pinned"):
        _runner(spec=_spec(tag=tag))


@pytest.mark.parametrize("image, pinned", [
    ("tensorflow/serving:2.16.1", True),
    ("tensorflow/serving@sha256:" + "a" * 64, True),
    ("localhost:5000/tensorflow/serving:2.16.1", True),
    ("localhost:5000/tensorflow/serving", False),
    ("tensorflow/serving", False),
])
def test_pinned_means_a_fixed_tag_or_a_digest(image, pinned):
    if pinned:
        assert kiv.check_pinned(image) == image
    else:
        with pytest.raises(kiv.KubernetesServingError):
            kiv.check_pinned(image)


# Driving the pod through the API.


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
    with pytest.raises(kiv.KubernetesServingError) as raised:
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


# Where the step pod is.


def test_namespace_from_kfp_environment_wins(tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("from-file")
    environ = {"KFP_NAMESPACE": "from-env", "KFP_POD_NAME": "step", "KFP_POD_UID": "u-1"}
    step = kiv.StepPod.discover(_core_api(FakeApiServer()), environ, str(namespace_file))
    assert step == kiv.StepPod(namespace="from-env", name="step", uid="u-1")


def test_namespace_from_the_service_account_mount(tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("ml-team\n")
    server = FakeApiServer()
    environ = {"KFP_POD_NAME": "step", "KFP_POD_UID": "u-1"}
    step = kiv.StepPod.discover(_core_api(server), environ, str(namespace_file))
    assert step.namespace == "ml-team"
    assert server.requests == []  # uid from the downward API: no read needed


def test_no_namespace_anywhere_is_a_clear_error(tmp_path):
    with pytest.raises(kiv.KubernetesServingError, match="KFP_NAMESPACE is unset and .* missing"):
        kiv.StepPod.discover(_core_api(FakeApiServer()), {"KFP_POD_NAME": "step"},
                             str(tmp_path / "namespace"))


def test_missing_uid_is_read_from_the_pod_named_by_hostname():
    server = FakeApiServer()
    server.add_pod(NAMESPACE, "step-pod-7", "uid-of-step")
    environ = {"KFP_NAMESPACE": NAMESPACE, "HOSTNAME": "step-pod-7"}
    step = kiv.StepPod.discover(_core_api(server), environ)
    assert step == kiv.StepPod(namespace=NAMESPACE, name="step-pod-7", uid="uid-of-step")
    assert server.requests == [("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/step-pod-7")]


def test_missing_uid_of_an_unknown_pod_is_a_clear_error():
    environ = {"KFP_NAMESPACE": NAMESPACE, "HOSTNAME": "nowhere"}
    with pytest.raises(kiv.KubernetesServingError, match="KFP_POD_UID is unset .* not found"):
        kiv.StepPod.discover(_core_api(FakeApiServer()), environ)


def test_no_pod_name_is_a_clear_error():
    with pytest.raises(kiv.KubernetesServingError, match="KFP_POD_NAME and HOSTNAME"):
        kiv.StepPod.discover(_core_api(FakeApiServer()), {"KFP_NAMESPACE": NAMESPACE})


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"TFXKFP_MODEL_PVC": "root", "TFXKFP_MODEL_PVC_MOUNT_PATH": "/root/"},
     kiv.ModelVolume("root", "/root")),
])
def test_model_volume_from_the_step_environment(environ, expected):
    assert kiv.ModelVolume.from_environment(environ) == expected


@pytest.mark.parametrize("environ", [
    {"TFXKFP_MODEL_PVC": "root"},
    {"TFXKFP_MODEL_PVC_MOUNT_PATH": "/root"},
    {"TFXKFP_MODEL_PVC": "root", "TFXKFP_MODEL_PVC_MOUNT_PATH": "relative"},
])
def test_half_a_model_volume_is_refused(environ):
    with pytest.raises(kiv.KubernetesServingError, match="go together"):
        kiv.ModelVolume.from_environment(environ)


# The component and its executor.


def test_component_is_infra_validator_with_the_kubernetes_executor():
    component = kiv.KubernetesInfraValidator(
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        serving_spec=_spec(),
    )
    assert component.executor_spec.executor_class is kiv.KubernetesInfraValidatorExecutor
    assert isinstance(component.spec, standard_component_specs.InfraValidatorSpec)
    assert "blessing" in component.outputs


def test_kubeflow_v2_compiler_runs_the_kubernetes_executor(tmp_path):
    # TFX's KFP v2 compiler refuses tfx.components.InfraValidator and its subclasses.
    model = tfx.dsl.Importer(
        source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model
    ).with_id("model")
    validator = kiv.KubernetesInfraValidator(model=model.outputs["result"], serving_spec=_spec())
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="pipeline:dev"),
        output_dir=str(tmp_path), output_filename="pipeline.json",
    ).run(tfx.dsl.Pipeline(pipeline_name="p", pipeline_root="gs://bucket/root",
                           components=[model, validator]))
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    container = spec["deploymentSpec"]["executors"]["KubernetesInfraValidator_executor"]
    assert container["container"]["args"][:2] == [
        "--executor_class_path",
        "pipeline.components.kubernetes_infra_validator.KubernetesInfraValidatorExecutor",
    ]


class _Executor(kiv.KubernetesInfraValidatorExecutor):
    """The executor, connected to the fake API server instead of a cluster."""

    server: FakeApiServer

    def _connect(self):
        return _core_api(self.server)


def _run_executor(tmp_path: Path, server: FakeApiServer, spec, max_loading_seconds=5):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    (tmp_path / "model" / "Format-Serving").mkdir(parents=True)
    (tmp_path / "model" / "Format-Serving" / "saved_model.pb").write_bytes(b"graph")
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    (tmp_path / "blessing").mkdir()
    executor = _Executor()
    executor.server = server
    executor.Do(
        {standard_component_specs.MODEL_KEY: [model]},
        {standard_component_specs.BLESSING_KEY: [blessing]},
        {
            standard_component_specs.SERVING_SPEC_KEY: proto_utils.proto_to_json(spec),
            standard_component_specs.VALIDATION_SPEC_KEY: proto_utils.proto_to_json(
                infra_validator_pb2.ValidationSpec(
                    max_loading_time_seconds=max_loading_seconds, num_tries=2)
            ),
        },
    )
    return blessing


@pytest.fixture
def step_environment(monkeypatch, tmp_path):
    """A KFP v2 step's environment with a claim mounted at tmp_path/volume.

    The artifacts are outside the claim, as in the KFP launcher's local copy of the object
    store on kind/minikube.
    """
    monkeypatch.setenv("KFP_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("KFP_POD_NAME", STEP_POD.name)
    monkeypatch.setenv("KFP_POD_UID", STEP_POD.uid)
    monkeypatch.setenv("TFXKFP_MODEL_PVC", "tfx-store")
    monkeypatch.setenv("TFXKFP_MODEL_PVC_MOUNT_PATH", str(tmp_path / "volume"))


def test_executor_stages_the_model_where_the_serving_pod_reads_it(tmp_path, step_environment):
    staged = []

    def model_in_serving_layout(pod):
        base_path = pod["spec"]["containers"][0]["args"][-1].removeprefix("--model_base_path=")
        staged.extend(str(path.relative_to(base_path)) for path in Path(base_path).rglob("*.pb"))

    server = FakeApiServer(phases=["Pending", "Failed"], on_create=model_in_serving_layout)
    blessing = _run_executor(tmp_path, server, _spec())

    assert len(server.created) == 2  # one pod per attempt
    assert server.pods == {}  # every one deleted
    assert len(server.log_queries) == 2  # the server's log read after each failure
    [version] = {path.split("/")[0] for path in staged}
    assert staged == [f"{version}/saved_model.pb"] * 2
    base_path = server.created[0]["spec"]["containers"][0]["args"][-1]
    staging = tmp_path / "volume" / ".infra-validation" / STEP_POD.name
    assert base_path == f"--model_base_path={staging}/social_network_ads"
    assert server.created[0]["spec"]["volumes"][1]["persistentVolumeClaim"] == {
        "claimName": "tfx-store", "readOnly": True}
    assert (Path(blessing.uri) / "INFRA_NOT_BLESSED").exists()
    assert blessing.get_int_custom_property("blessed") == 0
    assert not staging.exists()  # the copy is removed after validation


def test_staging_is_beside_a_gcs_blessing_and_needs_no_claim():
    assert kiv.staging_dir("gs://b/root/blessing", None, "step-1") == (
        "gs://b/root/blessing/.serving-model"
    )
    volume = kiv.ModelVolume(claim_name="tfx-store", mount_path="/tfx")
    assert kiv.staging_dir("/minio/mlpipeline/v2/artifacts/r/blessing", volume, "step-1") == (
        "/tfx/.infra-validation/step-1"
    )


@pytest.mark.parametrize("spec, max_loading_seconds, message", [
    (infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TAG]),
        local_docker=infra_validator_pb2.LocalDockerConfig()), 5, "needs ServingSpec.kubernetes"),
    (infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(),
        kubernetes=infra_validator_pb2.KubernetesConfig()), 5, "no tag or digest"),
    (_spec(tag="latest"), 5, "not pinned"),
    (_spec(active_deadline_seconds=60), 60, "must exceed max_loading_time_seconds"),
])
def test_executor_refuses_bad_configuration_before_any_pod(
        tmp_path, step_environment, spec, max_loading_seconds, message):
    server = FakeApiServer()
    with pytest.raises(kiv.KubernetesServingError, match=message):
        _run_executor(tmp_path, server, spec, max_loading_seconds)
    assert server.requests == []


def test_executor_refuses_a_pipeline_root_the_serving_pod_cannot_read(
        tmp_path, step_environment, monkeypatch):
    monkeypatch.delenv("TFXKFP_MODEL_PVC")
    monkeypatch.delenv("TFXKFP_MODEL_PVC_MOUNT_PATH")
    server = FakeApiServer()
    with pytest.raises(kiv.KubernetesServingError, match="TF Serving cannot read"):
        _run_executor(tmp_path, server, _spec())
    assert server.requests == []


def test_executor_without_the_role_fails_once_naming_what_is_missing(tmp_path, step_environment):
    # Seen on a real cluster: without this check the 403 of the pod create was retried as a
    # failed validation num_tries times and the step ended "not blessed".
    server = FakeApiServer(denied=frozenset({"create pods", "get pods/log"}))
    with pytest.raises(kiv.KubernetesServingError) as raised:
        _run_executor(tmp_path, server, _spec())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"the step's service account may not create pods, get pods/log in namespace {NAMESPACE}: "
        "bind it to a Role with pods create/get/list/watch/delete and pods/log get there")
    assert server.created == []
    assert not (tmp_path / "blessing" / "INFRA_NOT_BLESSED").exists()


def test_executor_goes_on_when_the_cluster_answers_no_access_review(tmp_path, step_environment):
    server = FakeApiServer(phases=["Failed"], access_review_error=403)
    blessing = _run_executor(tmp_path, server, _spec())
    assert len(server.created) == 2
    assert blessing.get_int_custom_property("blessed") == 0
