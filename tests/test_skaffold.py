"""skaffold.yaml: valid v4beta14, and every profile refers only to things that exist.

skaffold itself is not installed here, so its profile patches are applied by this test (the
JSON-patch subset skaffold.yaml uses) and each resulting config is checked as skaffold
would read it.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonpointer import JsonPointer

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "schemas" / "skaffold-v4beta14.json"
PROFILES = ("kind", "minikube", "gke")


def _configs() -> list[dict]:
    return list(yaml.safe_load_all((REPO / "skaffold.yaml").read_text()))


def _apply(config: dict, profile: str) -> dict:
    """The config with ``profile``'s patches and sections applied, as skaffold does."""
    result = copy.deepcopy(config)
    [chosen] = [p for p in config.get("profiles", []) if p["name"] == profile]
    for patch in chosen.get("patches", []):
        pointer = JsonPointer(patch["path"])
        parent = JsonPointer.from_parts(pointer.parts[:-1]).resolve(result)
        key = pointer.parts[-1]
        key = int(key) if isinstance(parent, list) else key
        if patch["op"] == "remove":
            del parent[key]
        elif patch["op"] == "replace":
            assert key in parent or isinstance(parent, list), f"{profile}: {patch['path']}"
            parent[key] = patch["value"]
        elif patch["op"] == "add":
            parent[key] = patch["value"]
        else:
            raise AssertionError(f"{profile}: unsupported patch op {patch['op']}")
    result.pop("profiles", None)
    return result


def _merged(base: dict, override: dict) -> dict:
    """Helm's merge of a values file over the chart's values."""
    result = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = _merged(result[key], value) if both_maps else value
    return result


def _make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))


def test_every_document_validates_against_the_v4beta14_schema():
    schema = json.loads(SCHEMA.read_text())
    for config in _configs():
        assert config["apiVersion"] == "skaffold/v4beta14"
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(config)]
        assert not errors, (config["metadata"]["name"], errors)


def test_the_schema_check_catches_a_misspelt_field():
    schema = json.loads(SCHEMA.read_text())
    config = _configs()[1]
    config["deploy"]["helm"]["releases"][0]["chartpath"] = "helm/kfp"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(config))


def test_namespaces_come_before_the_charts():
    # skaffold deploys config by config; within one, Helm releases before kubectl manifests.
    cluster, app = _configs()
    assert "kubectl" in cluster["deploy"] and "helm" not in cluster["deploy"]
    assert "helm" in app["deploy"] and "manifests" not in app


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_activate_on_the_contexts_the_makefile_creates(profile):
    kind_cluster = yaml.safe_load((REPO / "k8s" / "kind" / "cluster.yaml").read_text())["name"]
    minikube = re.search(r"^readonly PROFILE=(\S+)$",
                         (REPO / "k8s" / "minikube" / "profile.sh").read_text(), re.MULTILINE)
    expected = {"kind": f"kind-{kind_cluster}", "minikube": minikube.group(1),
                "gke": "gke_.*"}[profile]
    for config in _configs():
        [chosen] = [p for p in config["profiles"] if p["name"] == profile]
        assert chosen["activation"] == [{"kubeContext": expected}]


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_refers_to_existing_paths_charts_and_targets(profile):
    cluster, app = (_apply(config, profile) for config in _configs())
    for path in cluster["manifests"]["kustomize"]["paths"]:
        assert (REPO / path / "kustomization.yaml").is_file(), path
        assert path.endswith(profile)

    [artifact] = app["build"]["artifacts"]
    assert (REPO / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    charts = {release["name"]: release for release in app["deploy"]["helm"]["releases"]}
    assert set(charts) == {"kfp", "tf-serving", "monitoring"}
    for release in charts.values():
        assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
        for values in release["valuesFiles"]:
            assert (REPO / values).is_file(), values
            assert values.endswith(f"/ci/{profile}-values.yaml"), values

    [hook] = app["deploy"]["helm"]["hooks"]["after"]
    make, target, *assignments = hook["host"]["command"]
    assert make == "make" and target in _make_targets()
    for assignment in assignments:
        name, value = assignment.split("=", 1)
        assert name == "PIPELINE_ENV" and (REPO / value).is_file(), assignment
    if profile == "gke":
        assert "googleCloudBuild" in app["build"] and "local" not in app["build"]
    else:
        assert app["build"]["local"] == {"push": False}


def test_the_build_hook_records_the_image_the_deploy_hook_compiles_with():
    app = _configs()[1]
    [artifact] = app["build"]["artifacts"]
    [hook] = artifact["hooks"]["after"]
    assert "$SKAFFOLD_IMAGE" in hook["command"][-1]
    recorded = shlex.split(hook["command"][-1].split(">")[-1])[0]
    assert recorded in (REPO / "Makefile").read_text()


def test_port_forwards_name_services_the_charts_render():
    app = _configs()[1]
    forwards = {(f["namespace"], f["resourceName"]): f["localPort"] for f in app["portForward"]}
    assert forwards == {
        ("kubeflow", "ml-pipeline-ui"): 8080,
        ("tfx-serving", "tf-serving"): 8501,
        ("monitoring", "monitoring-grafana"): 3000,
    }
    ui_service = (REPO / "helm" / "kfp" / "templates" / "_helpers.tpl").read_text()
    assert 'define "kfp.ui.serviceName" -}}ml-pipeline-ui' in ui_service


@pytest.mark.parametrize("profile", PROFILES)
def test_values_set_by_skaffold_are_keys_the_charts_define(profile):
    app = _apply(_configs()[1], profile)
    for release in app["deploy"]["helm"]["releases"]:
        defaults = yaml.safe_load((REPO / release["chartPath"] / "values.yaml").read_text())
        for values_file in release["valuesFiles"]:
            defaults = _merged(defaults, yaml.safe_load((REPO / values_file).read_text()))
        keys = {**release.get("setValues", {}), **release.get("setValueTemplates", {})}
        for dotted in keys:
            node = defaults
            for part in dotted.split("."):
                assert isinstance(node, dict) and part in node, (release["name"], dotted)
                node = node[part]
