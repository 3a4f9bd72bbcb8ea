"""What the tf-serving chart renders, beyond the generic harness: the contracts other parts
of the system rely on (ports, labels, model paths, probes, config files TF Serving parses)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading

import helm_python
import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from chart_rendering import CHARTS_DIR, render, render_templates

CHART = CHARTS_DIR / "tf-serving"
CI = CHART / "ci"
CHECK_SCRIPT = CHART / "files" / "check_model_available.py"

# tensorflow_model_server flags of TF Serving 2.16.1 (tensorflow_serving/model_servers/main.cc)
# that the chart may pass; a misspelt flag makes the server print its usage and exit.
SERVER_FLAGS = {
    "port", "rest_api_port", "model_config_file", "monitoring_config_file",
    "enable_grpc_healthcheck_service", "file_system_poll_wait_seconds", "enable_model_warmup",
    "allow_version_labels_for_unavailable_models", "enable_batching", "batching_parameters_file",
    "rest_api_num_threads", "rest_api_timeout_in_ms", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "grpc_max_threads", "num_load_threads",
}


def _one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(objects):
    return _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _flags(objects) -> dict[str, str]:
    args = _container(objects)["args"]
    return dict(arg.removeprefix("--").split("=", 1) for arg in args)


def _config(objects, key):
    return _one(objects, "ConfigMap")["data"][key]


def _proto_class(name: str, fields: list[tuple[str, int, int, str]], deps=()):
    """A message class from (name, number, type, type_name) fields, for configs whose protos
    tensorflow-serving-api does not ship (field numbers from TF Serving 2.16.1's .proto files)."""
    pool = descriptor_pool.DescriptorPool()
    for dep in deps:
        pool.AddSerializedFile(dep.SerializeToString())
    file = descriptor_pb2.FileDescriptorProto(name=f"{name}.proto", package="t",
                                              dependency=[d.name for d in deps])
    message = file.message_type.add(name=name)
    for field_name, number, field_type, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=field_type,
                                  label=3 if field_name == "allowed_batch_sizes" else 1)
        if type_name:
            field.type_name = type_name
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t.{name}"))


def test_service_contract_with_the_monitoring_chart():
    objects = render(CHART)
    service = _one(objects, "Service")
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "tf-serving"
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("grpc", 8500, "grpc"), ("http", 8501, "http")}
    pods = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pods["app.kubernetes.io/name"] == "tf-serving"
    assert {(p["name"], p["containerPort"]) for p in _container(objects)["ports"]} == {
        ("grpc", 8500), ("http", 8501)}


def test_server_runs_the_binary_with_known_flags():
    container = _container(render(CHART, [CI / "canary-values.yaml"]))
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert container["image"] == "tensorflow/serving:2.16.1"
    unknown = {arg.removeprefix("--").split("=")[0] for arg in container["args"]} - SERVER_FLAGS
    assert not unknown


@pytest.mark.parametrize("scenario", ["kind", "minikube", "default"])
def test_shared_volume_source(scenario):
    objects = render(CHART, [CI / f"{scenario}-values.yaml"])
    config = text_format.Parse(_config(objects, "model_config.pbtxt"),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path) == ("social_network_ads", "/models/social_network_ads")
    assert model.model_version_policy.latest.num_versions == 2
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "tfx-models",
                                                          "readOnly": True}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] and mounts["tmp"]["mountPath"] == "/tmp"
    assert "iam.gke.io/gcp-service-account" not in (
        _one(objects, "ServiceAccount")["metadata"].get("annotations") or {})


def test_gcs_source_with_workload_identity():
    objects = render(CHART, [CI / "gke-values.yaml"])
    config = text_format.Parse(_config(objects, "model_config.pbtxt"),
                               model_server_config_pb2.ModelServerConfig())
    assert config.model_config_list.config[0].base_path == (
        "gs://tfx-kfp-gke-artifacts/serving/social_network_ads")
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "models" not in {v["name"] for v in pod["volumes"]}
    account = _one(objects, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "tf-serving@tfx-kfp-gke.iam.gserviceaccount.com")
    assert pod["automountServiceAccountToken"] is False


