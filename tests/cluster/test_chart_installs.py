"""helm/monitoring and helm/kfp installed for real: the API server accepts every object they
make, Pod Security admits every pod they would create, and an uninstall leaves nothing behind.

Both releases run with their dependencies (kube-prometheus-stack, argo-workflows) disabled, as
the kind scenario files have them for offline CI (see `charts` for what Helm then still asks
for). kube-prometheus-stack's chart repository cannot be reached here, and the CRDs it would
install come from the prometheus-operator release it pins (k8s/local/upstream-crds.sh),
applied first. Nothing waits for readiness: with kind's values, MySQL and SeaweedFS cannot be
pulled here, so this proves acceptance and admission. That KFP runs, with Argo from its pinned
chart, is test_kfp_runs.py's.

Pods are checked where Pod Security decides: a Deployment's template is only warned about
when the Deployment is created, its pods are refused later by the ReplicaSet controller,
out of sight. So a Pod is created from every template with a server-side dry run, which
runs every admission plugin and stores nothing.

CustomResourceDefinitions stay after the module: Helm never deletes a chart's crds/, and other
releases on the cluster use them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import helm_python
import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from conftest import REPO, make_namespace, watch_namespace

pytestmark = pytest.mark.cluster

UPSTREAM_CRDS = REPO / "k8s" / "local" / "upstream-crds.sh"
BUILD_BINARIES = REPO / "k8s" / "local" / "build-binaries.sh"
# The namespaces' Pod Security levels everywhere but the single-node clusters (GKE's).
BASE_NAMESPACES = REPO / "k8s" / "base" / "namespaces.yaml"
# Release (and chart) -> namespace, in the README's install order.
RELEASES = {"kfp": "kubeflow", "monitoring": "monitoring"}
ENFORCE = "pod-security.kubernetes.io/enforce"
KEEP = ("helm.sh/resource-policy", "keep")
FIELD_MANAGER = "tfxkfp-cluster-tests"
# Kinds a release's controllers make on its behalf (with its labels), which Helm does not
# list in the release but an uninstall must not leave behind either.
DEPENDENT_KINDS = [("v1", "Pod"), ("apps/v1", "ReplicaSet"), ("apps/v1", "ControllerRevision"),
                   ("batch/v1", "Job"), ("v1", "PersistentVolumeClaim"),
                   ("discovery.k8s.io/v1", "EndpointSlice")]
# Where each workload kind keeps the pod it creates.
TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"), "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"), "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}
# Bounded waits, in seconds.
COMMAND_SECONDS = 300  # upstream-crds.sh downloads two Go modules on a cold module cache
CRD_SECONDS = 60
HELM_SECONDS = 180
GONE_SECONDS = 120


@dataclass
class Release:
    """What Helm recorded of an installed release: its objects and its hooks, parsed."""

    name: str
    namespace: str
    objects: list[dict]
    hooks: list[dict]


def _describe(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _run(args: list[str], seconds: float = COMMAND_SECONDS) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds, check=False)
    assert done.returncode == 0, f"{' '.join(args[:3])} ... failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def kubectl() -> str:
    """The local cluster's own kubectl (built by k8s/local), else the one on PATH (kind)."""
    kube_bin = Path(_run([str(BUILD_BINARIES), "--dirs"]).split()[0])
    if (kube_bin / "kubectl").is_file():
        return str(kube_bin / "kubectl")
    found = shutil.which("kubectl")
    if not found:
        pytest.fail("no kubectl: neither the local cluster's build nor one on PATH")
    return found


@pytest.fixture(scope="module")
def upstream_crds(api_client, kubectl) -> list[str]:
    """Applies the CRDs the disabled dependencies would install; their names, Established.

    kubectl, not the Python client, reads the files: PyYAML parses YAML 1.1 and refuses a
    bare `=` in the Prometheus CRDs' enums that the API server's YAML reader takes as a
    string. Server-side: the largest of them (0.8 MB) would overflow the 256 KiB
    last-applied annotation of a client-side apply.
    """
    files = _run([str(UPSTREAM_CRDS)]).split()
    assert files, f"{UPSTREAM_CRDS} printed no CRD files"
    args = [kubectl, "apply", "--server-side", "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}", "-o", "name"]
    for path in files:
        args += ["-f", path]
    names = [line.split("/", 1)[1] for line in _run(args).split()]
    _wait_established(k8s_client.ApiextensionsV1Api(api_client), names)
    return names


def _wait_established(extensions: k8s_client.ApiextensionsV1Api, names: list[str]) -> None:
    deadline = time.monotonic() + CRD_SECONDS
    for name in names:
        while not any(c.type == "Established" and c.status == "True" for c in
                      extensions.read_custom_resource_definition(name).status.conditions or []):
            assert time.monotonic() < deadline, f"CRD {name} not Established in {CRD_SECONDS}s"
            time.sleep(1)


