"""Reading k8s/ for tests/k8s: kustomize builds, the kind config, env files and the minikube script.

Everything is offline: `kubectl kustomize` (kubectl's built-in kustomize) builds the overlays and
kubernetes-validate holds the API schemas. Test modules import this file by its unique name
(tests have no __init__.py).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("kind", "minikube", "local", "gke")
LOCAL_OVERLAYS = ("kind", "minikube", "local")
KIND_CONFIG = K8S / "kind" / "cluster.yaml"
KIND_ENV = K8S / "kind" / "pipeline.env"
MINIKUBE_PROFILE = K8S / "minikube" / "profile.sh"
LOCAL_CLUSTER_SCRIPT = K8S / "local" / "cluster.sh"
LOCAL_CLUSTER_VERSIONS = K8S / "local" / "versions.env"
GKE_PARAMS = K8S / "overlays" / "gke" / "params.env"
CHART_CHECKS = REPO / "tests" / "helm" / "chart_checks.py"

# The store every local cluster mounts on its node, and the claims the charts and the
# compiled pipeline use (DESIGN.md; the lead's decisions for the kind/minikube path).
NODE_STORE = "/var/local/tfx"
STORE_CLAIM = ("kubeflow", "tfx-store")
MODELS_CLAIM = ("tfx-serving", "tfx-models")
NAMESPACES = ("kubeflow", "tfx-serving", "monitoring")
PART_OF = ("app.kubernetes.io/part-of", "tfx-kfp-gke")

# Kubernetes minors every object must validate against when tests/helm does not say:
# 1.37 is the newest kubernetes-validate 1.37 bundles; 1.34 the oldest minor GKE's Regular
# channel offers in late 2026 (1.33 left it at the end of its standard support).
FALLBACK_KUBE_VERSIONS = ("1.34", "1.37")
NEWEST_KUBE_VERSION = "1.37"


def kube_versions() -> tuple[tuple[str, ...], str]:
    """Minors to validate against, and where they came from.

    The chart harness (tests/helm/chart_checks.py) decides the oldest supported minor; its
    KUBE_VERSIONS constant is read from the source, not imported, so these tests need neither
    helm_python nor that file. 1.37 is always included.
    """
    if CHART_CHECKS.is_file():
        for node in ast.parse(CHART_CHECKS.read_text()).body:
            if (isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "KUBE_VERSIONS" for t in node.targets)):
                versions = {str(v) for v in ast.literal_eval(node.value)} | {NEWEST_KUBE_VERSION}
                return tuple(sorted(versions, key=minor_key)), f"{CHART_CHECKS}: KUBE_VERSIONS"
    return FALLBACK_KUBE_VERSIONS, "tests/k8s fallback (tests/helm/chart_checks.py not found)"


def minor_key(version: str) -> tuple[int, ...]:
    """Sort key of "1.34", "v1.34" or "v1.34.11"."""
    return tuple(int(part) for part in version.lstrip("v").split("."))


def kubectl() -> str | None:
    return shutil.which("kubectl")


def build(directory: Path) -> list[dict[str, Any]]:
    """Objects of `kubectl kustomize <directory>`; raises with kustomize's message on failure."""
    binary = kubectl()
    if binary is None:
        raise FileNotFoundError("kubectl is not on PATH")
    result = subprocess.run([binary, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def find(objects: list[dict[str, Any]], kind: str, name: str,
         namespace: str | None = None) -> dict[str, Any]:
    """The one object of that kind, name (and namespace); AssertionError when absent."""
    matches = [o for o in objects if o.get("kind") == kind
               and o["metadata"].get("name") == name
               and o["metadata"].get("namespace") == namespace]
    assert len(matches) == 1, f"expected one {kind} {namespace or ''}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                     "E": 10**18}


def quantity_bytes(quantity: str | int) -> Decimal:
    """A Kubernetes storage quantity ("20Gi", "5G", "1e9", 1024) in bytes."""
    match = re.fullmatch(r"([0-9.]+(?:[eE][0-9]+)?)([KMGTPE]i|[kMGTPE]?)", str(quantity))
    assert match, f"not a storage quantity: {quantity!r}"
    number, suffix = match.groups()
    return Decimal(number) * (_BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix])


def read_env(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped), as tests/cluster reads them."""
    settings = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def kind_config() -> dict[str, Any]:
    return yaml.safe_load(KIND_CONFIG.read_text())


def profile_constants() -> dict[str, str]:
    """The `readonly NAME=value` constants of k8s/minikube/profile.sh."""
    return dict(re.findall(r"^readonly ([A-Z_]+)=(\S+)$", MINIKUBE_PROFILE.read_text(), re.M))


def local_cluster_constants() -> dict[str, str]:
    """The top-level `NAME=value` constants of k8s/local/cluster.sh (no expansions)."""
    return dict(re.findall(r"^([A-Z_]+)=([^$\s]+)$", LOCAL_CLUSTER_SCRIPT.read_text(), re.M))


def node_image_version(image: str) -> str:
    """"v1.34.11" from "kindest/node:v1.34.11@sha256:..."."""
    match = re.fullmatch(r"kindest/node:(v\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", image)
    assert match, f"node image {image!r} is not kindest/node:vX.Y.Z@sha256:<digest>"
    return match.group(1)


def store_volumes(objects: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(namespace, claim name) -> (PV, PVC): each claim with the volume whose claimRef names it."""
    pairs = {}
    for claim in of_kind(objects, "PersistentVolumeClaim"):
        meta = claim["metadata"]
        volumes = [v for v in of_kind(objects, "PersistentVolume")
                   if (v["spec"].get("claimRef") or {}).get("name") == meta["name"]
                   and v["spec"]["claimRef"].get("namespace") == meta["namespace"]]
        assert len(volumes) == 1, f"{describe(claim)}: {len(volumes)} volumes claim it"
        pairs[(meta["namespace"], meta["name"])] = (volumes[0], claim)
    return pairs


def binding_failures(volume: dict[str, Any], claim: dict[str, Any]) -> list[str]:
    """Why this statically provisioned volume would not bind its claim, or stay safe bound."""
    pv, pvc = volume["spec"], claim["spec"]
    ref = pv.get("claimRef") or {}
    checks = [
        (ref.get("kind", "PersistentVolumeClaim") == "PersistentVolumeClaim"
         and ref.get("namespace") == claim["metadata"].get("namespace")
         and ref.get("name") == claim["metadata"]["name"], "claimRef does not name the claim"),
        (pvc.get("volumeName") == volume["metadata"]["name"], "volumeName is not the volume"),
        # "" on both sides: no default StorageClass or provisioner takes the claim.
        (pv.get("storageClassName") == "" and pvc.get("storageClassName") == "",
         'storageClassName is not "" on both'),
        (set(pvc.get("accessModes") or ["?"]) <= set(pv.get("accessModes") or []),
         "the claim asks for access modes the volume lacks"),
        (pv.get("volumeMode", "Filesystem") == pvc.get("volumeMode", "Filesystem"),
         "volume modes differ"),
        (quantity_bytes(pv["capacity"]["storage"])
         >= quantity_bytes(pvc["resources"]["requests"]["storage"]),
         "the claim requests more than the volume's capacity"),
        # The developer's data outlives the claim.
        (pv.get("persistentVolumeReclaimPolicy") == "Retain", "reclaim policy is not Retain"),
        # Directory: a missing mount fails the pod instead of kubelet creating a root-owned dir.
        ((pv.get("hostPath") or {}).get("type") == "Directory", "hostPath type is not Directory"),
    ]
    return [f"{describe(volume)} / {describe(claim)}: {why}" for ok, why in checks if not ok]
