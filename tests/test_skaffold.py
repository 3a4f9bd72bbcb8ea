"""skaffold.yaml: valid, and every profile refers only to things that exist.

The offline suite has no skaffold (the cluster tier builds and runs it:
tests/cluster/test_skaffold_local.py), so its profile patches are applied by this test (the
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
# The nearest schema at hand. skaffold.yaml is v4beta13, the newest that skaffold v2.16.1 (the
# newest served here) reads; v4beta14 keeps every field this file uses. skaffold's own strict
# parser checks the file itself in the cluster tier.
SCHEMA = REPO.parent / "shared" / "schemas" / "skaffold-v4beta14.json"
API_VERSION = "skaffold/v4beta13"
PROFILES = ("kind", "minikube", "gke", "local")
# The kube context each profile activates on: what the Makefile's and k8s/local's clusters are
# named (kind prefixes "kind-"), and any GKE context.
CONTEXTS = {"kind": "kind-tfx-kfp-gke", "minikube": "tfx-kfp-gke", "local": "tfx-kfp-gke-local",
            "gke": "gke_my-project_europe-west4_tfx-kfp-gke"}


def _configs() -> list[dict]:
    return list(yaml.safe_load_all((REPO / "skaffold.yaml").read_text()))


def _apply(config: dict, *profiles: str) -> dict:
    """The config with ``profiles``' patches applied in order, as skaffold does."""
    result = copy.deepcopy(config)
    patches = [patch for profile in profiles for chosen in config.get("profiles", [])
               if chosen["name"] == profile for patch in chosen.get("patches", [])]
    profile = ",".join(profiles)
    for patch in patches:
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
        assert config["apiVersion"] == API_VERSION
        config["apiVersion"] = "skaffold/v4beta14"
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


def test_the_contexts_are_the_ones_the_clusters_get():
    kind_cluster = yaml.safe_load((REPO / "k8s" / "kind" / "cluster.yaml").read_text())["name"]
    minikube = re.search(r"^readonly PROFILE=(\S+)$",
                         (REPO / "k8s" / "minikube" / "profile.sh").read_text(), re.MULTILINE)
    local = re.search(r"^NODE_NAME=(\S+)$",
                      (REPO / "k8s" / "local" / "cluster.sh").read_text(), re.MULTILINE)
    assert CONTEXTS["kind"] == f"kind-{kind_cluster}"
    assert CONTEXTS["minikube"] == minikube.group(1)
    assert CONTEXTS["local"] == local.group(1)


def _activated(config: dict, context: str) -> list[str]:
    # skaffold matches kubeContext as an unanchored regular expression (Go's MatchString, the
    # same as re.search for these patterns).
    return [profile["name"] for profile in config["profiles"]
            if any(re.search(condition["kubeContext"], context)
                   for condition in profile.get("activation", []))]


@pytest.mark.parametrize("profile", PROFILES)
def test_each_context_activates_its_own_profile_and_no_other(profile):
    for config in _configs():
        assert _activated(config, CONTEXTS[profile]) == [profile]


def test_the_offline_profile_is_only_asked_for_by_name():
    # With local: `skaffold dev -p local,offline`.
    [offline] = [p for p in _configs()[1]["profiles"] if p["name"] == "offline"]
    assert "activation" not in offline


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_refers_to_existing_paths_charts_and_targets(profile):
    cluster, app = (_apply(config, profile) for config in _configs())
    for path in cluster["manifests"]["kustomize"]["paths"]:
        assert (REPO / path / "kustomization.yaml").is_file(), path
        assert path.endswith(profile)

    [artifact] = app["build"]["artifacts"]
    if profile == "local":
        # buildah through build-images.sh, watching what the Dockerfile copies in.
        command = shlex.split(artifact["custom"]["buildCommand"])
        assert command[:2] == ["k8s/local/build-images.sh", "--push-pipeline"]
        assert (REPO / command[0]).is_file()
        for path in artifact["custom"]["dependencies"]["paths"]:
            assert (REPO / path).exists(), path
        assert artifact["image"].startswith("localhost:5000/")
    else:
        assert (REPO / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    charts = {release["name"]: release for release in app["deploy"]["helm"]["releases"]}
    assert set(charts) == {"kfp", "tf-serving", "monitoring"}
    # The local cluster is single-node like kind: kind's values where no chart has its own
    # (helm/monitoring; kfp's and tf-serving's name the images built there).
    for release in charts.values():
        assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
        own = REPO / release["chartPath"] / "ci" / f"{profile}-values.yaml"
        values_profile = "kind" if profile == "local" and not own.is_file() else profile
        for values in release["valuesFiles"]:
            assert (REPO / values).is_file(), values
            assert values.endswith(f"/ci/{values_profile}-values.yaml"), values

    [hook] = app["deploy"]["helm"]["hooks"]["after"]
    make, target, *assignments = hook["host"]["command"]
    assert make == "make" and target in _make_targets()
    for assignment in assignments:
        name, value = assignment.split("=", 1)
        assert name == "PIPELINE_ENV" and (REPO / value).is_file(), assignment
    if profile == "gke":
        assert "googleCloudBuild" in app["build"] and "local" not in app["build"]
    else:
        # Only the local cluster has a registry; kind and minikube load the image instead.
        assert app["build"]["local"] == {"push": profile == "local"}


def test_local_offline_deploys_tf_serving_on_the_stand_in_and_runs_the_pipeline_as_a_job():
    app = _apply(_configs()[1], "local", "offline")
    [release] = app["deploy"]["helm"]["releases"]
    assert release["name"] == "tf-serving"
    chart_values = yaml.safe_load((REPO / release["chartPath"] / "values.yaml").read_text())
    [values_file] = release["valuesFiles"]
    values = yaml.safe_load((REPO / values_file).read_text())
    # The stand-in is tagged as the release the chart pins (k8s/local/build-images.sh); the
    # test pod runs on it with the same tag.
    assert "tag" not in values["image"]
    assert values["helmTest"]["image"]["tag"] == chart_values["image"]["tag"]
    assert values["helmTest"]["image"]["repository"] == values["image"]["repository"]
    images_script = (REPO / "k8s" / "local" / "build-images.sh").read_text()
    assert f"TF_SERVING_STANDIN_IMAGE={values['image']['repository']}:" in images_script
    [hook] = app["deploy"]["helm"]["hooks"]["after"]
    assert hook["host"]["command"] == ["k8s/local/run-in-cluster.sh"]


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


@pytest.mark.parametrize("profiles", [(p,) for p in PROFILES] + [("local", "offline")])
def test_values_set_by_skaffold_are_keys_the_charts_define(profiles):
    app = _apply(_configs()[1], *profiles)
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
