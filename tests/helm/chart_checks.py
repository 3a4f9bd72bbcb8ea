"""The chart checks of tests/helm, as functions that return the failures they find.

Each check takes rendered objects (or a chart directory) and returns a list of messages, empty
when the check passes, so tests can assert both that real charts pass and that deliberately
broken ones fail.  Rendering and schema validation live in chart_rendering.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

from chart_rendering import describe, is_test_hook, load_values

# Kubernetes minors the rendered objects are validated against (kubernetes-validate, strict):
# - 1.37: the newest minor kubernetes-validate 1.37 bundles.
# - 1.34: the oldest minor GKE's Regular channel offers as of late 2026. GKE's release notes
#   ("Current versions", docs.cloud.google.com/kubernetes-engine/docs/release-notes) list the
#   Regular channel's available minors as 1.34 to 1.36 once 1.37 reached the Rapid channel;
#   1.33 left Regular when its 14 months of standard support ended (GKE versioning policy).
KUBE_VERSIONS = ("1.34", "1.37")

# The Kubernetes version helm lint renders with (Capabilities.KubeVersion, Chart.yaml kubeVersion).
LINT_KUBE_VERSION = "v1.34.0"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart")
POD_TEMPLATE_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance")

# IANA_SVC_NAME (RFC 6335) as Kubernetes validates container port names.
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_MISSING_DEPENDENCIES = re.compile(r"chart directory is missing these dependencies: (.+)")


# --- dependencies ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Dependency:
    """A Chart.yaml dependency; ``vendored`` when its chart is present under charts/."""

    name: str
    version: str
    repository: str
    condition: str
    tags: tuple[str, ...]
    vendored: bool


def dependencies(chart_dir: Path) -> list[Dependency]:
    """Declared dependencies of a chart and whether charts/ holds them (dir or .tgz)."""
    chart = helm_python.Chart.load(str(chart_dir))
    try:
        declared = chart.metadata.get("dependencies") or []
        loaded = {d.get("name") for d in chart.dependencies}
    finally:
        chart.close()
    result = []
    for dep in declared:
        key = dep.get("alias") or dep["name"]
        vendored = dep["name"] in loaded or any(
            (Path(chart_dir) / "charts").glob(f"{dep['name']}-*.tgz"))
        result.append(Dependency(key, str(dep.get("version", "")), dep.get("repository", ""),
                                 dep.get("condition", ""), tuple(dep.get("tags") or ()), vendored))
    return result


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def dependency_enabled(dep: Dependency, merged_values: Mapping[str, Any]) -> bool:
    """Helm's rule: the first condition path holding a bool decides, else tags, else enabled."""
    for path in filter(None, (p.strip() for p in dep.condition.split(","))):
        value = _lookup(merged_values, path)
        if isinstance(value, bool):
            return value
    tag_values = [(merged_values.get("tags") or {}).get(tag) for tag in dep.tags]
    # Helm: any tag set true enables; otherwise any set false disables.
    return any(v is True for v in tag_values) or not any(v is False for v in tag_values)


