"""What the kfp chart renders, beyond the generic harness: the wiring between KFP's components
(each finds the next by Service name and port), the pipeline-runner permissions the TFX
InfraValidator needs, the one KFP release tag, the GKE shape, and the toggles."""

from __future__ import annotations

import base64
import copy
import fnmatch
from functools import cache
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from chart_checks import lint_failures
from chart_rendering import CHARTS_DIR, render, render_templates

CHART = CHARTS_DIR / "kfp"
CI = CHART / "ci"
NAMESPACE = "kubeflow"
SUFFIX = f"{NAMESPACE}.svc.cluster.local"
KIND, MINIKUBE, GKE = CI / "kind-values.yaml", CI / "minikube-values.yaml", CI / "gke-values.yaml"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

# Keys of KFP 2.16.1's kfp-launcher `providers` (backend/src/v2/config/s3.go JSON tags); the
# launcher ignores unknown keys silently, so a typo would fall back to its built-in defaults.
PROVIDER_KEYS = {"default", "Overrides"}
PROVIDER_DEFAULT_KEYS = {"endpoint", "credentials", "region", "disableSSL", "forcePathStyle",
                         "maxRetries"}
CREDENTIAL_KEYS = {"fromEnv", "secretRef"}
SECRET_REF_KEYS = {"secretName", "accessKeyKey", "secretKeyKey"}

# GKE: the HMAC key Secret of ci/gke-values.yaml, and GCS's S3 interoperability endpoint.
GKE_OBJECT_STORE = yaml.safe_load(GKE.read_text())["objectStore"]
HMAC_SECRET = GKE_OBJECT_STORE["existingSecret"]
GCS_S3_HOST = "storage.googleapis.com"
# Keys of Argo v3.7.3's ArtifactRepository and S3ArtifactRepository (with its inline S3Bucket),
# pkg/apis/workflow/v1alpha1; the controller unmarshals the ConfigMap without rejecting unknown
# keys, so a typo would silently drop a setting.
ARGO_REPOSITORY_KEYS = {"archiveLogs", "s3", "artifactory", "hdfs", "oss", "gcs", "azure"}
ARGO_S3_KEYS = {"endpoint", "bucket", "region", "insecure", "accessKeySecret", "secretKeySecret",
                "sessionTokenSecret", "roleARN", "useSDKCreds", "createBucketIfNotPresent",
                "encryptionOptions", "caSecret", "keyFormat", "keyPrefix"}

# What pipeline/components/kubernetes_serving_runner.py does with the Kubernetes API.
INFRA_VALIDATOR_RULES = {("pods", frozenset({"create", "get", "list", "watch", "delete"})),
                         ("pods/log", frozenset({"get"}))}
SERVING_POD_LABELS = {"app.kubernetes.io/name": "tensorflow-serving",
                      "app.kubernetes.io/component": "infra-validator",
                      "app.kubernetes.io/part-of": "tfx-kfp-gke"}


@cache
def _render(files: tuple[Path, ...] = (KIND,), extra: str = "{}") -> tuple[dict, ...]:
    return tuple(render(CHART, list(files), yaml.safe_load(extra), NAMESPACE, include_tests=True))


def objects(*files: Path, **values) -> list[dict]:
    """Rendered objects (deep copies) of the scenario files plus values, as `-f ... --set-json`."""
    return copy.deepcopy(list(_render(tuple(files) or (KIND,), yaml.safe_dump(values))))


def find(objs, kind, name=None, component=None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (component is None
                 or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)]


def one(objs, kind, name=None, component=None) -> dict:
    found = find(objs, kind, name, component)
    assert len(found) == 1, f"expected one {kind} {name or component}, got {len(found)}"
    return found[0]


def container(objs, component) -> dict:
    return one(objs, "Deployment", component=component)["spec"]["template"]["spec"]["containers"][0]


def env(objs, component) -> dict:
    """name -> value, or name -> ('secret'|'field', ref) for valueFrom entries."""
    result = {}
    for item in container(objs, component).get("env", []):
        source = item.get("valueFrom") or {}
        if "secretKeyRef" in source:
            result[item["name"]] = ("secret", source["secretKeyRef"]["name"],
                                    source["secretKeyRef"]["key"])
        elif "fieldRef" in source:
            result[item["name"]] = ("field", source["fieldRef"]["fieldPath"])
        else:
            result[item["name"]] = item.get("value")
    return result


def service_port(objs, service, port_name) -> int:
    ports = {p["name"]: p for p in one(objs, "Service", service)["spec"]["ports"]}
    return ports[port_name]["port"]