def test_gcs_source_requires_a_base_path():
    with pytest.raises(helm_python.HelmError, match="basePath"):
        render(CHART, values={"model": {"source": "gcs"}})


def test_canary_labels_batching_and_monitoring_configs_parse():
    objects = render(CHART, [CI / "canary-values.yaml"])
    config = text_format.Parse(_config(objects, "model_config.pbtxt"),
                               model_server_config_pb2.ModelServerConfig())
    model = config.model_config_list.config[0]
    # Unix-timestamp versions stay integers (YAML numbers reach templates as floats).
    assert list(model.model_version_policy.specific.versions) == [1767225600, 1767312000]
    assert dict(model.version_labels) == {"stable": 1767225600, "canary": 1767312000}
    flags = _flags(objects)
    assert flags["allow_version_labels_for_unavailable_models"] == "true"
    assert flags["enable_batching"] == "true"
    assert flags["batching_parameters_file"] == "/etc/tf-serving/batching_parameters.pbtxt"

    int64_value = descriptor_pb2.FileDescriptorProto(name="w.proto", package="w")
    int64_value.message_type.add(name="Int64Value").field.add(name="value", number=1, type=3,
                                                              label=1)
    batching = _proto_class("BatchingParameters", [
        ("max_batch_size", 1, 11, ".w.Int64Value"),
        ("batch_timeout_micros", 2, 11, ".w.Int64Value"),
        ("max_enqueued_batches", 3, 11, ".w.Int64Value"),
        ("num_batch_threads", 4, 11, ".w.Int64Value"), ("allowed_batch_sizes", 6, 3, "")],
        deps=[int64_value])
    parsed = text_format.Parse(_config(objects, "batching_parameters.pbtxt"), batching())
    assert parsed.max_batch_size.value == 32 and list(parsed.allowed_batch_sizes) == [8, 16, 32]

    prometheus = _proto_class("PrometheusConfig", [("enable", 1, 8, ""), ("path", 2, 9, "")])
    monitoring_file = descriptor_pb2.FileDescriptorProto()
    prometheus.DESCRIPTOR.file.CopyToProto(monitoring_file)
    monitoring = _proto_class("MonitoringConfig",
                              [("prometheus_config", 1, 11, ".t.PrometheusConfig")],
                              deps=[monitoring_file])
    parsed = text_format.Parse(_config(objects, "monitoring_config.pbtxt"), monitoring())
    assert parsed.prometheus_config.enable
    assert parsed.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_defaults_have_no_labels_batching_or_label_flag():
    objects = render(CHART)
    flags = _flags(objects)
    assert "allow_version_labels_for_unavailable_models" not in flags
    assert "enable_batching" not in flags
    assert "batching_parameters.pbtxt" not in _one(objects, "ConfigMap")["data"]
    assert flags["enable_model_warmup"] == "true"
    # No probe asks gRPC health (TF Serving never changes it after start), so it stays off.
    assert "enable_grpc_healthcheck_service" not in flags
    assert flags["monitoring_config_file"] == "/etc/tf-serving/monitoring_config.pbtxt"


def test_label_on_an_unserved_version_fails_the_render():
    values = {"model": {"versionPolicy": {"type": "specific", "specificVersions": [1, 2]},
                        "versionLabels": {"canary": 3}}}
    with pytest.raises(helm_python.HelmError, match="canary points at version 3"):
        render(CHART, values=values)


def test_batch_sizes_must_end_with_the_maximum():
    values = {"batching": {"enabled": True, "maxBatchSize": 32, "allowedBatchSizes": [8, 16]}}
    with pytest.raises(helm_python.HelmError, match="allowedBatchSizes"):
        render(CHART, values=values)


