"""Kubeflow Pipelines 2.16.1, built from its release source, runs the pipeline on the local cluster.

One installation and one good run serve every test here, made as a user makes them:
`make cluster-kfp` (the helm CLI: kfp with Argo Workflows from its pinned chart, tf-serving,
then `helm test kfp`) and `make cluster-submit DATA=<the real data>` (stage, compile with the
pipeline image cluster-up built, submit, wait, `tfxkfp runs show`, `tfxkfp serving check`).
On that installation the module then submits the same spec again (KFP's cache and the
baseline), runs faulty data (the gate), imports hyperparameters from SeaweedFS instead of
tuning, and checks that the InfraValidator's serving pod came and went with its step.

A failure prints what conftest's report gathers for `kubeflow` and `tfx-serving` (events,
every pod's log, each Argo workflow's unfinished nodes) and the output of the command that
failed. At the end both releases are uninstalled, what the kfp chart keeps is deleted and
the store is emptied, as the modules after this one expect.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from kubernetes import client as k8s_client
from kubernetes import watch

from conftest import REPO, watch_namespace
from pipeline import model_versions
from pipeline.data import hparams as hparams_staging
from pipeline.models import constants

pytestmark = pytest.mark.cluster

NAMESPACE = "kubeflow"
STORE = Path("/var/local/tfx")  # the node's store: claim tfx-store, mounted by steps at /tfx
SERVING_DIR = STORE / "serving" / "social_network_ads"
SHARED_DATA = REPO.parent / "shared" / "data" / "social_network_ads.csv"
SPEC = REPO / "build" / "cluster-submit" / "pipeline.yaml"
TFXKFP = REPO / ".venv" / "bin" / "tfxkfp"
VERSIONS = REPO / "k8s" / "local" / "versions.env"
PIPELINE_ENV = REPO / "k8s" / "local" / "pipeline.env"
BUILD_BINARIES = REPO / "k8s" / "local" / "build-binaries.sh"
# The pipeline's tasks on KFP, tuned (compiled without --hparams-uri or --no-tune).
TUNED_TASKS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen",
               "ExampleValidator", "AnomaliesGate", "Transform", "Tuner", "Trainer",
               "LatestServedModel", "Evaluator", "InfraValidator", "Pusher", "BulkInferrer",
               "PredictionsExport"}
# Labels pipeline/components/serving_pod.py gives the InfraValidator's TF Serving pod.
SERVING_POD_SELECTOR = ("app.kubernetes.io/name=tensorflow-serving,"
                        "app.kubernetes.io/component=infra-validator")
# Bounded waits, in seconds: the helm install and its test, a whole tuned run, a command.
INSTALL_SECONDS = 1200
RUN_SECONDS = 2400
COMMAND_SECONDS = 300


def _settings(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _run(args: list[str], seconds: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a command as typed; prints its output, which the report shows if a test fails."""
    print(f"$ {' '.join(args)}")
    result = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})},
                            capture_output=True, text=True, timeout=seconds, check=False)
    print(result.stdout[-30000:], result.stderr[-30000:], sep="\n")
    return result


def _tools_env() -> dict[str, str]:
    """The local cluster's helm and kubectl first on PATH, as `make` gives its commands."""
    dirs = subprocess.run(["bash", str(BUILD_BINARIES), "--dirs"], check=True,
                          capture_output=True, text=True).stdout.split()
    return {"PATH": os.pathsep.join([*dirs, os.environ["PATH"]])}


def _local_settings() -> dict[str, str]:
    """k8s/local/pipeline.env, as `make cluster-submit` reads it."""
    return _settings(PIPELINE_ENV)


def _show(run_id: str) -> dict:
    result = _run([str(TFXKFP), "runs", "show", run_id, "--output", "json"], COMMAND_SECONDS,
                  _local_settings())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _tasks(report: dict) -> dict[str, str]:
    return {task["display_name"]: task["state"] for task in report["tasks"]}


def _submit(spec: Path, name: str) -> tuple[subprocess.CompletedProcess, str]:
    """`tfxkfp submit --wait`; the run's id (the last part of the URL it prints or names)."""
    result = _run([str(TFXKFP), "submit", str(spec), "--wait", "--run-name", name],
                  RUN_SECONDS, _local_settings())
    match = re.search(r"/#/runs/details/([0-9a-f-]{36})", result.stdout + result.stderr)
    assert match, "no run was created"
    return result, match.group(1)


def _compile(output: Path, *flags: str, **settings: str) -> Path:
    image = _settings(REPO / "build" / "local-images.env")["PIPELINE_IMAGE"]
    result = _run([str(TFXKFP), "compile", "--target", "kfp", "--image", image,
                   "--output", str(output), *flags], COMMAND_SECONDS,
                  {**_local_settings(), **settings})
    assert result.returncode == 0, result.stderr
    return output


