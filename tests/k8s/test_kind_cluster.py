"""k8s/kind: the cluster config, its port mappings to the overlay's NodePorts, pipeline.env (and
k8s/local's, which differs from it only in where the NodePorts answer)."""

from __future__ import annotations

import ipaddress
import posixpath
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from k8s_manifests import (
    KIND_ENV,
    MODELS_CLAIM,
    NODE_STORE,
    REPO,
    STORE_CLAIM,
    describe,
    find,
    kind_config,
    kube_versions,
    minor_key,
    node_image_version,
    of_kind,
    profile_constants,
    read_env,
)

# Fields of kind's v1alpha4 Cluster API (sigs.k8s.io/kind/pkg/apis/config/v1alpha4/types.go):
# kind rejects unknown fields, so a typo here would only show at `kind create cluster`.
CLUSTER_FIELDS = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates",
                  "runtimeConfig", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902",
                  "containerdConfigPatches", "containerdConfigPatchesJSON6902"}
NODE_FIELDS = {"role", "image", "labels", "extraMounts", "extraPortMappings",
               "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"}
MOUNT_FIELDS = {"containerPath", "hostPath", "readOnly", "selinuxRelabel", "propagation"}
PORT_MAPPING_FIELDS = {"containerPort", "hostPort", "listenAddress", "protocol"}

# What each host port reaches: the NodePort Service in the kind overlay and the chart pods
# it must select (labels set by helm/kfp, helm/tf-serving and kube-prometheus-stack's Grafana).
EXPOSED = {
    8080: ("kubeflow", "kfp-ui-nodeport",
           {"app.kubernetes.io/name": "kfp", "app.kubernetes.io/component": "ui"}, 3000),
    8501: ("tfx-serving", "tf-serving-nodeport",
           {"app.kubernetes.io/name": "tf-serving", "app.kubernetes.io/component": "server"},
           "http"),
    3000: ("monitoring", "grafana-nodeport", {"app.kubernetes.io/name": "grafana"}, 3000),
}
# Charts under helm/ rendered to check the selectors against (chart, values scenario).
RENDERED_CHARTS = {"kubeflow": ("kfp", "kind-values.yaml"),
                   "tfx-serving": ("tf-serving", "kind-values.yaml")}


@pytest.fixture(scope="module")
def config():
    return kind_config()


@pytest.fixture(scope="module")
def node(config):
    [node] = config["nodes"]
    return node


@pytest.fixture(scope="module")
def node_ports(built):
    """nodePort -> (Service, its port) for every NodePort Service of the kind overlay."""
    ports = {}
    for service in of_kind(built["kind"], "Service"):
        if service["spec"].get("type") == "NodePort":
            for port in service["spec"]["ports"]:
                assert "nodePort" in port, f"{describe(service)}: nodePort not fixed"
                assert port["nodePort"] not in ports, f"nodePort {port['nodePort']} used twice"
                ports[port["nodePort"]] = (service, port)
    return ports


def test_config_is_a_kind_v1alpha4_cluster_with_known_fields_only(config, node):
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(config) <= CLUSTER_FIELDS, set(config) - CLUSTER_FIELDS
    # One node: hostPath volumes only exist on the node holding the directory.
    assert node["role"] == "control-plane"
    assert set(node) <= NODE_FIELDS, set(node) - NODE_FIELDS
    for mount in node["extraMounts"]:
        assert set(mount) <= MOUNT_FIELDS, set(mount) - MOUNT_FIELDS
    for mapping in node["extraPortMappings"]:
        assert set(mapping) <= PORT_MAPPING_FIELDS, set(mapping) - PORT_MAPPING_FIELDS


def test_node_image_is_pinned_to_a_validated_kubernetes_minor(node):
    version = node_image_version(node["image"])  # asserts tag and sha256 digest
    versions, _ = kube_versions()
    assert minor_key(versions[0]) <= minor_key(version)[:2] <= minor_key(versions[-1]), version
    # minikube runs the same Kubernetes, so both local paths behave alike.
    assert profile_constants()["KUBERNETES_VERSION"] == version


def test_store_is_mounted_from_a_repository_directory(node):
    [mount] = node["extraMounts"]
    assert mount["containerPath"] == NODE_STORE
    # kind resolves a relative hostPath against the directory it runs in: the repository root.
    host_path = Path(mount["hostPath"])
    assert not host_path.is_absolute(), "an absolute path would tie the config to one machine"
    assert (REPO / host_path).resolve().is_relative_to(REPO), "store outside the repository"
    assert host_path == Path(read_env(KIND_ENV)["TFXKFP_KIND_STORE"])
    assert not mount.get("readOnly"), "pipeline steps write models into the store"


