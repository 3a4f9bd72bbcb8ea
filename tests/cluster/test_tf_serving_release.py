"""helm/tf-serving as a release on a real cluster: install, serve, pick up a version, upgrade,
`helm test`, uninstall, all through Helm's SDK (the same library the `helm` CLI is built on).

TF Serving's C++ server cannot be had here: the release runs the TF Serving stand-in
(tests/standins/tf_serving, image TF_SERVING_STANDIN_IMAGE) at the path the chart runs,
/usr/bin/tensorflow_model_server, with the chart's own flags. What the stand-in does not
prove is listed in the README ("What is proven here").

The model store is the node's /var/local/tfx (the local cluster's PersistentVolumes): a model
version is "pushed" by copying it to serving/<model>/<version>, as the Pusher does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import helm_python
import pytest
import tensorflow as tf
import yaml
from kubernetes import client as k8s_client
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import REPO, watch_namespace
from pipeline.models.features import PROBABILITY_KEY

pytestmark = pytest.mark.cluster

CHART = REPO / "helm" / "tf-serving"
NAMESPACE = "tfx-serving"
RELEASE = "tf-serving"
MODEL = "social_network_ads"
# The node directory behind the tfx-models claim (k8s/components/local-cluster).
SERVING_DIR = Path("/var/local/tfx/serving") / MODEL
READY_SECONDS = 180
NEW_VERSION_SECONDS = 60
HELM_SECONDS = 300
POLL_SECONDS = 2  # the release's model.fileSystemPollWaitSeconds: versions appear within it
# The chart's readiness probe: 10s period x 3 failures, plus the version poll and slack.
READINESS_FLIP_SECONDS = 120
RELEASE_PODS = f"app.kubernetes.io/instance={RELEASE}"


def _image_values(reference: str) -> dict[str, str]:
    repository, _, tag = reference.rpartition(":")
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


@pytest.fixture(scope="module")
def helm(api_client) -> helm_python.Config:
    config = helm_python.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=NAMESPACE)
    yield config
    config.close()


@pytest.fixture(scope="module")
def values(local_images) -> dict:
    values = yaml.safe_load((CHART / "ci" / "kind-values.yaml").read_text())
    values["image"] = _image_values(local_images["TF_SERVING_STANDIN_IMAGE"])
    # The test pod needs python3 and nothing else; the stand-in's image has it
    # (helm/tf-serving/ci/local-values.yaml does the same).
    values["helmTest"] = {"image": _image_values(local_images["TF_SERVING_STANDIN_IMAGE"])}
    values["model"]["fileSystemPollWaitSeconds"] = POLL_SECONDS
    return values


@pytest.fixture(scope="module")
def model_store(tiny_training):
    """Version 1 of the model in the store; every version the tests add is removed after."""
    if not SERVING_DIR.parent.is_dir():
        pytest.fail(f"{SERVING_DIR.parent} does not exist: is the local cluster up?")
    existing = [p.name for p in SERVING_DIR.glob("*")] if SERVING_DIR.exists() else []
    assert not existing, f"{SERVING_DIR} already holds {existing}: another run's leftovers"
    _push(tiny_training.serving_model_dir, 1)
    yield tiny_training
    shutil.rmtree(SERVING_DIR, ignore_errors=True)
    SERVING_DIR.mkdir(mode=0o777)
    SERVING_DIR.chmod(0o777)


def _push(model_dir: Path, version: int) -> None:
    """Copies a SavedModel in as `version` the way the Pusher does: elsewhere, then renamed."""
    staging = SERVING_DIR / f".partial-{version}"
    shutil.copytree(model_dir, staging)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # TF Serving runs as uid 10001
    staging.rename(SERVING_DIR / str(version))


def _wait_until_release_pods_are_gone(core_api: k8s_client.CoreV1Api) -> None:
    # Uninstall deletes the Deployment; its ReplicaSets and pods go afterwards, by garbage
    # collection, which Helm's wait does not cover.
    deadline = time.monotonic() + READY_SECONDS
    while core_api.list_namespaced_pod(NAMESPACE, label_selector=RELEASE_PODS).items:
        assert time.monotonic() < deadline, "the release's pods outlived its uninstall"
        time.sleep(1)


@pytest.fixture(scope="module")
def release(helm, values, model_store, core_api):
    watch_namespace(NAMESPACE, shared=True)
    _wait_until_release_pods_are_gone(core_api)  # an interrupted earlier run's
    installed = helm.install(str(CHART), RELEASE, values, namespace=NAMESPACE,
                             wait="watcher", timeout=HELM_SECONDS)
    # Ready pods reach the Service once kube-proxy has programmed their endpoints; until then
    # its rules reject connections.
    _wait_until(lambda: _rest(core_api, ""), READY_SECONDS, "the Service never answered")
    yield installed
    helm.uninstall(RELEASE, wait="watcher", timeout=HELM_SECONDS, ignore_not_found=True)
    _wait_until_release_pods_are_gone(core_api)


def _service_ip(core_api: k8s_client.CoreV1Api) -> str:
    return core_api.read_namespaced_service(RELEASE, NAMESPACE).spec.cluster_ip


def _server_pod(core_api: k8s_client.CoreV1Api) -> k8s_client.V1Pod:
    pods = core_api.list_namespaced_pod(
        NAMESPACE, label_selector="app.kubernetes.io/component=server").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert len(live) == 1, [(p.metadata.name, p.metadata.labels, p.status.phase) for p in live]
    return live[0]


def _rest(core_api, path: str, body: dict | None = None) -> dict:
    url = f"http://{_service_ip(core_api)}:8501/v1/models/{MODEL}{path}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(url, data=data, timeout=10) as response:
        return json.load(response)


def _available(core_api) -> list[str]:
    status = _rest(core_api, "")["model_version_status"]
    return sorted(s["version"] for s in status if s["state"] == "AVAILABLE")


def _wait_until(condition, seconds: float, failure: str) -> None:
    """Polls `condition`; a refused connection (endpoints still changing) counts as not yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{failure} (waited {seconds}s)"
        time.sleep(1)