def _served() -> dict[int, str]:
    """Every served version of the store, with the digest of its files."""
    return {version: model_versions.directory_digest(
        model_versions.version_path(str(SERVING_DIR), version))
        for version in model_versions.served_versions(str(SERVING_DIR))}


def _empty_store() -> None:
    for directory in (STORE / "data", STORE / "serving"):
        for entry in directory.iterdir() if directory.is_dir() else []:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    SERVING_DIR.mkdir(parents=True, exist_ok=True)
    for directory in (STORE / "data", STORE / "serving", SERVING_DIR):
        directory.chmod(0o777)


def _uninstall(core_api: k8s_client.CoreV1Api) -> None:
    """Both releases, what kfp keeps (its claims, its database secret) and the runs' pods."""
    env = _tools_env()
    for release, namespace in (("tf-serving", "tfx-serving"), ("kfp", NAMESPACE)):
        _run(["helm", "uninstall", release, "-n", namespace, "--wait", "--ignore-not-found"],
             COMMAND_SECONDS, env)
    selector = "app.kubernetes.io/instance=kfp"
    _run(["kubectl", "-n", NAMESPACE, "delete", "persistentvolumeclaims,secrets", "-l", selector,
          "--wait"], COMMAND_SECONDS, env)
    _run(["kubectl", "-n", NAMESPACE, "delete", "workflows.argoproj.io", "--all", "--wait"],
         COMMAND_SECONDS, env)
    deadline = time.monotonic() + COMMAND_SECONDS
    while core_api.list_namespaced_pod(NAMESPACE, label_selector="workflows.argoproj.io/workflow"
                                       ).items:
        assert time.monotonic() < deadline, "the runs' pods outlived their workflows"
        time.sleep(2)


@pytest.fixture(scope="module")
def installation(core_api):
    """`make cluster-kfp` on a cluster without KFP, removed again after the module."""
    watch_namespace(NAMESPACE, shared=True)
    watch_namespace("tfx-serving", shared=True)
    assert not _served(), f"{SERVING_DIR} holds versions already: another run's leftovers"
    try:
        result = _run(["make", "cluster-kfp"], INSTALL_SECONDS)
        assert result.returncode == 0, "make cluster-kfp failed"
        yield result
    finally:
        _uninstall(core_api)
        _empty_store()


class _ServingPods:
    """Records the InfraValidator's TF Serving pods: each one created, and each one deleted."""

    def __init__(self, core_api: k8s_client.CoreV1Api) -> None:
        self.added: dict[str, list[dict]] = {}
        self.deleted: set[str] = set()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._follow, args=(core_api,), daemon=True)
        self._thread.start()

    def _follow(self, core_api: k8s_client.CoreV1Api) -> None:
        for event in self._watch.stream(core_api.list_namespaced_pod, NAMESPACE,
                                        label_selector=SERVING_POD_SELECTOR):
            pod = event["object"]
            if event["type"] == "ADDED":
                self.added[pod.metadata.name] = [
                    {"kind": ref.kind, "name": ref.name} for ref in
                    pod.metadata.owner_references or []]
            elif event["type"] == "DELETED":
                self.deleted.add(pod.metadata.name)

    def stop(self) -> None:
        self._watch.stop()


@pytest.fixture(scope="module")
def first_run(installation, core_api):
    """`make cluster-submit` on the real data (synthetic rows where ../shared is absent)."""
    data = SHARED_DATA if SHARED_DATA.is_file() else None
    if data is None:
        print(f"note: {SHARED_DATA} is absent: the run is on synthetic rows")
    serving_pods = _ServingPods(core_api)
    try:
        result = _run(["make", "cluster-submit", *([f"DATA={data}"] if data else [])],
                      RUN_SECONDS)
    finally:
        serving_pods.stop()
    match = re.search(r"cluster-submit: run (\S+) succeeded", result.stderr)
    assert result.returncode == 0 and match, "make cluster-submit failed"
    summary = REPO / "build" / "cluster-submit" / f"run-{match.group(1)}.json"
    return {"result": result, "report": json.loads(summary.read_text()),
            "serving_pods": serving_pods}


def test_kfp_installs_with_the_helm_cli_and_passes_its_helm_test(installation, api_client):
    assert "TEST SUITE:     kfp-test-api-server" in installation.stdout
    assert "Phase:          Succeeded" in installation.stdout
    deployments = k8s_client.AppsV1Api(api_client).list_namespaced_deployment(
        NAMESPACE, label_selector="app.kubernetes.io/instance=kfp").items
    names = {d.metadata.name for d in deployments}
    # KFP's backend, Argo's controller, and the stores this install runs itself.
    assert {"kfp-api-server", "kfp-persistence-agent", "kfp-scheduled-workflow",
            "kfp-metadata-grpc", "kfp-mysql", "kfp-seaweedfs",
            "kfp-argo-workflows-workflow-controller"} <= names, names
    unavailable = [d.metadata.name for d in deployments
                   if (d.status.available_replicas or 0) < d.spec.replicas]
    assert not unavailable, unavailable