def test_each_port_mapping_reaches_a_fixed_node_port(node, node_ports):
    mappings = node["extraPortMappings"]
    assert sorted(m["hostPort"] for m in mappings) == sorted(EXPOSED)
    for mapping in mappings:
        assert mapping["containerPort"] in node_ports, (
            f"containerPort {mapping['containerPort']}: no NodePort Service in k8s/overlays/kind")
        # The KFP UI and Grafana have no authentication: this machine only.
        assert ipaddress.ip_address(mapping["listenAddress"]).is_loopback
        assert mapping.get("protocol", "TCP") == "TCP"
        service, port = node_ports[mapping["containerPort"]]
        namespace, name, _, _ = EXPOSED[mapping["hostPort"]]
        assert (service["metadata"]["namespace"], service["metadata"]["name"]) == (namespace, name)
        assert port.get("protocol", "TCP") == "TCP"
    # And no NodePort is left without a mapping (it would be unreachable from the host).
    assert sorted(node_ports) == sorted(m["containerPort"] for m in mappings)
    # Kubernetes' default NodePort range, which kind keeps.
    assert all(30000 <= p <= 32767 for p in node_ports)


@pytest.mark.parametrize("host_port", sorted(EXPOSED))
def test_node_port_services_select_the_chart_pods(built, host_port):
    namespace, name, selector, target_port = EXPOSED[host_port]
    service = find(built["kind"], "Service", name, namespace)
    assert service["spec"]["selector"] == selector
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == target_port
    if namespace not in RENDERED_CHARTS:
        print(f"note: {name} is checked against labels only: its pods come from a chart "
              "dependency helm/ does not vendor (kube-prometheus-stack's Grafana)")


def _chart_rendering():
    """tests/helm's rendering module, or None with the reason printed."""
    path = REPO / "tests" / "helm"
    if not (path / "chart_rendering.py").is_file():
        return None, f"{path / 'chart_rendering.py'} not found"
    sys.path.insert(0, str(path))
    try:
        import chart_rendering
    except ImportError as error:
        return None, f"tests/helm/chart_rendering.py does not import here: {error}"
    finally:
        sys.path.remove(str(path))
    return chart_rendering, ""