def _expected_probabilities(model_dir: Path, examples: list[bytes]) -> list[float]:
    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    output = signature(examples=tf.constant(examples))[PROBABILITY_KEY]
    return [float(p) for p in output.numpy()]


def test_install_serves_the_model_through_its_service(release, core_api, model_store):
    assert release["status"] == "deployed", release["status"]
    pod = _server_pod(core_api)
    assert pod.status.phase == "Running"
    assert all(c.ready for c in pod.status.container_statuses)
    assert _available(core_api) == ["1"]

    examples = model_store.raw_examples[:4]
    expected = _expected_probabilities(model_store.serving_model_dir, examples)
    rest = _rest(core_api, ":predict", {"instances": [
        {"b64": base64.b64encode(e).decode()} for e in examples]})
    assert [p[PROBABILITY_KEY] for p in rest["predictions"]] == pytest.approx(expected, abs=1e-5)

    with grpc.insecure_channel(f"{_service_ip(core_api)}:8500") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30)
    probabilities = tf.make_ndarray(response.outputs[PROBABILITY_KEY])
    assert list(probabilities) == pytest.approx(expected, abs=1e-5)
    assert response.model_spec.version.value == 1


def test_helm_test_passes(release, helm):
    result = helm.test(RELEASE, timeout=HELM_SECONDS, logs=True)
    assert result["release"]["status"] == "deployed", result["release"]["status"]
    assert "AVAILABLE" in result.get("logs", ""), result.get("logs")


def test_a_new_version_is_served_without_a_restart(release, core_api, model_store):
    before = _server_pod(core_api)
    _push(model_store.serving_model_dir, 2)
    _wait_until(lambda: "2" in _available(core_api), NEW_VERSION_SECONDS,
                "version 2 never became AVAILABLE")
    after = _server_pod(core_api)
    assert after.metadata.uid == before.metadata.uid
    assert after.status.container_statuses[0].restart_count == \
        before.status.container_statuses[0].restart_count
    predicted = _rest(core_api, ":predict", {"instances": [
        {"b64": base64.b64encode(model_store.raw_examples[0]).decode()}]})
    assert len(predicted["predictions"]) == 1


