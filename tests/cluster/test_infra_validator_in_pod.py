"""The Kubernetes InfraValidator run the way a KFP step runs it, on a real cluster.

A step pod with the pipeline image and the kfp chart's pipeline-runner service account
(rendered from helm/kfp, applied in `kubeflow`) runs ``python -m pipeline.runners.kubeflow.step``
with ``KubernetesInfraValidatorExecutor``: the command of the compiled pipeline's
InfraValidator step, with the environment KFP 2.x gives a step (``KFP_POD_NAME`` and
``KFP_POD_UID`` from the downward API, no ``KFP_NAMESPACE``) and the tfx-store claim mounted
at /tfx as `--volume-claim tfx-store --volume-mount-path /tfx` compiles it. Its inputs are
real artifacts this test writes onto the claim (the node directory /var/local/tfx): the
tiny_training model and raw eval examples; its result is TFX's own, the InfraBlessing and the
executor output file KFP's launcher would read.

Stand-ins, and what they leave unproven:
- TF Serving is the stand-in image (TF_SERVING_STANDIN_IMAGE, tests/standins/tf_serving),
  chosen through ServingSpec.tensorflow_serving image_name and tags:
  tensorflow/serving:2.16.1 cannot be pulled here.
- The step pod is created by this test, not by KFP's driver and Argo. The code it runs is
  the package inside the pipeline image, which `cluster.sh up` (so `make test-cluster`)
  rebuilds from the working tree whenever pipeline/ changed.
- The chart's NetworkPolicy is not applied (the local cluster's CNI does not enforce any).

The serving pod runs in `kubeflow`, which enforces only `baseline` (and warns on
`restricted`). So the exact pod spec the step created is also sent, as a server-side dry run,
to a throwaway namespace that enforces `restricted`: the same PodSecurity admission decides,
and a refusal is an error rather than a warning header the step's client would drop.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import helm_python
import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import utils as k8s_utils
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from tfx.proto import infra_validator_pb2
from tfx.utils import proto_utils

from conftest import make_namespace, wait_for_pod_phase, watch_namespace
from pipeline.components import kubernetes_infra_validator as kiv
from pipeline.components.serving_pod import STEP_POD_UID_LABEL
from pipeline.components.step_pod import (
    MODEL_PVC_ENV,
    MODEL_PVC_MOUNT_PATH_ENV,
    POD_NAME_ENV,
    POD_UID_ENV,
)
from pipeline.runners.kubeflow.compiler import STEP_COMMAND

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
KFP_CHART = REPO / "helm" / "kfp"
# The offline render's values: Argo Workflows (a dependency not vendored) disabled.
KFP_VALUES = KFP_CHART / "ci" / "kind-values.yaml"
NAMESPACE = "kubeflow"
CLAIM = "tfx-store"
STORE = Path("/var/local/tfx")  # the node directory the claim is bound to
MOUNT = "/tfx"  # where pipeline steps mount it (k8s/components/local-cluster)
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")  # k8s/local/cluster.sh POD_CIDR
STEP_UID = 1000  # the pipeline image's user
EXECUTOR = f"{kiv.__name__}.{kiv.KubernetesInfraValidatorExecutor.__name__}"
MODEL_NAME = "social_network_ads"
EVAL_EXAMPLES = 16  # config.infra_validation_examples

# Bounded waits: a step imports TFX (15-30 s on two cores) and the stand-in imports TensorFlow.
STEP_SECONDS = 300
GONE_SECONDS = 60
LOADED_SECONDS = 120  # max_loading_time_seconds of the pipeline
CORRUPT_SECONDS = 30  # the stand-in starts and fails its first load in ~5 s


@dataclass(frozen=True)
class Store:
    """This module's directory on the claim, as the test (host) and the pods see it."""

    host: Path
    pod: str


@dataclass
class StepResult:
    """What one step pod did, seen from outside it."""

    pod: k8s_client.V1Pod
    log: str
    serving_events: list[tuple[str, k8s_client.V1Pod]]
    output: dict | None  # KFP's executor output file, when the executor finished
    case_host: Path

    @property
    def exit_code(self) -> int:
        return self.pod.status.container_statuses[0].state.terminated.exit_code

    def serving_pods(self) -> dict[str, k8s_client.V1Pod]:
        """Each serving pod the watch saw, as it was when created."""
        return {pod.metadata.name: pod for kind, pod in self.serving_events if kind == "ADDED"}

    def serving_states(self, name: str) -> list[k8s_client.V1Pod]:
        return [pod for _, pod in self.serving_events if pod.metadata.name == name]

    def blessed(self) -> int:
        [blessing] = self.output["artifacts"]["blessing"]["artifacts"]
        return int(blessing["metadata"]["blessed"])