def test_the_api_server_answers_its_health_check_through_its_service(installation, core_api):
    versions = _settings(VERSIONS)
    service = core_api.read_namespaced_service("ml-pipeline", NAMESPACE)
    for url in (f"http://{service.spec.cluster_ip}:8888/apis/v2beta1/healthz",
                f"{_local_settings()['TFXKFP_KFP_HOST']}/apis/v2beta1/healthz"):
        with urllib.request.urlopen(url, timeout=30) as response:
            health = json.load(response)
        # The image reports the release and commit it was built from.
        assert health["tag_name"] == versions["KFP_VERSION"], health
        assert health["commit_sha"] == versions["KFP_COMMIT"], health
        assert health["multi_user"] is False


def test_make_cluster_submit_runs_the_pipeline_to_a_served_model(first_run):
    report, output = first_run["report"], first_run["result"]
    assert report["state"] == "SUCCEEDED"
    assert _tasks(report) == dict.fromkeys(TUNED_TASKS, "SUCCEEDED")
    evaluator = report["evaluator"]
    assert evaluator["blessed"] and evaluator["baseline"] is None  # nothing was served before
    assert evaluator["metrics"]["auc"] >= 0.85 and evaluator["metrics"]["example_count"] > 0
    assert report["infra_validator"] == {"blessed": True, "reason": None}
    assert list(_served()) == [report["pushed"]["version"]]
    # TF Serving serves it through its Service, as the model predicts in-process.
    assert f"version {report['pushed']['version']}: REST and gRPC predictions equal the " \
        "SavedModel's" in output.stderr
    # `tfxkfp runs show` printed the run as a person reads it.
    assert f"Pusher: version {report['pushed']['version']}" in output.stdout


def test_the_infra_validator_starts_its_serving_pod_from_its_step_and_removes_it(
        first_run, core_api):
    serving_pods = first_run["serving_pods"]
    assert serving_pods.added, "no TF Serving pod was created during the run"
    for name, owners in serving_pods.added.items():
        # Owned by the InfraValidator's step pod, whose deletion would take it along.
        assert [owner["kind"] for owner in owners] == ["Pod"], (name, owners)
        assert owners[0]["name"].startswith("social-network-ads-"), owners
        assert name in serving_pods.deleted, f"{name} was not deleted during the run"
    assert not core_api.list_namespaced_pod(NAMESPACE, label_selector=SERVING_POD_SELECTOR).items


def test_no_directory_marker_is_left_under_the_s3_root(first_run, core_api):
    # Issue 11's (g): on a gs:// root TensorFlow writes zero-byte "dir/" objects, which the
    # next step's launcher downloads as files. On SeaweedFS the steps write to the launcher's
    # local copies (pipeline/runners/kubeflow/step.py), which uploads files only.
    s3 = _object_store(core_api)
    run_root = f"v2/artifacts/social-network-ads/{first_run['report']['run_id']}/"
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="mlpipeline", Prefix=run_root) for item in page.get("Contents", [])]
    assert any(key.endswith("/saved_model.pb") for key in keys), keys[:20]
    assert [key for key in keys if key.endswith("/")] == []


def test_the_same_submit_again_takes_what_kfp_can_from_its_cache(first_run):
    first = first_run["report"]
    result, run_id = _submit(SPEC, "the same spec again")
    assert result.returncode == 0, "the second run failed"
    report = _show(run_id)
    tasks = _tasks(report)
    cached = sorted(name for name, state in tasks.items() if state == "CACHED")
    print(f"note: {len(cached)} of {len(tasks)} tasks came from KFP's cache: {cached}")
    # KFP keys its cache on a task's inputs: ImportSchemaGen has none that change. CsvExampleGen
    # and LatestServedModel read outside their inputs (the data files, the serving directory),
    # so they are never cached, and CsvExampleGen's new Examples artifact is a new input to
    # everything downstream of it.
    assert cached == ["ImportSchemaGen"]
    assert set(tasks) == TUNED_TASKS and not set(tasks.values()) - {"SUCCEEDED", "CACHED"}
    # The Evaluator judged the retrained model against the version the first run pushed, now
    # served: same data, same seed, the same numbers, so no regression and blessed.
    evaluator = report["evaluator"]
    assert evaluator["baseline"] == first["pushed"]["path"]
    assert evaluator["blessed"] and evaluator["metrics"] == first["evaluator"]["metrics"]
    text = _run([str(TFXKFP), "runs", "show", run_id], COMMAND_SECONDS, _local_settings())
    assert f"baseline: {first['pushed']['path']}" in text.stdout
    assert f"Pusher: version {report['pushed']['version']}" in text.stdout
    # A new version, or the served one when the retrained files are byte for byte the same.
    assert report["pushed"]["version"] >= first["pushed"]["version"]
    assert list(_served())[-1] == report["pushed"]["version"]