def test_startup_and_readiness_ask_for_an_available_version_of_the_served_model():
    container = _container(render(CHART, values={"model": {"name": "churn"}}))
    # The metadata GET answers 404 when no version is AVAILABLE; the model status GET
    # (/v1/models/churn) would answer 200 and gRPC health stays SERVING.
    metadata = {"path": "/v1/models/churn/metadata", "port": "http"}
    assert container["startupProbe"]["httpGet"] == metadata
    assert container["readinessProbe"]["httpGet"] == metadata
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert not any("exec" in container[p] or "grpc" in container[p]
                   for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_pod_security_is_restricted_with_read_only_root():
    pod = _one(render(CHART), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert "fsGroup" not in pod["securityContext"]  # never re-own the shared model volume
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_config_checksum_rolls_pods_only_on_config_change():
    def checksum(values):
        deployment = _one(render(CHART, values=values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum({"replicaCount": 3}) == base
    assert checksum({"model": {"versionPolicy": {"latestVersions": 1}}}) != base
    assert checksum({"monitoring": {"path": "/metrics"}}) != base
    assert checksum({"batching": {"enabled": True}}) != base


def test_gke_scales_and_spreads_across_zones():
    objects = render(CHART, [CI / "gke-values.yaml"])
    deployment = _one(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert _one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone",
                                                  "kubernetes.io/hostname"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_autoscaling_bounds_must_be_ordered():
    with pytest.raises(helm_python.HelmError, match="minReplicas"):
        render(CHART, values={"autoscaling": {"enabled": True, "minReplicas": 5,
                                              "maxReplicas": 2}})


def test_kind_has_one_replica_and_no_autoscaling():
    objects = render(CHART, [CI / "kind-values.yaml"])
    assert _one(objects, "Deployment")["spec"]["replicas"] == 1
    assert not [o for o in objects
                if o["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")]


def test_network_policy_admits_clients_prometheus_pipeline_steps_and_the_test():
    policy = _one(render(CHART, [CI / "canary-values.yaml"]), "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    both_ports, metrics_only = rules

    def namespaces(rule):
        return [p.get("namespaceSelector", {}).get("matchLabels", {}).get(
            "kubernetes.io/metadata.name") for p in rule["from"]]

    assert [p["port"] for p in both_ports["ports"]] == ["grpc", "http"]
    assert namespaces(both_ports) == ["tfx-serving", "kubeflow", None]
    assert both_ports["from"][1]["podSelector"]["matchExpressions"][0]["key"] == (
        "workflows.argoproj.io/workflow")
    assert both_ports["from"][2]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "helm-test"
    assert [p["port"] for p in metrics_only["ports"]] == ["http"]
    assert namespaces(metrics_only) == ["monitoring"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_network_policy_can_be_disabled():
    assert not [o for o in render(CHART, values={"networkPolicy": {"enabled": False}})
                if o["kind"] == "NetworkPolicy"]


def test_helm_test_pod_checks_the_model_and_every_label():
    objects = render(CHART, [CI / "canary-values.yaml"], include_tests=True)
    pod = next(o for o in objects if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "python:3.12.11-alpine3.22"
    assert container["command"][:2] == ["python3", "-c"]
    assert container["command"][2] == CHECK_SCRIPT.read_text()
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TF_SERVING_URL"] == "http://test-tf-serving.tfx-serving.svc:8501"
    assert env["MODEL_NAME"] == "social_network_ads"
    assert env["VERSION_LABELS"] == "canary,stable"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert not [o for o in render(CHART, [CI / "canary-values.yaml"]) if o["kind"] == "Pod"]


def test_notes_render_the_endpoints():
    notes = render_templates(CHART, [CI / "gke-values.yaml"])["tf-serving/templates/NOTES.txt"]
    assert "gs://tfx-kfp-gke-artifacts/serving/social_network_ads" in notes
    assert "test-tf-serving.tfx-serving.svc:8500" in notes
    assert "/monitoring/prometheus/metrics" in notes


def test_every_values_key_is_commented():
    """Every key in values.yaml has a comment line above it, except the fields of Kubernetes
    structures passed through verbatim (their parent key carries the comment)."""
    verbatim = {"podSecurityContext", "securityContext", "resources", "metricsScrapers",
                "pipelineSteps"}
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented, parents = [], []  # parents: (indent, key)
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)(- )?([A-Za-z][\w.-]*):", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match.group(1)) + (2 if match.group(2) else 0)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        previous = next((lines[i].strip() for i in range(number - 1, -1, -1)
                         if lines[i].strip()), "")
        inside_verbatim = any(key in verbatim for _, key in parents)
        if not previous.startswith("#") and not inside_verbatim and not match.group(2):
            uncommented.append(f"{number + 1}: {line.strip()}")
        parents.append((indent, match.group(3)))
    assert not uncommented, "\n".join(uncommented)


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """Answers TF Serving's model status API from a path -> JSON body table."""

    responses: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = self.responses.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write((body or '{"error": "not found"}').encode())

    def log_message(self, *args):
        pass


def _status(state: str, error_code: str = "OK") -> str:
    return json.dumps({"model_version_status": [{
        "version": "1767225600", "state": state,
        "status": {"error_code": error_code, "error_message": ""}}]})


@pytest.fixture
def fake_serving():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_check(server, responses, labels=""):
    _FakeServing.responses = responses
    env = {**os.environ, "TF_SERVING_URL": f"http://127.0.0.1:{server.server_port}",
           "MODEL_NAME": "social_network_ads", "VERSION_LABELS": labels,
           "TIMEOUT_SECONDS": "0", "RETRY_SECONDS": "0"}
    return subprocess.run([sys.executable, str(CHECK_SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("responses", "labels", "passes"), [
    ({"/v1/models/social_network_ads": _status("AVAILABLE")}, "", True),
    ({"/v1/models/social_network_ads": _status("LOADING")}, "", False),
    ({"/v1/models/social_network_ads": _status("END", "NOT_FOUND")}, "", False),
    ({"/v1/models/social_network_ads": _status("AVAILABLE", "UNKNOWN")}, "", False),
    ({"/v1/models/social_network_ads": '{"model_version_status": []}'}, "", False),
    ({"/v1/models/social_network_ads": _status("AVAILABLE"),
      "/v1/models/social_network_ads/labels/stable": _status("AVAILABLE")}, "stable", True),
    ({"/v1/models/social_network_ads": _status("AVAILABLE")}, "canary", False),
], ids=["available", "loading", "ended", "failed-load", "no-versions", "label-available",
        "label-missing"])
def test_helm_test_script_reads_version_states(fake_serving, responses, labels, passes):
    completed = _run_check(fake_serving, responses, labels)
    assert (completed.returncode == 0) is passes, completed.stdout + completed.stderr
    if not passes:
        assert completed.stderr.strip(), "a failing check must say why"


def test_helm_test_script_reports_an_unreachable_server(tmp_path):
    env = {**os.environ, "TF_SERVING_URL": "http://127.0.0.1:9", "MODEL_NAME": "m",
           "TIMEOUT_SECONDS": "0", "RETRY_SECONDS": "0"}
    completed = subprocess.run([sys.executable, str(CHECK_SCRIPT)], env=env, capture_output=True,
                               text=True, timeout=60, check=False)
    assert completed.returncode == 1 and "http://127.0.0.1:9" in completed.stderr


def test_ci_scenarios_exist_for_every_platform():
    assert {p.name for p in CI.glob("*-values.yaml")} >= {
        "kind-values.yaml", "minikube-values.yaml", "gke-values.yaml"}
    for scenario in CI.glob("*-values.yaml"):
        assert isinstance(yaml.safe_load(scenario.read_text()), dict), scenario