class _ServingPodWatch:
    """Every change to the serving pods of one step pod, from a list and a watch after it."""

    def __init__(self, core_api: k8s_client.CoreV1Api, step_uid: str):
        self.core_api = core_api
        self.selector = f"{STEP_POD_UID_LABEL}={step_uid}"
        listed = core_api.list_namespaced_pod(NAMESPACE, label_selector=self.selector)
        self.events: list[tuple[str, k8s_client.V1Pod]] = [("ADDED", p) for p in listed.items]
        self._watch = k8s_watch.Watch()
        threading.Thread(target=self._run, args=(listed.metadata.resource_version,),
                         daemon=True).start()

    def _run(self, resource_version: str) -> None:
        for event in self._watch.stream(
                self.core_api.list_namespaced_pod, NAMESPACE, label_selector=self.selector,
                resource_version=resource_version, timeout_seconds=STEP_SECONDS + GONE_SECONDS):
            self.events.append((event["type"], event["object"]))

    def wait_until_all_gone(self) -> None:
        """Returns once no serving pod of the step exists and the watch saw each deletion."""
        deadline = time.monotonic() + GONE_SECONDS
        while True:
            left = self.core_api.list_namespaced_pod(NAMESPACE, label_selector=self.selector)
            created = {pod.metadata.name for kind, pod in self.events if kind == "ADDED"}
            deleted = {pod.metadata.name for kind, pod in self.events if kind == "DELETED"}
            if not left.items and created == deleted:
                self._watch.stop()
                return
            if time.monotonic() > deadline:
                pytest.fail(f"serving pods still there after {GONE_SECONDS}s: "
                            f"{[pod.metadata.name for pod in left.items]}; "
                            f"created {sorted(created)}, deletion seen {sorted(deleted)}")
            time.sleep(1)


# --- the cluster objects -------------------------------------------------------------------


def _pipeline_runner_objects(release: str, service_account: str) -> list[dict]:
    """The chart's pipeline-runner ServiceAccount, Role and RoleBinding, as helm renders them."""
    values = yaml.safe_load(KFP_VALUES.read_text())
    values.setdefault("pipelineRunner", {})["serviceAccountName"] = service_account
    chart = helm_python.Chart.load(str(KFP_CHART))
    try:
        rendered = chart.render(values, name=release, namespace=NAMESPACE, revision=1,
                                is_install=True)
    finally:
        chart.close()
    objects = [
        doc
        for path, text in sorted(rendered.items()) if "/templates/pipeline-runner/" in path
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] in ("ServiceAccount", "Role", "RoleBinding")
    ]
    assert sorted(doc["kind"] for doc in objects) == ["Role", "RoleBinding", "ServiceAccount"]
    return objects