def test_upgrade_rolls_the_pods_on_a_config_change(release, helm, values, core_api):
    before = _server_pod(core_api)
    changed = {**values, "model": {**values["model"], "versionPolicy": {
        "type": "latest", "latestVersions": 1, "specificVersions": []}}}
    upgraded = helm.upgrade(str(CHART), RELEASE, changed, namespace=NAMESPACE,
                            wait="watcher", timeout=HELM_SECONDS)
    assert upgraded["revision"] == 2
    # The ConfigMap's checksum annotation rolls the pod when the model config changes.
    after = _server_pod(core_api)
    assert after.metadata.uid != before.metadata.uid
    # Until kube-proxy drops the old pod's endpoint, the Service may still reach it.
    _wait_until(lambda: _available(core_api) == ["2"], NEW_VERSION_SECONDS,
                "the upgraded policy (latest 1) never served version 2 alone")


def _pod_ready(core_api, name: str) -> bool:
    pod = core_api.read_namespaced_pod(name, NAMESPACE)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _ready_endpoints(api_client) -> list[str]:
    slices = k8s_client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name={RELEASE}").items
    return [address for s in slices for e in s.endpoints or []
            if e.conditions and e.conditions.ready for address in e.addresses]


def _metadata_status(pod: k8s_client.V1Pod) -> int:
    """The HTTP status of the readiness probe's GET, asked of the pod itself."""
    url = f"http://{pod.status.pod_ip}:8501/v1/models/{MODEL}/metadata"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_readiness_follows_the_available_versions(release, api_client, core_api):
    # Every version directory leaves the base path: TF Serving unloads them all, its metadata
    # GET answers 404, and the pod leaves the Service without a restart. Back in, it returns.
    pod = _server_pod(core_api)
    name, restarts = pod.metadata.name, pod.status.container_statuses[0].restart_count
    assert _ready_endpoints(api_client) == [pod.status.pod_ip]
    aside = SERVING_DIR.parent / f".{MODEL}-aside"
    aside.mkdir()
    versions = sorted(p.name for p in SERVING_DIR.iterdir() if p.name.isdigit())
    try:
        for version in versions:
            (SERVING_DIR / version).rename(aside / version)
        _wait_until(lambda: not _pod_ready(core_api, name), READINESS_FLIP_SECONDS,
                    "the pod stayed Ready with no version AVAILABLE")
        assert _metadata_status(core_api.read_namespaced_pod(name, NAMESPACE)) == 404
        _wait_until(lambda: not _ready_endpoints(api_client), READINESS_FLIP_SECONDS,
                    "the unready pod stayed among the Service's ready endpoints")
    finally:
        for version in versions:
            (aside / version).rename(SERVING_DIR / version)
        aside.rmdir()
    _wait_until(lambda: _pod_ready(core_api, name), READINESS_FLIP_SECONDS,
                "the pod never became Ready again once the versions were back")
    _wait_until(lambda: _available(core_api) == [versions[-1]], READINESS_FLIP_SECONDS,
                "the Service never served the restored version")
    after = core_api.read_namespaced_pod(name, NAMESPACE)
    assert after.status.container_statuses[0].restart_count == restarts  # liveness held


def test_uninstall_removes_every_object_of_the_release(helm, core_api, release):
    helm.uninstall(RELEASE, wait="watcher", timeout=HELM_SECONDS)
    _wait_until_release_pods_are_gone(core_api)
    assert not core_api.list_namespaced_service(NAMESPACE, label_selector=RELEASE_PODS).items
    assert not core_api.list_namespaced_config_map(NAMESPACE, label_selector=RELEASE_PODS).items
    assert not helm.list(all_states=True, name_filter=f"^{RELEASE}$")
