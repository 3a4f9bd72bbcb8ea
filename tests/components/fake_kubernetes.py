"""A stand-in Kubernetes API server, and the values the Kubernetes InfraValidator tests share.

No cluster here. The real kubernetes client runs, and only the API server is replaced: an
in-process stand-in for urllib3's PoolManager answers the pod requests the way the API
server does (JSON pods, Status errors, 404 after deletion), so the requests checked are the
exact ones a cluster would receive. tests/cluster runs the same calls against a cluster.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import urlsplit

import kubernetes_validate
import urllib3
from kubernetes import client as k8s_client
from tfx.proto import infra_validator_pb2

from pipeline.components.serving_pod import CONTAINER_NAME, POD_NAME_PREFIX
from pipeline.components.step_pod import StepPod

NAMESPACE = "pipelines"
STEP_POD = StepPod(
    namespace=NAMESPACE,
    name="social-network-ads-abcde-system-container-impl-1234567890",
    uid="0b4c9a1e-58d3-4f4e-9d52-6f1c2b7e8a90",
)
TAG = "2.16.1"
GCS_MODEL = "gs://tfxkfp-artifacts/root/blessing/.serving-model/social_network_ads/1700000000"
POD_IP = "10.244.0.7"
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
    container = {"name": CONTAINER_NAME, "image": image, "imageID": "", "restartCount": 0,
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
        if not name.startswith(POD_NAME_PREFIX):
            return pod
        step = self._reads.get(name, 0)
        self._reads[name] = step + 1
        phase = self.phases[min(step, len(self.phases) - 1)]
        pod["status"] = _pod_status(phase, pod["spec"]["containers"][0]["image"])
        return pod


def core_api(server: FakeApiServer) -> k8s_client.CoreV1Api:
    """The real client, talking to ``server`` instead of a cluster."""
    api_client = k8s_client.ApiClient(k8s_client.Configuration(host="https://kube-apiserver"))
    api_client.rest_client.pool_manager = server
    return k8s_client.CoreV1Api(api_client)


def serving_spec(tag: str = TAG, **kubernetes) -> infra_validator_pb2.ServingSpec:
    """TF Serving at ``tag`` on Kubernetes, configured by ``kubernetes``."""
    return infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[tag]),
        kubernetes=infra_validator_pb2.KubernetesConfig(**kubernetes),
        model_name="social_network_ads",
    )