def _faulty_copy(destination: Path) -> Path:
    """The run's data with one user 150 years old: outside the curated schema's age range."""
    source = SHARED_DATA if SHARED_DATA.is_file() else (
        REPO / "build" / "cluster-submit" / "synthetic.csv")
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("Age")] = "150"
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "data.csv").write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    (destination / "data.csv").chmod(0o666)
    return destination


def test_faulty_data_fails_at_the_gate_and_changes_nothing_served(first_run, tmp_path):
    before = _served()
    raw = _faulty_copy(tmp_path / "raw")
    staged = _run([str(TFXKFP), "data", "stage", str(raw / "data.csv"), "--out",
                   str(STORE / "data" / "faulty")], COMMAND_SECONDS)
    assert staged.returncode == 0, staged.stderr
    spec = _compile(tmp_path / "faulty.yaml", TFXKFP_DATA_ROOT="/tfx/data/faulty")
    result, run_id = _submit(spec, "faulty data")
    assert result.returncode == 1, "a run on faulty data did not fail"
    report = _show(run_id)
    assert report["state"] == "FAILED"
    assert report["failed_tasks"] == ["AnomaliesGate"]
    tasks = _tasks(report)
    # What comes after the gate never started: Argo omitted it.
    assert {name for name, state in tasks.items() if state != "SKIPPED"} == {
        "CsvExampleGen", "ImportSchemaGen", "LatestServedModel", "StatisticsGen", "SchemaGen",
        "ExampleValidator", "AnomaliesGate"}, tasks
    assert {"Transform", "Trainer", "Pusher"} <= {n for n, s in tasks.items() if s == "SKIPPED"}
    assert [a["feature"] for a in report["anomalies"]] == ["age"], report["anomalies"]
    text = _run([str(TFXKFP), "runs", "show", run_id], COMMAND_SECONDS, _local_settings())
    assert "failed at AnomaliesGate" in text.stdout and "  age: " in text.stdout
    assert _served() == before


def _object_store(core_api: k8s_client.CoreV1Api):
    """An S3 client for the kfp release's SeaweedFS, as the chart's Secret configures it."""
    secret = core_api.read_namespaced_secret("mlpipeline-minio-artifact", NAMESPACE).data
    service = core_api.read_namespaced_service("seaweedfs", NAMESPACE)
    return boto3.client(
        "s3", endpoint_url=f"http://{service.spec.cluster_ip}:9000", region_name="us-east-1",
        aws_access_key_id=base64.b64decode(secret["accesskey"]).decode(),
        aws_secret_access_key=base64.b64decode(secret["secretkey"]).decode())


def test_hyperparameters_put_into_seaweedfs_are_trained_instead_of_tuning(
        first_run, core_api, tmp_path):
    # Values the Tuner's search space holds but the defaults do not, so that training with
    # them can be told apart from training untuned.
    chosen = {constants.HIDDEN_UNITS: 8, constants.HIDDEN_LAYERS: 1,
              constants.LEARNING_RATE: 0.003}
    assert chosen != constants.DEFAULT_HPARAMS
    source = tmp_path / "chosen.json"
    source.write_text(json.dumps(chosen))
    staged = hparams_staging.stage(source, tmp_path / "staged")
    key = f"hparams/{staged.name}/{hparams_staging.HPARAMS_FILE}"
    s3 = _object_store(core_api)
    s3.upload_file(str(staged / hparams_staging.HPARAMS_FILE), "mlpipeline", key)
    uri = f"s3://mlpipeline/{key.rsplit('/', 1)[0]}"

    spec = _compile(tmp_path / "imported.yaml", "--hparams-uri", uri)
    result, run_id = _submit(spec, "imported hyperparameters")
    assert result.returncode == 0, "the run with imported hyperparameters failed"
    report = _show(run_id)
    tasks = _tasks(report)
    assert "Tuner" not in tasks and tasks.get("HyperparametersImporter") == "SUCCEEDED", tasks
    # The Trainer logged what it trained with (pipeline.models.model.run_fn); KFP's launcher
    # kept the step's log as its executor-logs artifact in the object store.
    log_uri = report["logs"]["Trainer"]
    bucket, _, log_key = log_uri.removeprefix("s3://").partition("/")
    log = s3.get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    trained = re.search(r"training with hyperparameters (\{.*\})", log)
    assert trained, f"no hyperparameters line in the Trainer's log {log_uri}"
    assert json.loads(trained.group(1)) == chosen