def _delete(api_client: k8s_client.ApiClient, kind: str, name: str) -> None:
    core, rbac = k8s_client.CoreV1Api(api_client), k8s_client.RbacAuthorizationV1Api(api_client)
    delete = {"ServiceAccount": core.delete_namespaced_service_account,
              "Role": rbac.delete_namespaced_role,
              "RoleBinding": rbac.delete_namespaced_role_binding}[kind]
    try:
        delete(name, NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture(scope="module")
def pipeline_runner(api_client) -> str:
    """The chart's pipeline-runner identity, under a release and account name of this module.

    Its own names keep it apart from a KFP release in `kubeflow`, which owns `pipeline-runner`.
    """
    suffix = secrets.token_hex(3)
    objects = _pipeline_runner_objects(f"ivt-{suffix}", f"pipeline-runner-ivt-{suffix}")
    try:
        for obj in objects:
            k8s_utils.create_from_dict(api_client, obj, namespace=NAMESPACE)
        yield next(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")
    finally:
        for obj in reversed(objects):
            _delete(api_client, obj["kind"], obj["metadata"]["name"])


@pytest.fixture
def roleless_account(api_client, core_api) -> str:
    """A service account in `kubeflow` bound to no Role."""
    name = f"no-role-ivt-{secrets.token_hex(3)}"
    core_api.create_namespaced_service_account(
        NAMESPACE, k8s_client.V1ServiceAccount(metadata=k8s_client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        _delete(api_client, "ServiceAccount", name)


def _write_examples(directory: Path, raw_examples: list[bytes]) -> None:
    import tensorflow as tf

    directory.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(directory / "data.gz"), options="GZIP") as writer:
        for example in raw_examples:
            writer.write(example)


@pytest.fixture(scope="module")
def store(tiny_training) -> Store:
    """Model, corrupt model and eval examples, on the claim."""
    if not STORE.is_dir():
        pytest.fail(f"{STORE} is missing: the tfx-store claim's node directory "
                    "(k8s/local/cluster.sh mounts it)")
    name = f"infraval-{secrets.token_hex(3)}"
    host = STORE / name
    try:
        shutil.copytree(tiny_training.serving_model_dir, host / "model" / "Format-Serving")
        corrupt = host / "corrupt-model" / "Format-Serving"
        shutil.copytree(tiny_training.serving_model_dir, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        _write_examples(host / "examples" / "Split-eval", tiny_training.raw_examples)
        # The steps run as the image's user; the serving pod only reads.
        for path in [host, *host.rglob("*")]:
            os.chown(path, STEP_UID, STEP_UID)
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield Store(host=host, pod=f"{MOUNT}/{name}")
    finally:
        shutil.rmtree(host, ignore_errors=True)
        with contextlib.suppress(OSError):  # the steps' staging parent, unless others use it
            (STORE / ".infra-validation").rmdir()


# --- one step ------------------------------------------------------------------------------


def _serving_spec(image: str) -> infra_validator_pb2.ServingSpec:
    image_name, _, tag = image.rpartition(":")
    return infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(
            image_name=image_name, tags=[tag]),
        kubernetes=infra_validator_pb2.KubernetesConfig(),
        model_name=MODEL_NAME,
    )


def _artifact(uri: str, **metadata) -> dict:
    # KFP 2.16's driver sends artifacts from upstream steps untyped (step.py's docstring).
    return {"artifacts": [{"type": {"instanceSchema": ""}, "uri": uri, "metadata": metadata}]}


def _declared(schema_title: str) -> dict:
    return {"artifactType": {"schemaTitle": schema_title, "schemaVersion": "0.0.1"}}


def _step_args(store: Store, case: str, serving_spec, validation_spec, model: str,
               query: bool) -> list[str]:
    """The step entrypoint's arguments, as KFP's launcher hands them over (pipeline spec 2.1)."""
    case_dir = f"{store.pod}/{case}"
    inputs = {"model": _artifact(f"{store.pod}/{model}")}
    declared_inputs = {"model": _declared("tfx.Model")}
    parameters = {"serving_spec": proto_utils.proto_to_json(serving_spec),
                  "validation_spec": proto_utils.proto_to_json(validation_spec)}
    if query:
        inputs["examples"] = _artifact(f"{store.pod}/examples", split_names='["eval"]')
        declared_inputs["examples"] = _declared("tfx.Examples")
        parameters["request_spec"] = proto_utils.proto_to_json(infra_validator_pb2.RequestSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
                signature_names=["serving_default"]),
            split_name="eval", num_examples=EVAL_EXAMPLES))
    executor_input = {
        "inputs": {"artifacts": inputs, "parameterValues": parameters},
        "outputs": {"artifacts": {"blessing": {"artifacts": [{
                        "type": _declared("tfx.InfraBlessing")["artifactType"],
                        "uri": f"{case_dir}/blessing"}]}},
                    "outputFile": f"{case_dir}/executor_output.json"},
    }
    inputs_spec = {"artifacts": declared_inputs,
                   "parameters": {key: {"parameterType": "STRING"} for key in parameters}}
    outputs_spec = {"artifacts": {"blessing": _declared("tfx.InfraBlessing")}}
    return ["--executor_class_path", EXECUTOR,
            "--json_serialized_invocation_args", json.dumps(executor_input),
            "--json_serialized_inputs_spec_args", json.dumps(inputs_spec),
            "--json_serialized_outputs_spec_args", json.dumps(outputs_spec)]


def _step_pod(name: str, image: str, service_account: str, store: Store,
              args: list[str]) -> k8s_client.V1Pod:
    field_env = [k8s_client.V1EnvVar(name=env, value_from=k8s_client.V1EnvVarSource(
        field_ref=k8s_client.V1ObjectFieldSelector(field_path=path)))
        for env, path in ((POD_NAME_ENV, "metadata.name"),
                          (POD_UID_ENV, "metadata.uid"))]
    return k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(
            name=name,
            # Argo's label on every workflow pod (the chart's NetworkPolicy selects on it).
            labels={"workflows.argoproj.io/workflow": name}),
        spec=k8s_client.V1PodSpec(
            service_account_name=service_account,
            restart_policy="Never",
            active_deadline_seconds=STEP_SECONDS,
            containers=[k8s_client.V1Container(
                name="main",
                image=image,
                image_pull_policy="Never",
                command=list(STEP_COMMAND),  # what the compiled pipeline runs
                args=args,
                env=[*field_env,
                     k8s_client.V1EnvVar(name=MODEL_PVC_ENV, value=CLAIM),
                     k8s_client.V1EnvVar(name=MODEL_PVC_MOUNT_PATH_ENV, value=MOUNT)],
                volume_mounts=[k8s_client.V1VolumeMount(name="store", mount_path=MOUNT)],
                security_context=k8s_client.V1SecurityContext(
                    allow_privilege_escalation=False,
                    capabilities=k8s_client.V1Capabilities(drop=["ALL"])),
            )],
            volumes=[k8s_client.V1Volume(
                name="store",
                persistent_volume_claim=k8s_client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=CLAIM))],
            security_context=k8s_client.V1PodSecurityContext(
                run_as_non_root=True, run_as_user=STEP_UID, run_as_group=STEP_UID,
                seccomp_profile=k8s_client.V1SeccompProfile(type="RuntimeDefault")),
        ),
    )


