"""Offline rendering and schema validation of the charts under helm/ (shared by tests/helm).

Everything here runs without a cluster, Docker or network: the Helm v4 Go SDK
(`helm_python`) lints and renders, kubernetes-validate holds the Kubernetes API schemas,
and the CRD schemas come from `../shared/schemas` beside the repository.  Chart-specific
tests import this module (its name is unique because tests have no __init__.py).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as _kv_utils

REPO = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO / "helm"
SCHEMAS_DIR = REPO.parent / "shared" / "schemas"

# Release name used for every render; short so that fullname logic is exercised but stays readable.
RELEASE = "test"

# Namespace each chart is installed into (decided by the lead; see DESIGN.md and the issues).
RELEASE_NAMESPACES = {"kfp": "kubeflow", "tf-serving": "tfx-serving", "monitoring": "monitoring"}

# API groups whose kinds are built into Kubernetes: kubernetes-validate must know them, so a
# missing schema there means a removed or misspelled apiVersion, never "unvalidated".
_BUILTIN_GROUP = re.compile(r"^(|[a-z0-9-]+|[a-z0-9.-]+\.k8s\.io)$")


def charts() -> list[Path]:
    """Every chart directory under helm/ (a directory holding Chart.yaml), sorted by name."""
    return sorted(p.parent for p in CHARTS_DIR.glob("*/Chart.yaml"))


def scenarios(chart: Path) -> list[Path]:
    """The chart's CI scenarios: ci/*-values.yaml, sorted."""
    return sorted((Path(chart) / "ci").glob("*-values.yaml"))