@pytest.fixture(scope="module")
def dynamic(api_client, upstream_crds) -> DynamicClient:
    """A client for any kind, built once the CRDs exist so that its discovery sees them."""
    return DynamicClient(api_client)


@pytest.fixture(scope="module")
def helm(api_client) -> dict[str, helm_python.Config]:
    """An SDK handle per release namespace (uninstall and list act on the handle's)."""
    configs = {namespace: helm_python.Config(kubeconfig_path=os.environ["KUBECONFIG"],
                                             namespace=namespace)
               for namespace in RELEASES.values()}
    yield configs
    for config in configs.values():
        config.close()


def _dependencies(chart: str) -> list[dict]:
    return yaml.safe_load((REPO / "helm" / chart / "Chart.yaml").read_text()).get(
        "dependencies") or []


@pytest.fixture(scope="module")
def charts(tmp_path_factory) -> dict[str, Path]:
    """Each chart as it is installed here: a copy with an empty stand-in for its dependency.

    Helm's install refuses a chart whose dependency is missing from charts/ even when the
    dependency's condition disables it, and `helm dependency build` needs the chart
    repository. The copy is the chart unchanged plus charts/<dependency>/Chart.yaml: an empty
    chart of the pinned name and version, never rendered, because `_values` turns its
    condition off.
    """
    root = tmp_path_factory.mktemp("charts")
    copies = {}
    for name in RELEASES:
        copies[name] = root / name
        # A developer's charts/ may hold fetched dependencies; the stand-ins replace them.
        shutil.copytree(REPO / "helm" / name, copies[name], ignore=shutil.ignore_patterns("charts"))
        for dependency in _dependencies(name):
            stand_in = copies[name] / "charts" / dependency["name"]
            stand_in.mkdir(parents=True)
            (stand_in / "Chart.yaml").write_text(yaml.safe_dump({
                "apiVersion": "v2", "name": dependency["name"], "version": dependency["version"],
                "description": "empty stand-in for a dependency this machine cannot download"}))
    return copies


def _values(chart: str) -> dict:
    """The chart's kind scenario values with every dependency's condition off."""
    values = yaml.safe_load((REPO / "helm" / chart / "ci" / "kind-values.yaml").read_text())
    for dependency in _dependencies(chart):
        *parents, leaf = dependency["condition"].split(".")
        level = values
        for key in parents:
            level = level.setdefault(key, {})
        level[leaf] = False
    return values


def _recorded(config: helm_python.Config, name: str, namespace: str) -> Release:
    stored = config.get_all(name)
    objects = [o for o in yaml.safe_load_all(stored["summary"]["manifest"]) if o]
    hooks = [o for hook in stored.get("hooks") or []
             for o in yaml.safe_load_all(hook["manifest"]) if o]
    return Release(name, namespace, objects, hooks)


@pytest.fixture(scope="module")
def releases(helm, charts, upstream_crds, dynamic) -> dict[str, Release]:
    """Both charts installed with their kind values, not waiting for pods that cannot start."""
    for name, namespace in RELEASES.items():
        # Never touch a release this module did not make (a developer's deployment).
        assert not helm[namespace].list(name_filter=f"^{name}$"), \
            f"release {name} already exists in {namespace}: uninstall it to run this module"
    try:
        installed = {}
        for name, namespace in RELEASES.items():
            watch_namespace(namespace, shared=True)
            helm[namespace].install(str(charts[name]), name, _values(name),
                                    namespace=namespace, timeout=HELM_SECONDS)
            installed[name] = _recorded(helm[namespace], name, namespace)
        yield installed
    finally:
        # Also after a failed test or a failed install (Helm records a failed release with
        # what it created): nothing of the releases may outlive the module.
        for name, namespace in RELEASES.items():
            try:
                release = _recorded(helm[namespace], name, namespace)
            except helm_python.HelmNotFoundError:
                continue  # never installed, or already uninstalled by the test
            helm[namespace].uninstall(name, wait="watcher", timeout=HELM_SECONDS)
            _delete_kept(dynamic, release)
            _wait_until_nothing_left(dynamic, release)


def _resource(dynamic: DynamicClient, obj: dict):
    return dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def _read(dynamic: DynamicClient, obj: dict, namespace: str) -> dict | None:
    """The object as the API server holds it, or None."""
    resource = _resource(dynamic, obj)
    try:
        return resource.get(name=obj["metadata"]["name"],
                            namespace=namespace if resource.namespaced else None).to_dict()
    except NotFoundError:
        return None