def _run_step(core_api, local_images, store: Store, service_account: str, case: str, *,
              validation_spec, model: str = "model", query: bool = True) -> StepResult:
    """Runs one InfraValidator step to its end; returns once its serving pods are gone."""
    name = f"infraval-step-{case}-{secrets.token_hex(3)}"
    watch_namespace(NAMESPACE)
    (store.host / case).mkdir()
    os.chown(store.host / case, STEP_UID, STEP_UID)
    args = _step_args(store, case, _serving_spec(local_images["TF_SERVING_STANDIN_IMAGE"]),
                      validation_spec, model, query)
    created = core_api.create_namespaced_pod(NAMESPACE, _step_pod(
        name, local_images["PIPELINE_IMAGE"], service_account, store, args))
    try:
        serving = _ServingPodWatch(core_api, created.metadata.uid)
        pod = wait_for_pod_phase(core_api, NAMESPACE, name, {"Succeeded", "Failed"},
                                 STEP_SECONDS)
        serving.wait_until_all_gone()
        log = core_api.read_namespaced_pod_log(name, NAMESPACE, container="main")
    finally:
        core_api.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
    output_file = store.host / case / "executor_output.json"
    output = json.loads(output_file.read_text()) if output_file.exists() else None
    return StepResult(pod, log, serving.events, output, store.host / case)


def _validation_spec(max_loading_time_seconds: int) -> infra_validator_pb2.ValidationSpec:
    # One try: each attempt is a pod of its own, and the cases need only one.
    return infra_validator_pb2.ValidationSpec(
        max_loading_time_seconds=max_loading_time_seconds, num_tries=1)


def _restricted_dry_run(core_api, namespace: str, pod: k8s_client.V1Pod) -> None:
    """Creates `pod`'s exact spec in `namespace` as a server-side dry run."""
    spec = core_api.api_client.sanitize_for_serialization(pod.spec)
    core_api.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.metadata.name, "labels": pod.metadata.labels}, "spec": spec,
    }, dry_run="All")


def _assert_staging_copy_removed(result: StepResult) -> None:
    staging = STORE / ".infra-validation" / result.pod.metadata.name
    assert not staging.exists(), f"the model copy {staging} was left behind"


# --- the cases -----------------------------------------------------------------------------