def chart_namespace(chart_dir: Path) -> str:
    """Namespace the chart is released into (``default`` for charts not listed)."""
    return RELEASE_NAMESPACES.get(Path(chart_dir).name, "default")


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge like repeated ``helm -f``: maps merge, everything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(values_files: Iterable[Path | str] = (), values: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """User values from files (in order) then ``values`` on top, as ``-f a -f b --set-json``."""
    merged: dict[str, Any] = {}
    for path in values_files:
        merged = merge_values(merged, yaml.safe_load(Path(path).read_text()) or {})
    return merge_values(merged, values or {})


def render_templates(chart_dir: Path | str, values_files: Iterable[Path | str] = (),
                     values: Mapping[str, Any] | None = None, namespace: str | None = None,
                     release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as the SDK returns it.

    Raises helm_python.HelmValuesError when the values break values.schema.json and
    helm_python.HelmRenderError when a template fails.
    """
    chart = helm_python.Chart.load(str(chart_dir))
    try:
        return chart.render(load_values(values_files, values), name=release,
                            namespace=namespace or chart_namespace(Path(chart_dir)),
                            revision=1, is_install=True)
    finally:
        chart.close()


def is_test_hook(obj: Mapping[str, Any]) -> bool:
    """True for ``helm test`` hooks (annotation helm.sh/hook containing test/test-success)."""
    hooks = ((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(h.strip() in ("test", "test-success") for h in str(hooks).split(","))


def render(chart_dir: Path | str, values_files: Iterable[Path | str] = (),
           values: Mapping[str, Any] | None = None, namespace: str | None = None, *,
           include_tests: bool = False, release: str = RELEASE) -> list[dict[str, Any]]:
    """Rendered Kubernetes objects of a chart, in template order.

    ``include_tests`` adds the ``helm test`` hook objects (templates/tests/); other hooks are
    always included because an install creates them.
    """
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_templates(chart_dir, values_files, values, namespace,
                                              release).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ValueError(f"{path}: rendered a document that is not a Kubernetes object")
            if include_tests or not is_test_hook(doc):
                objects.append(doc)
    return objects


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` for messages."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


@dataclass
class ValidationReport:
    """What validate_objects found: ``failures`` fail a test, ``unvalidated`` must be reported."""

    failures: list[str] = field(default_factory=list)
    unvalidated: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def crd_schema_path(obj: Mapping[str, Any]) -> Path:
    """Where the JSON schema of a custom resource would be: <kind>-<group>-<version>.json."""
    group, version = _group_version(str(obj.get("apiVersion", "")))
    return SCHEMAS_DIR / f"{str(obj.get('kind', '')).lower()}-{group}-{version}.json"


def _closed(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema with unknown fields rejected (kubectl --validate=strict).

    The API server prunes unknown fields of structural schemas silently; a typo in a chart
    would then vanish without notice, so here an object schema with ``properties`` rejects
    anything else unless it says x-kubernetes-preserve-unknown-fields.
    """
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if ("properties" in closed and "additionalProperties" not in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


@cache
def _crd_validator(path: Path, kube_version: str) -> jsonschema.Validator:
    document = json.loads(path.read_text())
    schema = _closed(document["openAPIV3Schema"])
    meta, definitions = _object_meta_schema(kube_version)
    schema.setdefault("properties", {})["metadata"] = meta
    schema["properties"]["apiVersion"] = {"const": f"{document['group']}/{document['version']}"}
    schema["properties"]["kind"] = {"const": document["kind"]}
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    schema["$defs"] = definitions
    return jsonschema.Draft7Validator(schema)


def _object_meta_schema(kube_version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Strict ObjectMeta of that Kubernetes version and the definitions it refers to, with
    refs such as "/api/_definitions.json#/$defs/X" rewritten to "#/$defs/X" (the definitions
    go to the root of the CRD schema, where their own "#/$defs/..." refs then resolve)."""
    # kubernetes-validate picks the newest bundled schema set not newer than kube_version;
    # validating a trivial object tells which one.
    version = kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, kube_version, True)
    directory = f"kubernetes-json-schema/v{version}.0-local-strict"
    meta = _kv_utils.schema_contents(f"{directory}/objectmeta-meta-v1.json", kube_version)
    # Without its own $id/$schema the ObjectMeta schema resolves "#" against the CRD's root.
    meta = {k: v for k, v in meta.items() if k not in ("$id", "$schema")}
    definitions = _kv_utils.schema_contents(f"{directory}/_definitions.json", kube_version)
    local = json.loads(re.sub(r'"[^"]*_definitions\.json#/\$defs/', '"#/$defs/',
                              json.dumps({"meta": meta, "defs": definitions["$defs"]})))
    return local["meta"], local["defs"]


def validate_crd_object(obj: Mapping[str, Any], kube_version: str) -> list[str]:
    """Errors of one custom resource against its schema in SCHEMAS_DIR (file must exist)."""
    validator = _crd_validator(crd_schema_path(obj), kube_version)
    return [f"{describe(obj)}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.path)))]


def validate_objects(objects: Iterable[Mapping[str, Any]], kube_version: str) -> ValidationReport:
    """Validate rendered objects strictly (unknown fields are errors).

    Built-in kinds go to kubernetes-validate for ``kube_version`` (e.g. "1.34"); a built-in
    apiVersion that version does not serve is a failure.  Custom resources go to
    ``SCHEMAS_DIR/<kind>-<group>-<version>.json``; one with no schema there is listed in
    ``unvalidated`` with the reason, for the caller to report.
    """
    report = ValidationReport()
    for obj in objects:
        name = describe(obj)
        group, _ = _group_version(str(obj.get("apiVersion", "")))
        try:
            checked = kubernetes_validate.validate(dict(obj), kube_version, strict=True)
            report.validated.append(f"{name} (Kubernetes {checked})")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path)) or "<root>"
            report.failures.append(f"{name}: {path}: {error.message} (Kubernetes {error.version})")
        except kubernetes_validate.SchemaNotFoundError:
            if _BUILTIN_GROUP.match(group):
                report.failures.append(
                    f"{name}: Kubernetes {kube_version} serves no {obj.get('kind')} in "
                    f"{obj.get('apiVersion')} (removed or misspelled API version)")
            elif crd_schema_path(obj).is_file():
                errors = validate_crd_object(obj, kube_version)
                report.failures.extend(errors)
                if not errors:
                    report.validated.append(f"{name} (CRD schema {crd_schema_path(obj).name})")
            else:
                report.unvalidated.append(
                    f"{name} ({obj.get('apiVersion')}): custom resource with no schema; "
                    f"expected {crd_schema_path(obj)}")
    return report
