"""The kustomize overlays: strict schema validity, labels, Pod Security, the local store, GKE."""

from __future__ import annotations

import posixpath
import re
import shutil
from collections import Counter

import kubernetes_validate
import pytest

from k8s_manifests import (
    GKE_PARAMS,
    K8S,
    LOCAL_CLUSTER_VERSIONS,
    LOCAL_OVERLAYS,
    MODELS_CLAIM,
    NAMESPACES,
    NODE_STORE,
    OVERLAYS,
    PART_OF,
    STORE_CLAIM,
    binding_failures,
    build,
    describe,
    find,
    kind_config,
    kube_versions,
    local_cluster_constants,
    minor_key,
    node_image_version,
    of_kind,
    profile_constants,
    read_env,
    store_volumes,
)

KUBE_VERSIONS, KUBE_VERSIONS_SOURCE = kube_versions()
OLDEST_KUBE_VERSION = KUBE_VERSIONS[0]

PSS = "pod-security.kubernetes.io/"
# Enforced level per namespace and overlay; warn and audit are `restricted` everywhere.
ENFORCE = {
    "kubeflow": {"kind": "baseline", "minikube": "baseline", "local": "baseline",
                 "gke": "baseline"},
    "tfx-serving": {"kind": "restricted", "minikube": "restricted", "local": "restricted",
                    "gke": "restricted"},
    # kube-prometheus-stack's node-exporter (hostNetwork, hostPID, hostPath) runs on the local
    # clusters only; GKE uses Managed Prometheus.
    "monitoring": {"kind": "privileged", "minikube": "privileged", "local": "privileged",
                   "gke": "baseline"},
}

GSA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@([a-z][a-z0-9-]{4,28}[a-z0-9]|PROJECT_ID)"
                       r"\.iam\.gserviceaccount\.com$")


def test_validation_versions_come_from_the_chart_harness():
    print(f"validating against Kubernetes {', '.join(KUBE_VERSIONS)} ({KUBE_VERSIONS_SOURCE})")
    assert KUBE_VERSIONS[-1] == "1.37"
    assert len(KUBE_VERSIONS) >= 2, "need the newest minor and the oldest supported one"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_into_distinct_named_objects(built, overlay):
    objects = built[overlay]
    assert objects, f"{overlay}: kustomize built nothing"
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
    duplicates = [k for k, n in Counter(map(describe, objects)).items() if n > 1]
    assert not duplicates, f"{overlay}: objects defined twice: {duplicates}"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(built, overlay, kube_version):
    failures = []
    for obj in built[overlay]:
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path)) or "<root>"
            failures.append(f"{describe(obj)}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{describe(obj)}: Kubernetes {kube_version} serves no "
                            f"{obj['kind']} in {obj['apiVersion']}")
    assert not failures, f"{overlay} on Kubernetes {kube_version}:\n" + "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_part_of_the_project(built, overlay):
    key, value = PART_OF
    unlabelled = [describe(o) for o in built[overlay]
                  if (o["metadata"].get("labels") or {}).get(key) != value]
    assert not unlabelled, f"{overlay}: missing {key}={value}: {unlabelled}"
    # The label must not leak into selectors: chart pods do not carry it.
    leaked = [describe(o) for o in of_kind(built[overlay], "Service")
              if key in (o["spec"].get("selector") or {})]
    assert not leaked, f"{overlay}: {key} in Service selectors: {leaked}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces_carry_the_decided_pod_security_levels(built, overlay):
    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels") or {}
                  for o in of_kind(built[overlay], "Namespace")}
    assert sorted(namespaces) == sorted(NAMESPACES)
    for name, labels in namespaces.items():
        expected = {
            f"{PSS}enforce": ENFORCE[name][overlay],
            # Pinned to the oldest supported minor: the same pods are admitted everywhere.
            f"{PSS}enforce-version": f"v{OLDEST_KUBE_VERSION}",
            f"{PSS}warn": "restricted",
            f"{PSS}warn-version": "latest",
            f"{PSS}audit": "restricted",
            f"{PSS}audit-version": "latest",
        }
        actual = {k: v for k, v in labels.items() if k.startswith(PSS)}
        assert actual == expected, f"{overlay}: namespace {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaced_objects_live_in_the_project_namespaces(built, overlay):
    cluster_scoped = {"Namespace", "PersistentVolume"}
    misplaced = [describe(o) for o in built[overlay] if o["kind"] not in cluster_scoped
                 and o["metadata"].get("namespace") not in NAMESPACES]
    assert not misplaced, f"{overlay}: objects outside {NAMESPACES}: {misplaced}"