def served_by(objs, service) -> str:
    """The component whose pods a Service selects, checking the selector matches them."""
    selector = one(objs, "Service", service)["spec"]["selector"]
    matching = [d for d in find(objs, "Deployment")
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert len(matching) == 1, f"Service {service} selects {len(matching)} Deployments"
    return matching[0]["metadata"]["labels"]["app.kubernetes.io/component"]


def target_container_port(objs, service, port_name) -> int:
    """The container port a Service port reaches (targetPort by name, resolved on its pods)."""
    port = next(p for p in one(objs, "Service", service)["spec"]["ports"]
                if p["name"] == port_name)
    ports = {p["name"]: p["containerPort"]
             for p in container(objs, served_by(objs, service)).get("ports", [])}
    return ports[port["targetPort"]]


def launcher_config(objs) -> dict:
    data = one(objs, "ConfigMap", "kfp-launcher")["data"]
    return {"defaultPipelineRoot": data["defaultPipelineRoot"],
            "providers": yaml.safe_load(data["providers"]) if "providers" in data else None}


def argo_repository(objs) -> dict:
    """The default repository of the namespace's artifact-repositories ConfigMap, found as Argo
    finds it: by the ConfigMap's name and the key its annotation names."""
    configmap = one(objs, "ConfigMap", "artifact-repositories")
    key = configmap["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    return yaml.safe_load(configmap["data"][key])


def readable_secrets(objs, service_account) -> set[str]:
    """Secrets a ServiceAccount may get by name."""
    return {name for r in role_rules(objs, service_account)
            if "secrets" in r["resources"] and "get" in r["verbs"]
            for name in r.get("resourceNames", [])}


def role_rules(objs, service_account) -> list[dict]:
    """Rules of every Role bound to a ServiceAccount of the release namespace."""
    roles = set()
    for binding in find(objs, "RoleBinding"):
        for subject in binding["subjects"]:
            if (subject["kind"], subject["name"], subject.get("namespace")) == (
                    "ServiceAccount", service_account, NAMESPACE):
                roles.add(binding["roleRef"]["name"])
    return [rule for role in find(objs, "Role") if role["metadata"]["name"] in roles
            for rule in role["rules"]]


def allows(rules, resource, verb, group="") -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and not r.get("resourceNames") for r in rules)


# --- pipeline-runner ----------------------------------------------------------------------------

def test_pipeline_runner_may_run_the_infra_validator_serving_pod():
    objs = objects()
    rules = role_rules(objs, "pipeline-runner")
    for resource, verbs in INFRA_VALIDATOR_RULES:
        missing = [verb for verb in sorted(verbs) if not allows(rules, resource, verb)]
        assert not missing, f"pipeline-runner cannot {missing} {resource}"
    # KFP v2's own needs: its launcher config, the object-store keys, Argo's task results.
    names = {tuple(r.get("resourceNames", [])) for r in rules if "configmaps" in r["resources"]}
    assert ("kfp-launcher",) in names
    secret_rule = next(r for r in rules if "secrets" in r["resources"])
    assert secret_rule["resourceNames"] == ["mlpipeline-minio-artifact"]
    assert secret_rule["verbs"] == ["get"]
    assert allows(rules, "workflowtaskresults", "create", "argoproj.io")
    assert allows(rules, "workflowtaskresults", "patch", "argoproj.io")
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)


def test_api_server_puts_runs_under_the_pipeline_runner_account():
    objs = objects()
    account = one(objs, "ServiceAccount", "pipeline-runner")
    assert account["metadata"]["namespace"] == NAMESPACE
    assert env(objs, "api-server")["DEFAULTPIPELINERUNNERSERVICEACCOUNT"] == "pipeline-runner"


def test_step_containers_run_as_the_pipeline_image_user():
    """KFP forces these on every step's main container; the pipeline image runs as 1000:1000."""
    api = env(objects(), "api-server")
    forced = {key.removeprefix("DEFAULT_SECURITY_CONTEXT_"): value for key, value in api.items()
              if key.startswith("DEFAULT_SECURITY_CONTEXT_")}
    assert forced == {"RUN_AS_USER": "1000", "RUN_AS_GROUP": "1000", "RUN_AS_NON_ROOT": "true"}
    unset = env(objects(KIND, apiServer={"stepSecurityContext": {"runAsUser": None}}), "api-server")
    assert "DEFAULT_SECURITY_CONTEXT_RUN_AS_USER" not in unset
    assert unset["DEFAULT_SECURITY_CONTEXT_RUN_AS_NON_ROOT"] == "true"