@pytest.mark.parametrize("namespace", sorted(RENDERED_CHARTS))
def test_node_port_services_find_their_pods_in_the_rendered_charts(built, namespace):
    chart, scenario = RENDERED_CHARTS[namespace]
    chart_dir = REPO / "helm" / chart
    rendering, reason = _chart_rendering()
    if rendering is None or not (chart_dir / "ci" / scenario).is_file():
        reason = reason or f"{chart_dir / 'ci' / scenario} not found"
        print(f"note: selectors not checked against helm/{chart}: {reason}")
        pytest.skip(reason)
    objects = rendering.render(chart_dir, [chart_dir / "ci" / scenario], namespace=namespace)
    [service] = [s for s in of_kind(built["kind"], "Service")
                 if s["metadata"]["namespace"] == namespace]
    selector, [port] = service["spec"]["selector"], service["spec"]["ports"]
    matches = []
    for workload in objects:
        template = (workload.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if workload["kind"] in {"Deployment", "StatefulSet"} and \
                selector.items() <= labels.items():
            matches.append(workload)
    assert len(matches) == 1, f"{describe(service)} selects {[describe(m) for m in matches]}"
    container_ports = [p for c in matches[0]["spec"]["template"]["spec"]["containers"]
                       for p in c.get("ports") or []]
    assert any(port["targetPort"] in (p["containerPort"], p.get("name"))
               for p in container_ports), f"{describe(matches[0])} has no port {port['targetPort']}"


def test_tf_serving_chart_uses_the_models_claim():
    values_file = REPO / "helm" / "tf-serving" / "ci" / "kind-values.yaml"
    if not values_file.is_file():
        print(f"note: {values_file} not found; claim name not cross-checked")
        pytest.skip(f"{values_file} not found")
    pvc = yaml.safe_load(values_file.read_text())["model"]["pvc"]
    assert pvc["claimName"] == MODELS_CLAIM[1]


def test_pipeline_env_matches_the_cluster(built, node):
    env = read_env(KIND_ENV)
    mount = PurePosixPath(env["TFXKFP_VOLUME_MOUNT_PATH"])
    assert mount.is_absolute() and str(mount) != "/"
    claim = find(built["kind"], "PersistentVolumeClaim", env["TFXKFP_VOLUME_CLAIM"],
                 STORE_CLAIM[0])
    assert claim["metadata"]["name"] == STORE_CLAIM[1]
    # Data and serving directories are the store's layout seen through the step mount.
    for key, inside_store in (("TFXKFP_DATA_ROOT", "data/social_network_ads"),
                              ("TFXKFP_SERVING_DIR", "serving/social_network_ads")):
        path = PurePosixPath(posixpath.normpath(env[key]))
        assert path.is_relative_to(mount), key
        assert str(path.relative_to(mount)) == inside_store, key
    assert env["TFXKFP_PIPELINE_ROOT"].startswith(("s3://", "minio://", "gs://"))
    host_ports = {m["hostPort"] for m in node["extraPortMappings"]}
    for key, host_port in (("TFXKFP_KFP_HOST", 8080), ("TFXKFP_SERVING_URL", 8501)):
        url = urlsplit(env[key])
        assert url.hostname in ("localhost", "127.0.0.1") and url.port == host_port, key
        assert host_port in host_ports, key



def test_local_cluster_settings_are_kinds_but_for_where_the_node_ports_answer(built):
    # k8s/local/pipeline.env, for the commands run on the local cluster's node (this machine):
    # kind's settings, with each address at a fixed NodePort on 127.0.0.1, plus the ML
    # Metadata and TF Serving gRPC addresses that only the local overlay publishes.
    local = read_env(REPO / "k8s" / "local" / "pipeline.env")
    kind = read_env(KIND_ENV)
    urls = {"TFXKFP_KFP_HOST", "TFXKFP_SERVING_URL", "TFXKFP_METADATA_GRPC",
            "TFXKFP_SERVING_GRPC"}
    # The stand-in the InfraValidator runs where tensorflow/serving cannot be pulled.
    local_only = {"TFXKFP_TF_SERVING_IMAGE"}
    assert set(local) == set(kind) - {"TFXKFP_KIND_STORE"} | urls | local_only
    for key in set(local) - urls - local_only:
        assert local[key] == kind[key], key
    services = {port["nodePort"]: service for service in of_kind(built["local"], "Service")
                for port in service["spec"].get("ports", []) if "nodePort" in port}
    for key in urls:
        address = urlsplit(local[key] if "://" in local[key] else f"tcp://{local[key]}")
        assert address.hostname == "127.0.0.1" and address.port in services, key


# What each NodePort of the local overlay must reach: (chart, scenario, container port).
LOCAL_NODE_PORTS = {
    30888: ("kfp", "local-values.yaml", 8888),
    30808: ("kfp", "local-values.yaml", 8080),
    30500: ("tf-serving", "local-values.yaml", "grpc"),
    30501: ("tf-serving", "local-values.yaml", "http"),
}


@pytest.mark.parametrize("node_port", sorted(LOCAL_NODE_PORTS))
def test_local_node_ports_reach_the_chart_pods(built, node_port):
    chart, scenario, container_port = LOCAL_NODE_PORTS[node_port]
    rendering, reason = _chart_rendering()
    if rendering is None:
        print(f"note: selectors not checked against helm/{chart}: {reason}")
        pytest.skip(reason)
    chart_dir = REPO / "helm" / chart
    [service] = [s for s in of_kind(built["local"], "Service")
                 for p in s["spec"].get("ports", []) if p.get("nodePort") == node_port]
    objects = rendering.render(chart_dir, [chart_dir / "ci" / scenario],
                               namespace=service["metadata"]["namespace"])
    selector, [port] = service["spec"]["selector"], service["spec"]["ports"]
    matches = [w for w in objects if w["kind"] == "Deployment" and selector.items()
               <= w["spec"]["template"]["metadata"]["labels"].items()]
    assert len(matches) == 1, f"{describe(service)} selects {[describe(m) for m in matches]}"
    ports = [p for c in matches[0]["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports") or []]
    targets = [p for p in ports if port["targetPort"] in (p["containerPort"], p.get("name"))]
    assert len(targets) == 1, f"{describe(matches[0])} has no port {port['targetPort']}"
    assert container_port in (targets[0]["containerPort"], targets[0].get("name")), \
        f"{describe(service)} reaches port {port['targetPort']}, not {container_port}"