def test_model_is_served_queried_and_blessed_and_the_pod_deleted(
        core_api, local_images, store, pipeline_runner):
    result = _run_step(core_api, local_images, store, pipeline_runner, "blessed",
                       validation_spec=_validation_spec(LOADED_SECONDS))

    assert result.exit_code == 0, result.log[-3000:]
    assert "InfraValidator will be run in LOAD_AND_QUERY mode." in result.log
    assert "Model is successfully loaded." in result.log
    assert result.blessed() == 1
    assert (result.case_host / "blessing" / "INFRA_BLESSED").exists()

    [(name, created)] = result.serving_pods().items()
    assert created.metadata.namespace == NAMESPACE  # from the service account's namespace file
    [owner] = created.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (
        "Pod", result.pod.metadata.name, result.pod.metadata.uid)
    [container] = created.spec.containers
    assert container.image == local_images["TF_SERVING_STANDIN_IMAGE"]
    volume = next(v for v in created.spec.volumes if v.persistent_volume_claim)
    assert (volume.persistent_volume_claim.claim_name,
            volume.persistent_volume_claim.read_only) == (CLAIM, True)

    # It ran that image and had an address on the pod network, not the step's own.
    running = [pod for pod in result.serving_states(name) if pod.status.phase == "Running"]
    assert running, f"the serving pod was never seen running: {result.serving_states(name)}"
    [status] = running[-1].status.container_statuses
    assert status.image == local_images["TF_SERVING_STANDIN_IMAGE"]
    assert status.image_id.startswith("sha256:")
    serving_ip = ipaddress.ip_address(running[-1].status.pod_ip)
    assert serving_ip in POD_NETWORK
    assert serving_ip != ipaddress.ip_address(result.pod.status.pod_ip)
    assert not created.spec.host_network

    _assert_staging_copy_removed(result)

    # The exact spec passes `restricted`, which the same check refuses without the
    # security contexts.
    restricted = make_namespace(core_api, "restricted")
    try:
        _restricted_dry_run(core_api, restricted, created)
        bare = copy.deepcopy(created)
        bare.spec.security_context = None
        bare.spec.containers[0].security_context = None
        with pytest.raises(ApiException) as refused:
            _restricted_dry_run(core_api, restricted, bare)
        assert refused.value.status == 403
        assert 'violates PodSecurity "restricted:latest"' in (
            json.loads(refused.value.body)["message"])
    finally:
        core_api.delete_namespace(restricted)


def test_model_that_fails_to_load_is_not_blessed_and_the_pod_deleted(
        core_api, local_images, store, pipeline_runner):
    # LOAD_ONLY: with examples and a request spec TFX reads the SavedModel's signatures in the
    # step before any server starts, and a corrupt saved_model.pb fails the step there.
    result = _run_step(core_api, local_images, store, pipeline_runner, "corrupt",
                       validation_spec=_validation_spec(CORRUPT_SECONDS),
                       model="corrupt-model", query=False)

    assert result.exit_code == 0, result.log[-3000:]
    assert result.blessed() == 0
    assert (result.case_host / "blessing" / "INFRA_NOT_BLESSED").exists()
    assert len(result.serving_pods()) == 1
    # The server's own log, which the step prints after the failed attempt, says why. Like
    # TF Serving, the stand-in keeps its ports closed and retries the load, so the attempt
    # ends at the deadline.
    assert re.search(rf"Loading servable: {{name: {MODEL_NAME} version: \d+}} failed: ",
                     result.log), result.log[-3000:]
    _assert_staging_copy_removed(result)


def test_validation_past_its_deadline_is_not_blessed_and_the_pod_deleted(
        core_api, local_images, store, pipeline_runner):
    result = _run_step(core_api, local_images, store, pipeline_runner, "deadline",
                       validation_spec=_validation_spec(1))

    assert result.exit_code == 0, result.log[-3000:]
    assert result.blessed() == 0
    assert (result.case_host / "blessing" / "INFRA_NOT_BLESSED").exists()
    assert len(result.serving_pods()) == 1
    assert "Consider increasing the value of ValidationSpec.max_loading_time_seconds" in (
        result.log)
    _assert_staging_copy_removed(result)


def test_service_account_without_the_role_fails_with_one_clear_line(
        core_api, local_images, store, roleless_account):
    result = _run_step(core_api, local_images, store, roleless_account, "no-role",
                       validation_spec=_validation_spec(LOADED_SECONDS))

    assert result.exit_code != 0
    assert result.serving_pods() == {}
    assert result.output is None
    assert not (result.case_host / "blessing" / "INFRA_NOT_BLESSED").exists()
    # One line, the log's last, names what is missing; no traceback buries it.
    lines = [line for line in result.log.splitlines() if "may not" in line]
    assert lines == [
        "error: the step's service account may not create "
        f"pods, get pods, delete pods, get pods/log in namespace {NAMESPACE}: bind it to a Role "
        "with pods create/get/list/watch/delete and pods/log get there (helm/kfp's "
        "pipeline-runner Role has them)"
    ], result.log[-3000:]
    assert result.log.rstrip().splitlines()[-1] == lines[0]
    assert "Traceback" not in result.log
    assert "Starting infra validation" not in result.log  # no attempt, so no retries
