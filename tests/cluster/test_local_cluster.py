"""The cluster itself: a Ready node, cluster DNS and Services, and Pod Security as k8s/ sets it.

Runs against any cluster (the local one in CI). Pods run the Python base image the local
cluster builds (build/local-images.env), never pulled.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from conftest import wait_for_pod_phase

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
VERSIONS = REPO / "k8s" / "local" / "versions.env"
NAMESPACES = REPO / "k8s" / "base" / "namespaces.yaml"
POD_SECONDS = 120
# etcd's client URL on the node (k8s/local/cluster.sh ETCD_CLIENT_URL).
ETCD_URL = "http://127.0.0.1:2379"
PSS = "pod-security.kubernetes.io/"
WEB_PORT = 8080
WEB_BODY = "served from a pod"


def _restricted_container(name: str, image: str, command: list[str],
                          port: int | None = None) -> k8s_client.V1Container:
    return k8s_client.V1Container(
        name=name, image=image, image_pull_policy="Never", command=command,
        ports=[k8s_client.V1ContainerPort(container_port=port)] if port else None,
        resources=k8s_client.V1ResourceRequirements(
            requests={"cpu": "10m", "memory": "32Mi"}, limits={"memory": "256Mi"}),
        security_context=k8s_client.V1SecurityContext(
            allow_privilege_escalation=False, read_only_root_filesystem=True,
            capabilities=k8s_client.V1Capabilities(drop=["ALL"]),
        ),
    )


def _restricted_pod(name: str, container: k8s_client.V1Container,
                    labels: dict[str, str] | None = None) -> k8s_client.V1Pod:
    return k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=labels),
        spec=k8s_client.V1PodSpec(
            containers=[container], restart_policy="Never",
            automount_service_account_token=False,
            security_context=k8s_client.V1PodSecurityContext(
                run_as_non_root=True, run_as_user=65534, run_as_group=65534,
                seccomp_profile=k8s_client.V1SeccompProfile(type="RuntimeDefault"),
            ),
        ),
    )


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def test_node_is_ready_and_runs_the_pinned_kubelet(core_api):
    [node] = core_api.list_node().items
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True", node.status.conditions
    # The local cluster builds kubelet from k8s.io/kubernetes at the pinned version.
    info = node.status.node_info
    if node.metadata.name == "tfx-kfp-gke-local":
        assert info.kubelet_version == _env(VERSIONS)["KUBERNETES_VERSION"]
        assert info.container_runtime_version.startswith("containerd://")


def test_the_api_server_stores_in_the_pinned_etcd(core_api):
    # etcd 3.4 (Debian's) lacks the watch progress requests client-go 0.33's streaming lists
    # need: Argo's controller, on client-go 0.33, then saw pod changes only at its periodic
    # re-list, and every KFP step waited up to 40 s to start (a run took 18 minutes, not 7).
    [node] = core_api.list_node().items
    if node.metadata.name != "tfx-kfp-gke-local":
        pytest.skip("not the local cluster: its etcd is not ours to check")
    with urllib.request.urlopen(f"{ETCD_URL}/version", timeout=10) as response:
        version = json.load(response)["etcdserver"]
    assert f"v{version}" == _env(VERSIONS)["ETCD_VERSION"]
    assert tuple(int(part) for part in version.split(".")[:2]) >= (3, 6)


def test_a_pod_resolves_a_service_name_through_cluster_dns_and_reaches_it(
        core_api, restricted_namespace, local_images):
    # Any image with Python: the pipeline's.
    namespace, image = restricted_namespace, local_images["PIPELINE_IMAGE"]
    serve = (f"import http.server as h\n"
             f"class H(h.BaseHTTPRequestHandler):\n"
             f"    def do_GET(self):\n"
             f"        self.send_response(200); self.end_headers()\n"
             f"        self.wfile.write({WEB_BODY!r}.encode())\n"
             f"h.HTTPServer(('', {WEB_PORT}), H).serve_forever()\n")
    core_api.create_namespaced_pod(namespace, _restricted_pod(
        "web", _restricted_container("web", image, ["python", "-c", serve], WEB_PORT),
        labels={"app": "web"}))
    core_api.create_namespaced_service(namespace, k8s_client.V1Service(
        metadata=k8s_client.V1ObjectMeta(name="web"),
        spec=k8s_client.V1ServiceSpec(selector={"app": "web"}, ports=[
            k8s_client.V1ServicePort(port=80, target_port=WEB_PORT)]),
    ))
    # The short name goes through the pod's DNS search path, the full one straight to CoreDNS;
    # the client retries until the server pod is Ready and behind the Service.
    fetch = (f"import socket, time, urllib.request\n"
             f"deadline = time.monotonic() + {POD_SECONDS}\n"
             f"while True:\n"
             f"    try:\n"
             f"        address = socket.gethostbyname('web.{namespace}.svc.cluster.local')\n"
             f"        body = urllib.request.urlopen('http://web/', timeout=5).read().decode()\n"
             f"        print(address, body)\n"
             f"        break\n"
             f"    except OSError as error:\n"
             f"        if time.monotonic() > deadline: raise\n"
             f"        time.sleep(1)\n")
    core_api.create_namespaced_pod(namespace, _restricted_pod(
        "client", _restricted_container("client", image, ["python", "-c", fetch])))
    pod = wait_for_pod_phase(core_api, namespace, "client", {"Succeeded", "Failed"},
                             POD_SECONDS + 60)
    log = core_api.read_namespaced_pod_log("client", namespace)
    assert pod.status.phase == "Succeeded", log
    service_ip = core_api.read_namespaced_service("web", namespace).spec.cluster_ip
    assert log.split() == [service_ip, *WEB_BODY.split()]


def test_project_namespaces_carry_the_pod_security_labels_of_k8s_base(core_api):
    for declared in yaml.safe_load_all(NAMESPACES.read_text()):
        name = declared["metadata"]["name"]
        live = core_api.read_namespace(name).metadata.labels
        wanted = {k: v for k, v in declared["metadata"]["labels"].items() if k.startswith(PSS)}
        if name == "monitoring":
            # components/local-cluster relaxes enforcement for node-exporter (see there).
            wanted[PSS + "enforce"] = "privileged"
        assert {k: v for k, v in live.items() if k.startswith(PSS)} == wanted, name


def test_the_api_server_refuses_a_pod_that_breaks_restricted(core_api, local_images):
    container = _restricted_container("root", local_images["DEBIAN_BASE_IMAGE"], ["true"])
    container.security_context = k8s_client.V1SecurityContext(privileged=True)
    pod = _restricted_pod("breaks-restricted", container)
    pod.spec.security_context = None
    with pytest.raises(ApiException) as refused:
        core_api.create_namespaced_pod("tfx-serving", pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:' in message
    assert "privileged" in message


def test_store_volumes_are_bound_to_the_project_claims(core_api):
    claims = {(c.metadata.namespace, c.metadata.name): c
              for c in core_api.list_persistent_volume_claim_for_all_namespaces().items}
    for namespace, name in (("kubeflow", "tfx-store"), ("tfx-serving", "tfx-models")):
        claim = claims[(namespace, name)]
        assert claim.status.phase == "Bound", f"{namespace}/{name}: {claim.status.phase}"
        assert claim.spec.volume_name == name


def _gone(read) -> bool:
    try:
        read()
    except ApiException as error:
        return error.status == 404
    return False


def test_a_claim_without_a_class_gets_a_volume_of_the_default_provisioner(
        core_api, restricted_namespace, local_images):
    # What helm/kfp's MySQL and SeaweedFS claims do: no storageClassName, so the default
    # class (local-path, k8s/local/local-path-storage.yaml) provisions a volume when a pod
    # uses the claim, and deletes it with the claim.
    namespace = restricted_namespace
    [default] = [c for c in k8s_client.StorageV1Api(core_api.api_client).list_storage_class().items
                 if (c.metadata.annotations or {}).get(
                     "storageclass.kubernetes.io/is-default-class") == "true"]
    assert (default.metadata.name, default.reclaim_policy) == ("local-path", "Delete")
    claim = k8s_client.V1PersistentVolumeClaim(
        metadata=k8s_client.V1ObjectMeta(name="data"),
        spec=k8s_client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=k8s_client.V1ResourceRequirements(requests={"storage": "1Gi"})))
    core_api.create_namespaced_persistent_volume_claim(namespace, claim)
    container = _restricted_container("writer", local_images["DEBIAN_BASE_IMAGE"],
                                      ["sh", "-c", "echo kept > /data/file && cat /data/file"])
    container.volume_mounts = [k8s_client.V1VolumeMount(name="data", mount_path="/data")]
    pod = _restricted_pod("writer", container)
    pod.spec.volumes = [k8s_client.V1Volume(
        name="data", persistent_volume_claim=k8s_client.V1PersistentVolumeClaimVolumeSource(
            claim_name="data"))]
    core_api.create_namespaced_pod(namespace, pod)
    finished = wait_for_pod_phase(core_api, namespace, "writer", {"Succeeded", "Failed"},
                                  POD_SECONDS)
    assert finished.status.phase == "Succeeded", core_api.read_namespaced_pod_log(
        "writer", namespace)
    claim = core_api.read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Bound" and claim.spec.storage_class_name == "local-path"
    volume = claim.spec.volume_name
    core_api.delete_namespaced_pod("writer", namespace, grace_period_seconds=0)
    core_api.delete_namespaced_persistent_volume_claim("data", namespace)
    deadline = time.monotonic() + POD_SECONDS
    while not _gone(lambda: core_api.read_persistent_volume(volume)):
        assert time.monotonic() < deadline, f"{volume} outlived its claim"
        time.sleep(1)