def test_the_api_server_holds_every_object_of_both_releases(releases, dynamic, api_client):
    """Helm v4 applies server-side, where the API server refuses any field a CRD's schema does
    not declare instead of pruning it silently (a stray PodMonitor field fails the install
    with "field not declared in schema"): an install that succeeded was accepted whole."""
    kinds = {o["kind"] for release in releases.values() for o in release.objects}
    # The custom resources are what the offline tests can only check against copied schemas.
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds, kinds
    problems = []
    for release in releases.values():
        for obj in release.objects:
            stored = _read(dynamic, obj, release.namespace)
            if stored is None:
                problems.append(f"{release.name}: {_describe(obj)} is not in the cluster")
                continue
            owner = stored["metadata"].get("annotations", {}).get("meta.helm.sh/release-name")
            if owner != release.name:
                problems.append(f"{release.name}: {_describe(obj)} belongs to {owner!r}")
    assert not problems, "\n".join(problems)

    # helm/kfp's own CRD (ScheduledWorkflow, in crds/: Helm applies it before the templates
    # and records it nowhere in the release) serves its kind.
    extensions = k8s_client.ApiextensionsV1Api(api_client)
    for path in sorted((REPO / "helm" / "kfp" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        _wait_established(extensions, [crd["metadata"]["name"]])
        for version in (v["name"] for v in crd["spec"]["versions"] if v["served"]):
            assert dynamic.resources.get(api_version=f"{crd['spec']['group']}/{version}",
                                         kind=crd["spec"]["names"]["kind"]).namespaced


def _pod_from(obj: dict, namespace: str) -> dict | None:
    """A Pod as `obj` (a workload or a bare Pod) would create it in `namespace`, or None."""
    path = TEMPLATE_PATHS.get(obj["kind"])
    if path is None:
        return None
    template = obj
    for key in path:
        template = template[key]
    metadata = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{obj['metadata']['name']}-",
            "namespace": namespace,
            "labels": metadata.get("labels") or {},
            # Annotations count: Pod Security reads AppArmor profiles from them.
            "annotations": metadata.get("annotations") or {},
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def _refusal(core_api: k8s_client.CoreV1Api, namespace: str, pod: dict) -> str | None:
    """Why the API server would refuse the pod (any refusal, Pod Security's or not), or None."""
    try:
        core_api.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as error:
        try:
            return f"{error.status}: {json.loads(error.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{error.status}: {error.body}"
    return None


def _refusals(core_api, release: Release, namespace: str) -> tuple[list[str], list[str]]:
    """The pods of the release's workloads and hooks checked in `namespace`, and refusals."""
    checked, refused = [], []
    for obj in release.objects + release.hooks:
        pod = _pod_from(obj, namespace)
        if pod is None:
            continue
        checked.append(_describe(obj))
        reason = _refusal(core_api, namespace, pod)
        if reason:
            refused.append(f"{release.name} {_describe(obj)} in {namespace}: {reason}")
    return checked, refused


def test_every_pod_of_both_releases_is_admitted_in_its_namespace(releases, core_api):
    refused = []
    for release in releases.values():
        labels = core_api.read_namespace(release.namespace).metadata.labels or {}
        # Without the label Pod Security admits everything and this test would prove nothing.
        assert labels.get(ENFORCE), (f"namespace {release.namespace} enforces no Pod Security "
                                     "level (cluster.sh up applies k8s/overlays/local)")
        checked, refused_here = _refusals(core_api, release, release.namespace)
        # Both charts have a `helm test` Pod: the hooks were checked too, not only workloads.
        assert "Pod" in {c.split("/")[0] for c in checked}, (release.name, checked)
        refused += refused_here
    assert not refused, "\n".join(refused)


def _base_levels() -> dict[str, str]:
    return {doc["metadata"]["name"]: doc["metadata"]["labels"][ENFORCE]
            for doc in yaml.safe_load_all(BASE_NAMESPACES.read_text()) if doc}


def test_every_pod_is_admitted_at_the_level_its_namespace_has_outside_local_clusters(
        releases, core_api):
    """The local clusters relax `monitoring` to privileged for node-exporter, which makes the
    check there vacuous; GKE enforces k8s/base's level, checked in a namespace of its own."""
    base = _base_levels()
    relaxed = [r for r in releases.values() if base[r.namespace] !=
               (core_api.read_namespace(r.namespace).metadata.labels or {}).get(ENFORCE)]
    if not relaxed:
        pytest.skip("every release namespace enforces its k8s/base level here already")
    refused = []
    for release in relaxed:
        # It enforces the level's `latest` version; k8s/base pins v1.34: the same on v1.34.
        namespace = make_namespace(core_api, base[release.namespace])
        try:
            # The pods' service accounts must exist, or the ServiceAccount plugin refuses them.
            for account in {o["metadata"]["name"] for o in release.objects
                            if o["kind"] == "ServiceAccount"}:
                core_api.create_namespaced_service_account(
                    namespace, k8s_client.V1ServiceAccount(
                        metadata=k8s_client.V1ObjectMeta(name=account)))
            checked, refused_here = _refusals(core_api, release, namespace)
            assert checked, f"{release.name} has no pod to check"
            refused += refused_here
        finally:
            core_api.delete_namespace(namespace)
    assert not refused, "\n".join(refused)


def test_the_admission_check_refuses_a_privileged_pod_in_tfx_serving(releases, core_api):
    """The check above can fail: a pod the releases make, broken on purpose, is refused."""
    namespace = "tfx-serving"
    labels = core_api.read_namespace(namespace).metadata.labels or {}
    assert labels.get(ENFORCE) == "restricted", labels
    [hook] = [o for o in releases["monitoring"].hooks if o["kind"] == "Pod"]
    pod = _pod_from(hook, namespace)
    # As rendered it meets `restricted` (its own namespace is laxer), so what follows is
    # refused for the one change made to it.
    assert _refusal(core_api, namespace, pod) is None
    security = pod["spec"]["containers"][0]["securityContext"]
    security["privileged"] = True
    # privileged with allowPrivilegeEscalation false is invalid before admission is asked.
    security.pop("allowPrivilegeEscalation")
    reason = _refusal(core_api, namespace, pod)
    assert reason is not None, "a privileged pod was admitted in tfx-serving"
    assert reason.startswith("403") and 'violates PodSecurity "restricted' in reason, reason
    assert "privileged" in reason, reason


def _kept(release: Release) -> list[dict]:
    """Objects the chart asks Helm to keep on uninstall (KFP's database claims and secret)."""
    return [o for o in release.objects
            if (o["metadata"].get("annotations") or {}).get(KEEP[0]) == KEEP[1]]


def _delete_kept(dynamic: DynamicClient, release: Release) -> None:
    for obj in _kept(release):
        with contextlib.suppress(NotFoundError):  # already gone
            _resource(dynamic, obj).delete(name=obj["metadata"]["name"],
                                           namespace=release.namespace)


def _leftovers(dynamic: DynamicClient, release: Release) -> list[str]:
    """Objects labelled as the release's in its namespace: its own and its controllers'."""
    selector = f"app.kubernetes.io/instance={release.name}"
    kinds = dict.fromkeys([(o["apiVersion"], o["kind"]) for o in release.objects]
                          + DEPENDENT_KINDS)
    found = []
    for api_version, kind in kinds:
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        items = resource.get(namespace=release.namespace if resource.namespaced else None,
                             label_selector=selector).items
        found += [f"{kind}/{item.metadata.name}" for item in items]
    # Where a default StorageClass provisions the claims (kind, minikube), their volumes go
    # with them; a volume that stays holds the release's data.
    claims = {o["metadata"]["name"] for o in release.objects
              if o["kind"] == "PersistentVolumeClaim"}
    volumes = dynamic.resources.get(api_version="v1", kind="PersistentVolume").get().items
    found += [f"PersistentVolume/{v.metadata.name}" for v in volumes
              if v.spec.claimRef and v.spec.claimRef.namespace == release.namespace
              and v.spec.claimRef.name in claims]
    return found


def _wait_until_nothing_left(dynamic: DynamicClient, release: Release) -> None:
    deadline = time.monotonic() + GONE_SECONDS
    while leftovers := _leftovers(dynamic, release):
        assert time.monotonic() < deadline, \
            f"{release.name} left {leftovers} in {release.namespace} after {GONE_SECONDS}s"
        time.sleep(1)


def test_uninstall_leaves_nothing_behind(releases, helm, dynamic):
    for release in releases.values():
        config = helm[release.namespace]
        config.uninstall(release.name, wait="watcher", timeout=HELM_SECONDS)
        assert not config.list(name_filter=f"^{release.name}$")
        # Helm waited for what it deleted; only what the chart asks it to keep is still there.
        kept = {_describe(o) for o in _kept(release)}
        present = {_describe(o) for o in release.objects if _read(dynamic, o, release.namespace)}
        assert present == kept, f"{release.name}: {present} after uninstall, kept {kept}"
        # Starting afresh means deleting those too, as a user would; then neither they nor
        # anything the release's controllers made (pods, replica sets) may remain.
        _delete_kept(dynamic, release)
        _wait_until_nothing_left(dynamic, release)