@pytest.mark.parametrize("overlay", LOCAL_OVERLAYS)
def test_store_volumes_bind_to_their_claims(built, overlay):
    pairs = store_volumes(built[overlay])
    assert sorted(pairs) == sorted([STORE_CLAIM, MODELS_CLAIM])
    assert len(of_kind(built[overlay], "PersistentVolume")) == 2
    failures = [f for volume, claim in pairs.values() for f in binding_failures(volume, claim)]
    assert not failures, f"{overlay}:\n" + "\n".join(failures)


@pytest.mark.parametrize("overlay", LOCAL_OVERLAYS)
def test_models_volume_is_the_serving_directory_of_the_store(built, overlay):
    pairs = store_volumes(built[overlay])
    store_path = pairs[STORE_CLAIM][0]["spec"]["hostPath"]["path"]
    models_path = pairs[MODELS_CLAIM][0]["spec"]["hostPath"]["path"]
    assert store_path == NODE_STORE
    assert posixpath.normpath(models_path) == posixpath.join(store_path, "serving")


@pytest.mark.parametrize("overlay", LOCAL_OVERLAYS)
def test_store_volumes_are_pinned_to_the_node_holding_the_directory(built, overlay):
    if overlay == "kind":
        # kind names a cluster's single control-plane node <cluster name>-control-plane.
        node = f"{kind_config()['name']}-control-plane"
    elif overlay == "local":
        # k8s/local/cluster.sh registers this machine under a fixed node name.
        node = local_cluster_constants()["NODE_NAME"]
    else:
        # minikube names a profile's first node after the profile.
        node = profile_constants()["PROFILE"]
    for volume in of_kind(built[overlay], "PersistentVolume"):
        terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}], \
            f"{overlay}: {describe(volume)}"


def test_gke_overlay_has_no_volumes_and_no_chart_owned_objects(built):
    gke = built["gke"]
    assert not of_kind(gke, "PersistentVolume") and not of_kind(gke, "PersistentVolumeClaim")
    # Created and annotated by helm/kfp and helm/tf-serving; a second owner would fight them.
    for overlay in OVERLAYS:
        names = {o["metadata"]["name"] for o in of_kind(built[overlay], "ServiceAccount")}
        assert "pipeline-runner" not in names, overlay
    # The params ConfigMap only feeds replacements (local-config) and is never applied.
    assert not of_kind(gke, "ConfigMap")


def test_gke_infra_validator_identity_comes_from_params(built):
    account = find(built["gke"], "ServiceAccount", "tfx-infra-validator", "kubeflow")
    gsa = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert gsa == read_env(GKE_PARAMS)["INFRA_VALIDATOR_GSA"]
    assert GSA_EMAIL.match(gsa), f"{gsa!r} is not <account>@<project>.iam.gserviceaccount.com"
    # TF Serving never calls the Kubernetes API; Workload Identity needs no token.
    assert account.get("automountServiceAccountToken") is False


def test_gke_params_file_is_the_one_place_to_set_project_values(built, tmp_path):
    """Editing params.env alone changes the rendered annotation (the replacement works)."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S / "base", copy / "base")
    shutil.copytree(K8S / "overlays" / "gke", copy / "overlays" / "gke")
    params = copy / "overlays" / "gke" / "params.env"
    edited = "tfx-infra-validator@my-real-project.iam.gserviceaccount.com"
    params.write_text(re.sub(r"^INFRA_VALIDATOR_GSA=.*$", f"INFRA_VALIDATOR_GSA={edited}",
                             params.read_text(), flags=re.M))
    account = find(build(copy / "overlays" / "gke"), "ServiceAccount", "tfx-infra-validator",
                   "kubeflow")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == edited


def test_pod_security_pin_is_not_newer_than_the_local_clusters():
    [node] = kind_config()["nodes"]
    for version in (node_image_version(node["image"]), profile_constants()["KUBERNETES_VERSION"],
                    read_env(LOCAL_CLUSTER_VERSIONS)["KUBERNETES_VERSION"]):
        assert minor_key(version)[:2] >= minor_key(OLDEST_KUBE_VERSION), version