def merged_chart_values(chart_dir: Path, values_files: Iterable[Path] = (),
                        values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Chart defaults coalesced with user values, as an install would see them."""
    chart = helm_python.Chart.load(str(chart_dir))
    try:
        return chart.merge_values(load_values(values_files, values))
    finally:
        chart.close()


def absent_dependencies(chart_dir: Path, values_files: Iterable[Path] = ()
                        ) -> tuple[list[Dependency], list[Dependency]]:
    """(disabled, enabled) declared dependencies missing from charts/ for these values."""
    merged = merged_chart_values(chart_dir, values_files)
    absent = [d for d in dependencies(chart_dir) if not d.vendored]
    return ([d for d in absent if not dependency_enabled(d, merged)],
            [d for d in absent if dependency_enabled(d, merged)])


# --- lint --------------------------------------------------------------------------------------

def lint_failures(chart_dir: Path, values_files: Iterable[Path] = (),
                  values: Mapping[str, Any] | None = None, namespace: str = "default",
                  kube_version: str = LINT_KUBE_VERSION) -> tuple[list[str], list[str]]:
    """Strict ``helm lint`` problems (warnings count) and the notes about tolerated ones.

    The only tolerated warning is "chart directory is missing these dependencies" when every
    dependency it names is disabled by these values: it cannot be downloaded offline, and it
    is not installed anyway.
    """
    values_files = list(values_files)
    report = helm_python.lint(str(chart_dir), load_values(values_files, values), strict=True,
                              namespace=namespace, kube_version=kube_version)
    disabled, _ = absent_dependencies(chart_dir, values_files)
    disabled_names = {d.name for d in disabled}
    failures, notes = [], []
    for message in report["messages"]:
        if message["severity"] < 2:
            continue
        missing = _MISSING_DEPENDENCIES.search(message["error"])
        if missing and set(missing.group(1).replace(" ", "").split(",")) <= disabled_names:
            notes.append(f"lint: {message['error'].strip()} (all disabled in these values)")
            continue
        failures.append(f"{message['path']}: {message['error'].strip()}")
    return failures, notes


# --- values schema -----------------------------------------------------------------------------

def schema_rejection(chart_dir: Path, values: Mapping[str, Any]) -> str | None:
    """The values.schema.json error for these values, or None when the schema accepts them."""
    chart = helm_python.Chart.load(str(chart_dir))
    try:
        if chart.schema is None:
            return None
        chart.validate_schema(dict(values))
        return None
    except helm_python.HelmValuesError as error:
        return str(error)
    finally:
        chart.close()


# --- workloads ---------------------------------------------------------------------------------

def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside a workload object (None for other kinds)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
            "spec") or {}
    if kind in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """Labels of the pods a workload creates (a Pod's own labels)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        meta = obj.get("metadata") or {}
    elif kind == "CronJob":
        meta = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get(
            "metadata") or {}
    else:
        meta = (spec.get("template") or {}).get("metadata") or {}
    return dict(meta.get("labels") or {})


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return ([("initContainer", c) for c in spec.get("initContainers") or []]
            + [("container", c) for c in spec.get("containers") or []])


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None (tag other than latest, or a digest)."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or not last.rsplit(":", 1)[1]:
        return f"image {image!r} has no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the tag latest"
    return None


def _native_sidecar(kind: str, container: Mapping[str, Any]) -> bool:
    return kind == "initContainer" and container.get("restartPolicy") == "Always"


def workload_failures(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Security and operability of every container of every workload (helm test pods too).

    Restricted Pod Security essentials (non-root, no privilege escalation, ALL capabilities
    dropped, RuntimeDefault/Localhost seccomp, not privileged), requests and limits for CPU
    and memory, pinned images, and liveness plus readiness probes on the long-running
    containers of Deployments, StatefulSets, DaemonSets and ReplicaSets.
    """
    failures = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        pod_sc = spec.get("securityContext") or {}
        long_running = obj.get("kind") in LONG_RUNNING_KINDS
        for kind, container in _containers(spec):
            where = f"{describe(obj)} {kind} {container.get('name')}"
            sc = container.get("securityContext") or {}
            merged = {**pod_sc, **sc}
            if merged.get("runAsNonRoot") is not True:
                failures.append(f"{where}: runAsNonRoot is not true")
            if merged.get("runAsUser") == 0:
                failures.append(f"{where}: runAsUser is 0 (root)")
            if sc.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                failures.append(f"{where}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                failures.append(f"{where}: capabilities.drop does not contain ALL")
            if ((merged.get("seccompProfile") or {}).get("type")
                    not in ("RuntimeDefault", "Localhost")):
                failures.append(f"{where}: no RuntimeDefault/Localhost seccompProfile")
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(section) or {}):
                        failures.append(f"{where}: no {section}.{resource}")
            problem = image_problem(str(container.get("image", "")))
            if problem:
                failures.append(f"{where}: {problem}")
            if long_running and (kind == "container" or _native_sidecar(kind, container)):
                for probe in ("livenessProbe", "readinessProbe"):
                    if not container.get(probe):
                        failures.append(f"{where}: no {probe}")
    return failures


def label_failures(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Standard labels on every object, and name/instance on every pod template."""
    failures = []
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        missing = [label for label in STANDARD_LABELS if not labels.get(label)]
        if missing:
            failures.append(f"{describe(obj)}: missing labels {', '.join(missing)}")
        if obj.get("kind") in WORKLOAD_KINDS - {"Pod"}:
            template = pod_labels(obj)
            missing = [label for label in POD_TEMPLATE_LABELS if not template.get(label)]
            if missing:
                failures.append(
                    f"{describe(obj)} pod template: missing labels {', '.join(missing)}")
    return failures


# --- selectors and ports -----------------------------------------------------------------------

def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels and matchExpressions)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def _same_namespace(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return _namespace(a) is None or _namespace(b) is None or _namespace(a) == _namespace(b)


def _selected(selector: Mapping[str, Any], owner: Mapping[str, Any],
              workloads: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [w for w in workloads
            if _same_namespace(owner, w) and selector_matches(selector, pod_labels(w))]


# Annotation on a Service, PodDisruptionBudget or NetworkPolicy whose selector is meant for pods
# the chart does not render (e.g. the pipeline's InfraValidator pods); its value says who creates
# them. Such a selector may match no rendered pod template.
EXTERNAL_PODS_ANNOTATION = "tfx-kfp-gke/pods-created-by"


def external_pods_reason(obj: Mapping[str, Any]) -> str:
    """The EXTERNAL_PODS_ANNOTATION value of an object ("" when absent)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(EXTERNAL_PODS_ANNOTATION) or "").strip()


def selector_failures(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Selectors that select the pods they are meant for.

    Workload selectors must match their own pod template. Service, PodDisruptionBudget and
    (non-empty) NetworkPolicy selectors must select at least one rendered pod template, unless
    the object names who creates its pods in EXTERNAL_PODS_ANNOTATION; a NetworkPolicy may
    select helm test pods, a Service or PodDisruptionBudget must not. An HPA must target a
    rendered workload.
    """
    objects = list(objects)
    workloads = [o for o in objects if o.get("kind") in WORKLOAD_KINDS]
    served = [w for w in workloads if not is_test_hook(w)]
    hooks = [w for w in workloads if is_test_hook(w)]
    failures = []
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind in WORKLOAD_KINDS - {"Pod", "CronJob"} and "selector" in spec \
                and not selector_matches(spec["selector"], pod_labels(obj)):
            failures.append(f"{describe(obj)}: spec.selector does not match its pod template")
        selector = None
        if kind == "Service" and spec.get("selector"):
            selector = {"matchLabels": spec["selector"]}
        elif kind == "PodDisruptionBudget":
            selector = spec.get("selector") or {}
        elif kind == "NetworkPolicy" and spec.get("podSelector"):
            selector = spec["podSelector"]
        if selector is not None:
            candidates = workloads if kind == "NetworkPolicy" else served
            if not _selected(selector, obj, candidates) and not external_pods_reason(obj):
                failures.append(f"{describe(obj)}: selector matches no rendered pod template "
                                f"(pods created elsewhere? say so in {EXTERNAL_PODS_ANNOTATION})")
            if kind != "NetworkPolicy":
                for hook in _selected(selector, obj, hooks):
                    failures.append(f"{describe(obj)}: selector also matches {describe(hook)}")
        if kind == "HorizontalPodAutoscaler":
            target = spec.get("scaleTargetRef") or {}
            if not any(w.get("kind") == target.get("kind")
                       and (w.get("metadata") or {}).get("name") == target.get("name")
                       and _same_namespace(obj, w) for w in served):
                failures.append(f"{describe(obj)}: scaleTargetRef {target.get('kind')}/"
                                f"{target.get('name')} is not rendered")
    return failures


def _container_ports(workload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = pod_spec(workload) or {}
    return [port for _, container in _containers(spec) for port in container.get("ports") or []]


def port_failures(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Named container ports (IANA_SVC_NAME), and port references that resolve.

    Every container port has a valid unique name; probe ports given by name exist in their
    container; a Service's targetPort (name or number, default: port) exists on the pods it
    selects; NetworkPolicy ports given by name exist on the pods it selects.
    """
    objects = list(objects)
    workloads = [o for o in objects if o.get("kind") in WORKLOAD_KINDS and not is_test_hook(o)]
    failures = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for kind, container in _containers(spec):
            where = f"{describe(obj)} {kind} {container.get('name')}"
            names = []
            for port in container.get("ports") or []:
                name = port.get("name")
                if not name:
                    failures.append(
                        f"{where}: containerPort {port.get('containerPort')} has no name")
                elif not _IANA_SVC_NAME.match(name):
                    failures.append(f"{where}: port name {name!r} is not a valid IANA_SVC_NAME")
                else:
                    names.append(name)
            if len(names) != len(set(names)):
                failures.append(f"{where}: duplicate port names {names}")
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket"):
                    port = (probe.get(handler) or {}).get("port")
                    if isinstance(port, str) and port not in names:
                        failures.append(f"{where}: {probe_name} port {port!r} is not a port name")
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind == "Service" and spec.get("selector"):
            pods = _selected({"matchLabels": spec["selector"]}, obj, workloads)
            ports = [p for w in pods for p in _container_ports(w)]
            for port in spec.get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                found = (any(p.get("name") == target for p in ports) if isinstance(target, str)
                         else any(p.get("containerPort") == target for p in ports))
                if not found:
                    failures.append(f"{describe(obj)}: port {port.get('name')} targetPort "
                                    f"{target!r} is not a port of the selected pods")
        if kind == "NetworkPolicy":
            pods = _selected(spec.get("podSelector") or {}, obj, workloads)
            names = {p.get("name") for w in pods for p in _container_ports(w)}
            for rule in spec.get("ingress") or []:
                for port in rule.get("ports") or []:
                    if isinstance(port.get("port"), str) and port["port"] not in names:
                        failures.append(f"{describe(obj)}: ingress port {port['port']!r} is not "
                                        "a port name of the selected pods")
    return failures


# --- checkov -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckovFailure:
    check_id: str
    check_name: str
    resource: str
    file_path: str

    def __str__(self) -> str:
        return f"{self.check_id} {self.resource} ({self.check_name}) in {self.file_path}"


def run_checkov(directory: Path) -> dict[str, list[CheckovFailure]]:
    """Failed checks per manifest file (path relative to ``directory``), one checkov process.

    Runs offline: no download of Prisma Cloud guidelines or external checks.
    """
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
           "LOG_LEVEL": "ERROR"}
    checkov = Path(sys.executable).with_name("checkov")
    command = [str(checkov) if checkov.exists() else "checkov", "-d", str(directory),
               "--framework", "kubernetes", "--output", "json", "--quiet", "--compact",
               "--skip-download", "--soft-fail"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                               check=False)
    if completed.returncode != 0 or not completed.stdout.strip():
        raise RuntimeError(f"checkov failed ({completed.returncode}): {completed.stderr[-2000:]}")
    reports = json.loads(completed.stdout)
    failures: dict[str, list[CheckovFailure]] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        if report.get("summary", {}).get("parsing_errors"):
            raise RuntimeError(
                f"checkov could not parse: {report['results'].get('parsing_errors')}")
        for check in report.get("results", {}).get("failed_checks", []):
            path = check["file_path"].lstrip("/")
            failures.setdefault(path, []).append(CheckovFailure(
                check["check_id"], check.get("check_name", ""), check["resource"], path))
    return failures


def load_checkov_skips(chart_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """checkov-skips.yaml of a chart: check id -> {reason, resources}; plus format problems.

    An entry is ``CKV_ID: reason`` or ``CKV_ID: {reason: ..., resources: [patterns]}``;
    a missing or empty reason is a problem.
    """
    path = Path(chart_dir) / "checkov-skips.yaml"
    if not path.exists():
        return {}, []
    raw = yaml.safe_load(path.read_text()) or {}
    skips, problems = {}, []
    if not isinstance(raw, dict):
        return {}, [f"{path}: expected a mapping of check id to reason"]
    for check_id, entry in raw.items():
        if isinstance(entry, str):
            entry = {"reason": entry}
        if not isinstance(entry, dict) or set(entry) - {"reason", "resources"}:
            problems.append(f"{path}: {check_id}: expected a reason or {{reason, resources}}")
            continue
        if not str(entry.get("reason") or "").strip():
            problems.append(f"{path}: {check_id}: skip without a reason")
            continue
        if not re.match(r"^CKV2?_K8S_\d+$", str(check_id)):
            problems.append(f"{path}: {check_id}: not a checkov kubernetes check id")
            continue
        skips[str(check_id)] = {"reason": entry["reason"],
                                "resources": list(entry.get("resources") or ["*"])}
    return skips, problems


def unskipped(failures: Iterable[CheckovFailure], skips: Mapping[str, Mapping[str, Any]]
              ) -> tuple[list[CheckovFailure], set[str]]:
    """Failures no skip covers, and the skip ids that covered something."""
    left, used = [], set()
    for failure in failures:
        skip = skips.get(failure.check_id)
        if skip and any(fnmatch.fnmatchcase(failure.resource, p) for p in skip["resources"]):
            used.add(failure.check_id)
        else:
            left.append(failure)
    return left, used