def test_serving_pods_accept_grpc_only_from_pipeline_steps():
    policy = one(objects(), "NetworkPolicy", component="pipeline-runner")
    assert policy["spec"]["podSelector"] == {"matchLabels": SERVING_POD_LABELS}
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8500}]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "workflows.argoproj.io/workflow", "operator": "Exists"}]


def test_infra_validator_grant_and_policy_can_be_turned_off():
    objs = objects(KIND, pipelineRunner={"infraValidator": {"enabled": False}})
    rules = role_rules(objs, "pipeline-runner")
    assert allows(rules, "pods", "get")  # the launcher still reads its own pod
    assert not allows(rules, "pods", "create")
    assert not allows(rules, "pods/log", "get")
    assert not find(objs, "NetworkPolicy", component="pipeline-runner")


# --- wiring -------------------------------------------------------------------------------------

def test_api_server_reaches_mysql():
    objs = objects()
    api = env(objs, "api-server")
    assert api["DBCONFIG_MYSQLCONFIG_HOST"] == f"mysql.{SUFFIX}"
    assert served_by(objs, "mysql") == "mysql"
    assert int(api["DBCONFIG_MYSQLCONFIG_PORT"]) == service_port(objs, "mysql", "mysql")
    assert target_container_port(objs, "mysql", "mysql") == 3306
    secret = one(objs, "Secret", component="mysql")
    assert api["DB_USER"] == ("secret", secret["metadata"]["name"], "username")
    assert api["DB_PASSWORD"] == ("secret", secret["metadata"]["name"], "password")
    assert api["DBCONFIG_MYSQLCONFIG_PASSWORD"] == "$(DB_PASSWORD)"
    assert api["DBCONFIG_MYSQLCONFIG_DBNAME"] == "mlpipeline"
    # MySQL initialises root with the same Secret's password.
    mysql = one(objs, "Deployment", component="mysql")["spec"]["template"]["spec"]
    volume = next(v for v in mysql["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_api_server_and_launcher_reach_seaweedfs_with_the_same_keys():
    objs = objects()
    api = env(objs, "api-server")
    assert served_by(objs, "seaweedfs") == "seaweedfs"
    assert api["OBJECTSTORECONFIG_HOST"] == f"seaweedfs.{SUFFIX}"
    assert int(api["OBJECTSTORECONFIG_PORT"]) == service_port(objs, "seaweedfs", "s3")
    assert target_container_port(objs, "seaweedfs", "s3") == 8333
    assert api["OBJECTSTORECONFIG_SECURE"] == "false"
    assert api["OBJECTSTORECONFIG_BUCKETNAME"] == "mlpipeline"
    secret = one(objs, "Secret", "mlpipeline-minio-artifact")
    assert set(secret["data"]) == {"accesskey", "secretkey"}
    assert api["OBJECTSTORECONFIG_ACCESSKEY"] == (
        "secret", "mlpipeline-minio-artifact", "accesskey")

    launcher = launcher_config(objs)
    assert launcher["defaultPipelineRoot"] == "s3://mlpipeline/v2/artifacts"
    assert set(launcher["providers"]) == {"minio", "s3"}
    for scheme, provider in launcher["providers"].items():
        assert set(provider) <= PROVIDER_KEYS, scheme
        default = provider["default"]
        assert set(default) <= PROVIDER_DEFAULT_KEYS, scheme
        assert set(default["credentials"]) <= CREDENTIAL_KEYS, scheme
        assert set(default["credentials"]["secretRef"]) <= SECRET_REF_KEYS, scheme
        assert default["endpoint"] == f"seaweedfs.{SUFFIX}:{service_port(objs, 'seaweedfs', 's3')}"
        assert default["disableSSL"] is True and default["forcePathStyle"] is True
        assert default["credentials"] == {"fromEnv": False, "secretRef": {
            "secretName": "mlpipeline-minio-artifact", "accessKeyKey": "accesskey",
            "secretKeyKey": "secretkey"}}


def test_seaweedfs_serves_the_keys_and_bucket_the_clients_use():
    objs = objects()
    pod = one(objs, "Deployment", component="seaweedfs")["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert secret_volume["secret"]["secretName"] == "mlpipeline-minio-artifact"
    (init,) = pod["initContainers"]
    assert "/etc/seaweedfs/s3.json" in init["command"][-1]
    main = pod["containers"][0]
    assert "-s3.config=/etc/seaweedfs/s3.json" in main["args"]
    hook = main["lifecycle"]["postStart"]["exec"]["command"][-1]
    assert "s3.bucket.create -name mlpipeline" in hook


def test_api_server_compiles_runs_against_the_metadata_and_api_services():
    """The API server builds the driver's MLMD and API addresses from its namespace and
    CLUSTER_DOMAIN with KFP's fixed names and ports (metadata-grpc-service:8080,
    ml-pipeline:8887)."""
    objs = objects()
    api = env(objs, "api-server")
    assert api["POD_NAMESPACE"] == ("field", "metadata.namespace")
    assert api["CLUSTER_DOMAIN"] == "cluster.local"
    assert served_by(objs, "metadata-grpc-service") == "metadata-grpc"
    assert service_port(objs, "metadata-grpc-service", "grpc") == 8080
    assert target_container_port(objs, "metadata-grpc-service", "grpc") == 8080
    assert served_by(objs, "ml-pipeline") == "api-server"
    assert service_port(objs, "ml-pipeline", "grpc") == 8887
    assert service_port(objs, "ml-pipeline", "http") == 8888
    assert target_container_port(objs, "ml-pipeline", "http") == 8888


def test_metadata_server_reaches_mysql():
    objs = objects()
    grpc = container(objs, "metadata-grpc")
    flags = dict(a.removeprefix("--").split("=", 1) for a in grpc["args"])
    assert flags["mysql_config_host"] == f"mysql.{SUFFIX}"
    assert int(flags["mysql_config_port"]) == service_port(objs, "mysql", "mysql")
    assert flags["mysql_config_database"] == "metadb"
    assert flags["grpc_port"] == "8080"
    assert env(objs, "metadata-grpc")["DB_PASSWORD"][0] == "secret"


def test_ui_reaches_api_server_and_envoy():
    objs = objects()
    ui = env(objs, "ui")
    assert ui["ML_PIPELINE_SERVICE_HOST"] == f"ml-pipeline.{SUFFIX}"
    assert int(ui["ML_PIPELINE_SERVICE_PORT"]) == service_port(objs, "ml-pipeline", "http")
    assert ui["METADATA_ENVOY_SERVICE_SERVICE_HOST"] == f"metadata-envoy-service.{SUFFIX}"
    assert int(ui["METADATA_ENVOY_SERVICE_SERVICE_PORT"]) == service_port(
        objs, "metadata-envoy-service", "grpc-web")
    assert served_by(objs, "metadata-envoy-service") == "metadata-envoy"
    assert served_by(objs, "ml-pipeline-ui") == "ui"
    assert target_container_port(objs, "ml-pipeline-ui", "http") == 3000


def test_envoy_forwards_to_the_metadata_grpc_service():
    objs = objects()
    configmap = one(objs, "ConfigMap", component="metadata-envoy")
    config = yaml.safe_load(configmap["data"]["envoy.yaml"])
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == target_container_port(
        objs, "metadata-envoy-service", "grpc-web")
    (cluster,) = config["static_resources"]["clusters"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"]
    assert address == {"address": f"metadata-grpc-service.{SUFFIX}",
                       "port_value": service_port(objs, "metadata-grpc-service", "grpc")}
    # gRPC upstream: HTTP/2 is required.
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    # Admin interface only on localhost.
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # The pod mounts this ConfigMap where its arguments point.
    envoy = container(objs, "metadata-envoy")
    assert envoy["args"][0] == "/etc/envoy/envoy.yaml"
    assert {"name": "config", "mountPath": "/etc/envoy", "readOnly": True} in envoy["volumeMounts"]


def test_metadata_writer_finds_mlmd_by_its_fixed_name():
    objs = objects()
    writer = env(objs, "metadata-writer")
    # metadata_helpers.py dials "metadata-grpc-service." + POD_NAMESPACE + CLUSTER_DOMAIN:8080.
    assert writer["POD_NAMESPACE"] == ("field", "metadata.namespace")
    assert writer["CLUSTER_DOMAIN"] == ".svc.cluster.local"
    assert service_port(objs, "metadata-grpc-service", "grpc") == 8080


def test_api_server_pods_match_what_the_monitoring_chart_scrapes():
    monitoring = CHARTS_DIR / "monitoring" / "values.yaml"
    if not monitoring.is_file():
        pytest.skip("helm/monitoring is not in this checkout: no scrape contract to check")
    scrape = yaml.safe_load(monitoring.read_text())["kfp"]
    deployment = one(objects(), "Deployment", component="api-server")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert scrape["podSelectorLabels"].items() <= labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert scrape["port"] in ports


# --- images -------------------------------------------------------------------------------------

def _images(objs) -> list[str]:
    images = []
    for obj in objs:
        if obj["kind"] not in ("Deployment", "Pod"):
            continue
        spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            images.append(c["image"])
            images += [e["value"] for e in c.get("env", []) if str(e.get("value", "")).startswith(
                "ghcr.io/kubeflow/")]
    return images


@pytest.mark.parametrize("scenario", [KIND, GKE], ids=["kind", "gke"])
def test_kfp_images_share_the_release_tag(scenario):
    objs = objects(scenario, cacheServer={"enabled": True})
    kfp = [i for i in _images(objs) if i.startswith("ghcr.io/kubeflow/kfp-")]
    names = {i.rsplit(":", 1)[0].removeprefix("ghcr.io/kubeflow/") for i in kfp}
    expected = {"kfp-api-server", "kfp-frontend", "kfp-persistence-agent",
                "kfp-scheduled-workflow-controller", "kfp-metadata-envoy", "kfp-metadata-writer",
                "kfp-cache-server", "kfp-driver", "kfp-launcher"}
    assert names == expected
    assert {i.rsplit(":", 1)[1] for i in kfp} == {APP_VERSION}
    assert APP_VERSION == "2.16.1"
    # MLMD is released on its own; KFP 2.16.1 pins 1.14.0.
    assert "gcr.io/tfx-oss-public/ml_metadata_store_server:1.14.0" in _images(objs)


def test_argo_dependency_is_pinned_to_the_version_kfp_is_tested_with():
    chart = helm_python.Chart.load(str(CHART))
    try:
        (dep,) = chart.metadata["dependencies"]
        defaults = chart.values
    finally:
        chart.close()
    assert (dep["name"], dep["version"], dep["repository"], dep["condition"]) == (
        "argo-workflows", "0.45.27", "https://argoproj.github.io/argo-helm",
        "argo-workflows.enabled")
    argo = defaults["argo-workflows"]
    assert argo["enabled"] is True
    assert argo["singleNamespace"] is True
    assert argo["server"]["enabled"] is False
    assert argo["workflow"]["serviceAccount"]["create"] is False
    executor = argo["executor"]["securityContext"]
    assert executor["runAsNonRoot"] and executor["allowPrivilegeEscalation"] is False
    assert executor["capabilities"]["drop"] == ["ALL"]
    s3 = argo["artifactRepository"]["s3"]
    assert s3["accessKeySecret"]["name"] == s3["secretKeySecret"]["name"] == (
        "mlpipeline-minio-artifact")
    assert s3["endpoint"] == "seaweedfs.{{ .Release.Namespace }}:9000"
    assert s3["bucket"] == defaults["objectStore"]["bucket"]
    # The UI looks archived logs up with the same key format.
    ui = env(objects(), "ui")
    assert ui["ARGO_KEYFORMAT"] == s3["keyFormat"]
    assert ui["ARGO_ARCHIVE_BUCKETNAME"] == s3["bucket"]


# --- GKE ----------------------------------------------------------------------------------------

def test_gke_has_no_in_cluster_database_or_object_store():
    objs = objects(GKE)
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs}
    assert "mysql" not in components and "seaweedfs" not in components
    assert not find(objs, "PersistentVolumeClaim")
    assert not find(objs, "Secret")  # database and HMAC keys come from existing Secrets
    assert not any("seaweedfs" in str(o) for o in objs)


def test_gke_uses_workload_identity_and_gcs():
    objs = objects(GKE)
    gsa = yaml.safe_load(GKE.read_text())["workloadIdentity"]["gcpServiceAccount"]
    for account in ("pipeline-runner", "test-kfp-api-server", "test-kfp-ui",
                    "test-kfp-cloudsql-proxy"):
        annotations = one(objs, "ServiceAccount", account)["metadata"].get("annotations", {})
        assert annotations.get("iam.gke.io/gcp-service-account") == gsa, account
    # The launcher gets no providers: steps reach gs:// with Workload Identity, not a key.
    launcher = launcher_config(objs)
    assert launcher == {"defaultPipelineRoot": "gs://my-project-tfxkfp/pipeline-root",
                        "providers": None}


def test_gcs_without_an_hmac_key_secret_is_refused_by_the_schema():
    with pytest.raises(helm_python.HelmValuesError, match="/objectStore/existingSecret"):
        objects(GKE, objectStore={"existingSecret": ""})
    failures, _ = lint_failures(CHART, [GKE], {"objectStore": {"existingSecret": ""}},
                                namespace=NAMESPACE)
    assert any("/objectStore/existingSecret" in failure for failure in failures), failures


def test_gcs_api_server_uses_the_s3_interoperability_endpoint_with_the_hmac_key():
    """KFP 2.16's API server has only an S3 client (no Google credentials path)."""
    api = env(objects(GKE), "api-server")
    assert api["OBJECTSTORECONFIG_HOST"] == GCS_S3_HOST
    assert api["OBJECTSTORECONFIG_PORT"] == "443"
    assert api["OBJECTSTORECONFIG_SECURE"] == "true"
    assert api["OBJECTSTORECONFIG_REGION"] == GKE_OBJECT_STORE["region"] == "auto"
    assert api["OBJECTSTORECONFIG_BUCKETNAME"] == GKE_OBJECT_STORE["bucket"]
    assert api["OBJECTSTORECONFIG_ACCESSKEY"] == ("secret", HMAC_SECRET, "accesskey")
    assert api["OBJECTSTORECONFIG_SECRETACCESSKEY"] == ("secret", HMAC_SECRET, "secretkey")


def test_gcs_ui_reads_archived_logs_through_the_s3_interoperability_endpoint():
    """The UI reads Argo's archived logs only with an S3 client (frontend/server/configs.ts:
    ARGO_ARCHIVE_ARTIFACTORY other than `minio` selects the AWS_* settings)."""
    objs = objects(GKE)
    ui = env(objs, "ui")
    assert ui["ARGO_ARCHIVE_LOGS"] == "true"
    assert ui["ARGO_ARCHIVE_ARTIFACTORY"] == "s3"
    assert ui["ARGO_ARCHIVE_BUCKETNAME"] == GKE_OBJECT_STORE["bucket"]
    assert ui["AWS_S3_ENDPOINT"] == GCS_S3_HOST
    assert ui["AWS_SSL"] == "true"
    assert ui["AWS_REGION"] == "auto"
    assert ui["AWS_ACCESS_KEY_ID"] == ("secret", HMAC_SECRET, "accesskey")
    assert ui["AWS_SECRET_ACCESS_KEY"] == ("secret", HMAC_SECRET, "secretkey")
    assert not [name for name in ui if name.startswith("MINIO_")]
    # Before the archive the UI tries the workflow's status, which names the same Secret.
    assert readable_secrets(objs, "test-kfp-ui") == {HMAC_SECRET}


def test_gcs_argo_archives_step_logs_where_the_ui_reads_them():
    objs = objects(GKE)
    repository = argo_repository(objs)
    assert set(repository) <= ARGO_REPOSITORY_KEYS
    assert repository["archiveLogs"] is True
    s3 = repository["s3"]
    assert set(s3) <= ARGO_S3_KEYS
    assert s3["endpoint"] == GCS_S3_HOST and s3["insecure"] is False
    assert s3["region"] == "auto"
    assert s3["accessKeySecret"] == {"name": HMAC_SECRET, "key": "accesskey"}
    assert s3["secretKeySecret"] == {"name": HMAC_SECRET, "key": "secretkey"}
    ui = env(objs, "ui")
    assert (s3["bucket"], s3["keyFormat"]) == (ui["ARGO_ARCHIVE_BUCKETNAME"],
                                               ui["ARGO_KEYFORMAT"])
    # Argo's executor uploads the log from the step pod, which runs as pipeline-runner.
    assert readable_secrets(objs, "pipeline-runner") == {HMAC_SECRET}


def test_gcs_key_comes_from_the_secret_the_values_name():
    objs = objects(GKE, objectStore={"existingSecret": "other-hmac"})
    names = {ref[1] for component in ("api-server", "ui") for ref in env(objs, component).values()
             if isinstance(ref, tuple) and ref[0] == "secret" and ref[2] in ("accesskey",
                                                                              "secretkey")}
    s3 = argo_repository(objs)["s3"]
    names |= {s3["accessKeySecret"]["name"], s3["secretKeySecret"]["name"]}
    names |= readable_secrets(objs, "pipeline-runner") | readable_secrets(objs, "test-kfp-ui")
    assert names == {"other-hmac"}


@pytest.mark.parametrize("scenario", [KIND, MINIKUBE], ids=["kind", "minikube"])
def test_seaweedfs_keeps_argo_s_own_repository_and_the_minio_settings(scenario):
    """SeaweedFS logs go to Argo's controller-wide repository, read with the MINIO_* keys."""
    objs = objects(scenario)
    assert not find(objs, "ConfigMap", "artifact-repositories")
    ui = env(objs, "ui")
    assert "ARGO_ARCHIVE_ARTIFACTORY" not in ui  # the UI's default, minio
    assert not [name for name in ui if name.startswith("AWS_")]
    assert ui["MINIO_ACCESS_KEY"] == ("secret", "mlpipeline-minio-artifact", "accesskey")


def test_gke_database_goes_through_the_cloud_sql_proxy():
    objs = objects(GKE)
    values = yaml.safe_load(GKE.read_text())["database"]
    api = env(objs, "api-server")
    assert api["DBCONFIG_MYSQLCONFIG_HOST"] == f"mysql.{SUFFIX}"
    assert served_by(objs, "mysql") == "cloudsql-proxy"
    assert api["DB_PASSWORD"] == ("secret", values["existingSecret"], "password")
    proxy = container(objs, "cloudsql-proxy")
    assert proxy["args"][-1] == values["cloudSqlProxy"]["instanceConnectionName"]
    assert "--private-ip" in proxy["args"]
    assert target_container_port(objs, "mysql", "mysql") == 3306


def test_external_database_without_proxy_is_reached_directly():
    objs = objects(GKE, database={"host": "10.20.0.3", "cloudSqlProxy": {"enabled": False}})
    assert env(objs, "api-server")["DBCONFIG_MYSQLCONFIG_HOST"] == "10.20.0.3"
    flags = container(objs, "metadata-grpc")["args"]
    assert "--mysql_config_host=10.20.0.3" in flags
    assert not find(objs, "Service", "mysql")
    assert not find(objs, "Deployment", component="cloudsql-proxy")


def test_external_database_requires_its_secret():
    with pytest.raises(helm_python.HelmError, match="existingSecret"):
        objects(GKE, database={"existingSecret": ""})


# --- toggles and secrets ------------------------------------------------------------------------

def test_cache_server_is_off_by_default_and_gets_a_matching_certificate_when_on():
    assert not find(objects(), "MutatingWebhookConfiguration")
    objs = objects(KIND, cacheServer={"enabled": True})
    webhook = one(objs, "MutatingWebhookConfiguration")
    (hook,) = webhook["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": "cache-server", "namespace": NAMESPACE, "path": "/mutate"}
    assert hook["failurePolicy"] == "Ignore"
    assert hook["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    secret = one(objs, "Secret", component="cache-server")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"cache-server.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    pod = one(objs, "Deployment", component="cache-server")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["secret"]["secretName"] == secret["metadata"]["name"]
    assert served_by(objs, "cache-server") == "cache-server"
    assert target_container_port(objs, "cache-server", "https") == 8443


def test_metadata_writer_can_be_turned_off():
    objs = objects(KIND, metadataWriter={"enabled": False})
    assert not [o for o in objs
                if o["metadata"]["labels"]["app.kubernetes.io/component"] == "metadata-writer"]


def test_pipeline_root_override_reaches_the_launcher():
    objs = objects(KIND, objectStore={"pipelineRoot": "minio://mlpipeline/v2/artifacts"})
    assert launcher_config(objs)["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"


def test_generated_credentials_are_random_and_no_demo_keys_are_rendered():
    first, second = objects(), render(CHART, [KIND], namespace=NAMESPACE)  # a second render
    for name in ("test-kfp-mysql", "mlpipeline-minio-artifact"):
        a, b = one(first, "Secret", name)["data"], one(second, "Secret", name)["data"]
        assert all(base64.b64decode(v) for v in a.values()), name
        assert a["password" if "password" in a else "secretkey"] != b[
            "password" if "password" in b else "secretkey"], name
    text = yaml.safe_dump_all(first)
    for demo in ("minio123", base64.b64encode(b"minio123").decode()):
        assert demo not in text


def test_data_volumes_and_database_secret_outlive_the_release():
    objs = objects()
    kept = [o for o in objs if (o["metadata"].get("annotations") or {}).get(
        "helm.sh/resource-policy") == "keep"]
    assert sorted((o["kind"], o["metadata"]["labels"]["app.kubernetes.io/component"])
                  for o in kept) == [("PersistentVolumeClaim", "mysql"),
                                     ("PersistentVolumeClaim", "seaweedfs"),
                                     ("Secret", "mysql")]


def test_minikube_volumes_use_the_standard_storage_class():
    objs = objects(MINIKUBE)
    assert {p["spec"]["storageClassName"] for p in find(objs, "PersistentVolumeClaim")} == {
        "standard"}


def test_stores_accept_only_their_clients():
    objs = objects()
    mysql = one(objs, "NetworkPolicy", component="mysql")
    (rule,) = mysql["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchExpressions"][0]["values"] == [
        "api-server", "metadata-grpc", "cache-server"]
    seaweedfs = one(objs, "NetworkPolicy", component="seaweedfs")
    peers = seaweedfs["spec"]["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchExpressions"][0]["values"] == ["api-server", "ui"]
    assert peers[1]["podSelector"]["matchExpressions"][0]["key"] == (
        "workflows.argoproj.io/workflow")


# --- helm test and CRD --------------------------------------------------------------------------

def test_helm_test_asks_the_api_server_for_its_v2_health():
    pod = one(objects(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    url = pod["spec"]["containers"][0]["command"][-1]
    assert url == f"http://ml-pipeline.{SUFFIX}:8888/apis/v2beta1/healthz"
    assert "--fail" in pod["spec"]["containers"][0]["command"]


def test_scheduled_workflow_crd_matches_what_the_controllers_use():
    chart = helm_python.Chart.load(str(CHART))
    try:
        (crd_file,) = chart.crds  # Helm installs these before the templates
    finally:
        chart.close()
    crd = yaml.safe_load(crd_file["data"])
    kubernetes_validate.validate(crd, "1.34", strict=True)
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["plural"], names["kind"]) == (
        "kubeflow.org", "scheduledworkflows", "ScheduledWorkflow")
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1beta1" and version["storage"]
    # Controllers update status through the main resource: a status subresource would drop it.
    assert "subresources" not in version
    rules = role_rules(objects(), "test-kfp-scheduled-workflow")
    assert allows(rules, "scheduledworkflows", "update", "kubeflow.org")


def test_notes_name_the_ui_port_forward_and_the_pipeline_root():
    notes = render_templates(CHART, [KIND], namespace=NAMESPACE)["kfp/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/ml-pipeline-ui 8080:80" in notes
    assert "TFXKFP_PIPELINE_ROOT=s3://mlpipeline/v2/artifacts" in notes
    gke = render_templates(CHART, [GKE], namespace=NAMESPACE)["kfp/templates/NOTES.txt"]
    assert "TFXKFP_PIPELINE_ROOT=gs://my-project-tfxkfp/pipeline-root" in gke
    assert f"Secret {HMAC_SECRET} (accesskey, secretkey)" in gke


def test_every_fixed_name_is_a_valid_dns_label():
    fixed = {"ml-pipeline", "ml-pipeline-ui", "metadata-grpc-service", "metadata-envoy-service",
             "mysql", "seaweedfs", "kfp-launcher", "mlpipeline-minio-artifact", "pipeline-runner"}
    rendered = {o["metadata"]["name"] for o in objects()}
    assert fixed <= rendered
    assert all(fnmatch.fnmatchcase(n, "[a-z]*") and len(n) <= 63 for n in fixed)


def test_api_server_gets_the_visualization_address_it_exits_without():
    # KFP 2.16.1's API server calls GetStringConfig on both and exits when either is unset,
    # which it was here until a real API server ran (the chart runs no visualization server and
    # turns Service links off).
    values = env(objects(), "api-server")
    assert values["ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_HOST"] == \
        f"ml-pipeline-visualizationserver.{SUFFIX}"
    assert values["ML_PIPELINE_VISUALIZATIONSERVER_SERVICE_PORT"] == "8888"
    pod = one(objects(), "Deployment", component="api-server")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False


def test_ui_and_envoy_can_be_turned_off_and_the_notes_then_name_the_api():
    objs = objects(KIND, ui={"enabled": False}, metadataEnvoy={"enabled": False})
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs}
    assert not components & {"ui", "metadata-envoy"}
    assert find(objs, "Deployment", component="api-server")
    notes = render_templates(CHART, [KIND], {"ui": {"enabled": False}}, NAMESPACE)[
        "kfp/templates/NOTES.txt"]
    assert "port-forward svc/ml-pipeline 8080:8888" in notes
    assert "ml-pipeline-ui" not in notes


def test_mysql_takes_its_server_options_from_the_values():
    default = container(objects(), "mysql")["args"]
    assert "--mysql-native-password=ON" in default and "--datadir=/var/lib/mysql/data" in default
    local = container(objects(CI / "local-values.yaml"), "mysql")
    assert local["args"] == yaml.safe_load((CI / "local-values.yaml").read_text())["mysql"]["args"]
    assert local["image"].startswith("localhost/tfx-kfp-gke/mariadb:")
