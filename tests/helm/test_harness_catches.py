"""The harness checks fail on deliberately broken versions of the tf-serving chart.

Each test breaks one thing, through values or in a temporary copy of the chart, and calls the
check function directly: a check that cannot fail would pass every chart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from chart_checks import (
    KUBE_VERSIONS,
    absent_dependencies,
    label_failures,
    lint_failures,
    load_checkov_skips,
    port_failures,
    run_checkov,
    schema_rejection,
    selector_failures,
    unskipped,
    workload_failures,
)
from chart_rendering import CHARTS_DIR, render, validate_objects

CHART = CHARTS_DIR / "tf-serving"


@pytest.fixture
def chart_copy(tmp_path) -> Path:
    """A private copy of the chart to break."""
    return Path(shutil.copytree(CHART, tmp_path / "tf-serving"))


def _edit(chart: Path, template: str, old: str, new: str) -> None:
    path = chart / template
    text = path.read_text()
    assert old in text, f"{template} no longer contains {old!r}; update this test"
    path.write_text(text.replace(old, new))


def _without_schema(chart: Path) -> Path:
    """Drop values.schema.json so values it would reject reach the templates."""
    (chart / "values.schema.json").unlink()
    return chart


def test_the_real_chart_passes_every_check():
    objects = render(CHART, include_tests=True)
    assert not (workload_failures(objects) + label_failures(objects)
                + selector_failures(objects) + port_failures(objects))


def test_wrong_service_target_port_name_is_caught(chart_copy):
    _edit(chart_copy, "templates/service.yaml", "targetPort: grpc", "targetPort: grcp")
    failures = port_failures(render(chart_copy))
    assert any("targetPort 'grcp'" in f for f in failures), failures


def test_invalid_container_port_name_is_caught(chart_copy):
    _edit(chart_copy, "templates/deployment.yaml", "- name: grpc\n", "- name: grpc_port\n")
    failures = port_failures(render(chart_copy))
    assert any("'grpc_port' is not a valid IANA_SVC_NAME" in f for f in failures), failures
    # The Service and the NetworkPolicy still refer to "grpc", which no longer exists.
    assert any("Service/" in f and "'grpc'" in f for f in failures), failures
    assert any("NetworkPolicy/" in f and "'grpc'" in f for f in failures), failures


def test_missing_limits_are_caught(chart_copy):
    _edit(chart_copy, "templates/deployment.yaml", "toYaml .Values.resources",
          'toYaml (omit .Values.resources "limits")')
    failures = workload_failures(render(chart_copy))
    assert any("container tf-serving: no limits.cpu" in f for f in failures), failures
    assert any("container tf-serving: no limits.memory" in f for f in failures), failures


def test_missing_limit_through_values_is_rejected_by_the_schema():
    assert "memory" in schema_rejection(CHART, {"resources": {"limits": {"memory": None}}})


def test_image_latest_is_rejected_by_schema_and_by_the_workload_check(chart_copy):
    assert schema_rejection(CHART, {"image": {"tag": "latest"}}) is not None
    failures, _ = lint_failures(CHART, values={"image": {"tag": "latest"}})
    assert failures, "strict lint accepted image tag latest"
    objects = render(_without_schema(chart_copy), values={"image": {"tag": "latest"}})
    assert any("uses the tag latest" in f for f in workload_failures(objects))


def test_untagged_image_is_caught(chart_copy):
    objects = render(_without_schema(chart_copy), values={"helmTest": {"image": {"tag": ""}}},
                     include_tests=True)
    assert any("has no tag" in f for f in workload_failures(objects))


def test_root_user_is_rejected_by_schema_and_by_the_workload_check(chart_copy):
    root = {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0},
            "securityContext": {"runAsNonRoot": False, "runAsUser": 0}}
    assert schema_rejection(CHART, root) is not None
    failures = workload_failures(render(_without_schema(chart_copy), values=root))
    assert any("runAsNonRoot is not true" in f for f in failures), failures
    assert any("runAsUser is 0" in f for f in failures), failures


def test_privilege_escalation_capabilities_and_seccomp_are_caught(chart_copy):
    loose = {"securityContext": {"allowPrivilegeEscalation": True, "capabilities": {"drop": []},
                                 "seccompProfile": {"type": "Unconfined"}},
             "podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}}
    failures = workload_failures(render(_without_schema(chart_copy), values=loose))
    for expected in ("allowPrivilegeEscalation", "capabilities.drop", "seccompProfile"):
        assert any(expected in f for f in failures), (expected, failures)


def test_missing_probe_is_caught(chart_copy):
    text = (chart_copy / "templates/deployment.yaml").read_text()
    start = text.index("          livenessProbe:")
    end = text.index("          resources:", start)
    (chart_copy / "templates/deployment.yaml").write_text(text[:start] + text[end:])
    failures = workload_failures(render(chart_copy))
    assert any("no livenessProbe" in f for f in failures), failures


def test_missing_standard_label_is_caught(chart_copy):
    _edit(chart_copy, "templates/_helpers.tpl",
          "app.kubernetes.io/managed-by: {{ .Release.Service }}\n", "")
    failures = label_failures(render(chart_copy))
    assert any("app.kubernetes.io/managed-by" in f for f in failures), failures


def test_selector_mismatches_are_caught(chart_copy):
    _edit(chart_copy, "templates/service.yaml",
          "    app.kubernetes.io/component: server\n  ports:", "  ports:")
    _edit(chart_copy, "templates/poddisruptionbudget.yaml",
          "app.kubernetes.io/component: server\n{{- end }}",
          "app.kubernetes.io/component: serving\n{{- end }}")
    objects = render(chart_copy, values={"podDisruptionBudget": {"enabled": True}},
                     include_tests=True)
    failures = selector_failures(objects)
    # Without its component label the Service also selects the helm test pod.
    assert any(f.startswith("Service/") and "also matches Pod/" in f for f in failures), failures
    assert any(f.startswith("PodDisruptionBudget/") and "matches no" in f for f in failures)


def test_selector_for_pods_created_elsewhere_must_say_so():
    objects = render(CHART)
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    policy["spec"]["podSelector"] = {"matchLabels": {"app": "infra-validator"}}
    assert any(f.startswith("NetworkPolicy/") and "matches no" in f
               for f in selector_failures(objects))
    policy["metadata"]["annotations"] = {
        "tfx-kfp-gke/pods-created-by": "the pipeline's InfraValidator"}
    assert not selector_failures(objects)


def test_hpa_target_must_be_rendered(chart_copy):
    _edit(chart_copy, "templates/horizontalpodautoscaler.yaml", "kind: Deployment",
          "kind: StatefulSet")
    failures = selector_failures(render(chart_copy, values={"autoscaling": {"enabled": True}}))
    assert any("scaleTargetRef StatefulSet/" in f for f in failures), failures


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_kubernetes_schema_catches_unknown_fields_and_removed_apis(chart_copy, kube_version):
    _edit(chart_copy, "templates/deployment.yaml", "  revisionHistoryLimit: 3",
          "  revisionHistoryLimit: 3\n  replica: 2")
    _edit(chart_copy, "templates/horizontalpodautoscaler.yaml", "autoscaling/v2",
          "autoscaling/v2beta2")
    report = validate_objects(render(chart_copy, values={"autoscaling": {"enabled": True}}),
                              kube_version)
    assert any("Deployment/" in f and "'replica'" in f for f in report.failures), report
    assert any("HorizontalPodAutoscaler/" in f and "autoscaling/v2beta2" in f
               for f in report.failures), report


def test_crd_schemas_catch_errors_and_unknown_crds_are_reported():
    good = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "tf-serving"},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "tf-serving"}},
                     "endpoints": [{"port": "http", "path": "/monitoring/prometheus/metrics"}]}}
    typo = {**good, "spec": {**good["spec"], "endpoints": [{"prot": "http"}]}}
    bad_meta = {**good, "metadata": {"name": "x", "labelz": {},
                                     "ownerReferences": [{"kind": "Service", "uid": 1}]}}
    podmonitoring = {"apiVersion": "monitoring.googleapis.com/v1", "kind": "PodMonitoring",
                     "metadata": {"name": "tf-serving"}, "spec": {}}
    report = validate_objects([good, typo, bad_meta, podmonitoring], KUBE_VERSIONS[0])
    assert report.validated == [
        "ServiceMonitor/tf-serving (CRD schema servicemonitor-monitoring.coreos.com-v1.json)"]
    assert any("'prot' was unexpected" in f for f in report.failures), report.failures
    # metadata is checked against the strict Kubernetes ObjectMeta of that version
    assert any("'labelz' was unexpected" in f for f in report.failures), report.failures
    assert any("ownerReferences.0" in f for f in report.failures), report.failures
    assert len(report.unvalidated) == 1 and "PodMonitoring/tf-serving" in report.unvalidated[0]


def test_checkov_catches_a_writable_root_filesystem(chart_copy, tmp_path):
    loose = {"securityContext": {"readOnlyRootFilesystem": False}}
    objects = render(_without_schema(chart_copy), values=loose)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "loose.yaml").write_text(yaml.safe_dump_all(objects))
    skips, _ = load_checkov_skips(CHART)
    left, _ = unskipped(run_checkov(tmp_path / "manifests").get("loose.yaml", []), skips)
    assert any(f.check_id == "CKV_K8S_22" for f in left), [str(f) for f in left]


def test_checkov_skip_without_reason_is_a_problem(chart_copy):
    (chart_copy / "checkov-skips.yaml").write_text(
        "CKV_K8S_43: ''\nCKV_K8S_15: {resources: ['Pod.*']}\nCKV_K8S_8: fine\nnot-a-check: x\n")
    skips, problems = load_checkov_skips(chart_copy)
    assert set(skips) == {"CKV_K8S_8"}
    assert sum("skip without a reason" in p for p in problems) == 2, problems
    assert any("not a checkov kubernetes check id" in p for p in problems), problems


def test_undownloadable_dependency_must_be_disabled(chart_copy):
    _without_schema(chart_copy)
    with (chart_copy / "Chart.yaml").open("a") as chart_yaml:
        chart_yaml.write("dependencies:\n  - name: mysql\n    version: 9.9.9\n"
                         "    repository: https://charts.example.com\n"
                         "    condition: mysql.enabled\n")
    off, on = chart_copy / "off.yaml", chart_copy / "on.yaml"
    off.write_text("mysql: {enabled: false}\n")
    on.write_text("mysql: {enabled: true}\n")

    disabled, enabled = absent_dependencies(chart_copy, [off])
    assert [d.name for d in disabled] == ["mysql"] and not enabled
    failures, notes = lint_failures(chart_copy, [off], namespace="tfx-serving")
    assert not failures and any("mysql" in n for n in notes), (failures, notes)

    disabled, enabled = absent_dependencies(chart_copy, [on])
    assert [d.name for d in enabled] == ["mysql"] and not disabled
    failures, _ = lint_failures(chart_copy, [on], namespace="tfx-serving")
    assert any("missing these dependencies: mysql" in f for f in failures), failures
