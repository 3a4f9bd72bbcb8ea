"""InfraValidator's Kubernetes flavour: the component, and its executor run end to end.

The executor runs TFX's validation against fake_kubernetes' stand-in API server, with a KFP v2
step's environment; tests/cluster runs it in a step pod on a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfx import v1 as tfx
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from fake_kubernetes import NAMESPACE, STEP_POD, TAG, FakeApiServer, core_api, serving_spec
from pipeline.components import kubernetes_infra_validator as kiv
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.step_pod import ModelVolume


def test_component_is_infra_validator_with_the_kubernetes_executor():
    component = kiv.KubernetesInfraValidator(
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        serving_spec=serving_spec(),
    )
    assert component.executor_spec.executor_class is kiv.KubernetesInfraValidatorExecutor
    assert isinstance(component.spec, standard_component_specs.InfraValidatorSpec)
    assert "blessing" in component.outputs


def test_kubeflow_v2_compiler_runs_the_kubernetes_executor(tmp_path):
    # TFX's KFP v2 compiler refuses tfx.components.InfraValidator and its subclasses.
    model = tfx.dsl.Importer(
        source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model
    ).with_id("model")
    validator = kiv.KubernetesInfraValidator(
        model=model.outputs["result"], serving_spec=serving_spec()
    )
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="pipeline:dev"),
        output_dir=str(tmp_path), output_filename="pipeline.json",
    ).run(tfx.dsl.Pipeline(pipeline_name="p", pipeline_root="gs://bucket/root",
                           components=[model, validator]))
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    container = spec["deploymentSpec"]["executors"]["KubernetesInfraValidator_executor"]
    assert container["container"]["args"][:2] == [
        "--executor_class_path",
        "pipeline.components.kubernetes_infra_validator.KubernetesInfraValidatorExecutor",
    ]


class _Executor(kiv.KubernetesInfraValidatorExecutor):
    """The executor, connected to the fake API server instead of a cluster."""

    server: FakeApiServer

    def _connect(self):
        return core_api(self.server)


def _run_executor(tmp_path: Path, server: FakeApiServer, spec, max_loading_seconds=5):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    (tmp_path / "model" / "Format-Serving").mkdir(parents=True)
    (tmp_path / "model" / "Format-Serving" / "saved_model.pb").write_bytes(b"graph")
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    (tmp_path / "blessing").mkdir()
    executor = _Executor()
    executor.server = server
    executor.Do(
        {standard_component_specs.MODEL_KEY: [model]},
        {standard_component_specs.BLESSING_KEY: [blessing]},
        {
            standard_component_specs.SERVING_SPEC_KEY: proto_utils.proto_to_json(spec),
            standard_component_specs.VALIDATION_SPEC_KEY: proto_utils.proto_to_json(
                infra_validator_pb2.ValidationSpec(
                    max_loading_time_seconds=max_loading_seconds, num_tries=2)
            ),
        },
    )
    return blessing


@pytest.fixture
def step_environment(monkeypatch, tmp_path):
    """A KFP v2 step's environment with a claim mounted at tmp_path/volume.

    The artifacts are outside the claim, as in the KFP launcher's local copy of the object
    store on kind/minikube.
    """
    monkeypatch.setenv("KFP_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("KFP_POD_NAME", STEP_POD.name)
    monkeypatch.setenv("KFP_POD_UID", STEP_POD.uid)
    monkeypatch.setenv("TFXKFP_MODEL_PVC", "tfx-store")
    monkeypatch.setenv("TFXKFP_MODEL_PVC_MOUNT_PATH", str(tmp_path / "volume"))


def test_executor_stages_the_model_where_the_serving_pod_reads_it(tmp_path, step_environment):
    staged = []

    def model_in_serving_layout(pod):
        base_path = pod["spec"]["containers"][0]["args"][-1].removeprefix("--model_base_path=")
        staged.extend(str(path.relative_to(base_path)) for path in Path(base_path).rglob("*.pb"))

    server = FakeApiServer(phases=["Pending", "Failed"], on_create=model_in_serving_layout)
    blessing = _run_executor(tmp_path, server, serving_spec())

    assert len(server.created) == 2  # one pod per attempt
    assert server.pods == {}  # every one deleted
    assert len(server.log_queries) == 2  # the server's log read after each failure
    [version] = {path.split("/")[0] for path in staged}
    assert staged == [f"{version}/saved_model.pb"] * 2
    base_path = server.created[0]["spec"]["containers"][0]["args"][-1]
    staging = tmp_path / "volume" / ".infra-validation" / STEP_POD.name
    assert base_path == f"--model_base_path={staging}/social_network_ads"
    assert server.created[0]["spec"]["volumes"][1]["persistentVolumeClaim"] == {
        "claimName": "tfx-store", "readOnly": True}
    assert (Path(blessing.uri) / "INFRA_NOT_BLESSED").exists()
    assert blessing.get_int_custom_property("blessed") == 0
    assert not staging.exists()  # the copy is removed after validation


def test_staging_is_beside_a_gcs_blessing_and_needs_no_claim():
    assert kiv.staging_dir("gs://b/root/blessing", None, "step-1") == (
        "gs://b/root/blessing/.serving-model"
    )
    volume = ModelVolume(claim_name="tfx-store", mount_path="/tfx")
    assert kiv.staging_dir("/minio/mlpipeline/v2/artifacts/r/blessing", volume, "step-1") == (
        "/tfx/.infra-validation/step-1"
    )


@pytest.mark.parametrize("spec, max_loading_seconds, message", [
    (infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TAG]),
        local_docker=infra_validator_pb2.LocalDockerConfig()), 5, "needs ServingSpec.kubernetes"),
    (infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(),
        kubernetes=infra_validator_pb2.KubernetesConfig()), 5, "no tag or digest"),
    (serving_spec(tag="latest"), 5, "not pinned"),
    (serving_spec(active_deadline_seconds=60), 60, "must exceed max_loading_time_seconds"),
])
def test_executor_refuses_bad_configuration_before_any_pod(
        tmp_path, step_environment, spec, max_loading_seconds, message):
    server = FakeApiServer()
    with pytest.raises(KubernetesServingError, match=message):
        _run_executor(tmp_path, server, spec, max_loading_seconds)
    assert server.requests == []


def test_executor_refuses_a_pipeline_root_the_serving_pod_cannot_read(
        tmp_path, step_environment, monkeypatch):
    monkeypatch.delenv("TFXKFP_MODEL_PVC")
    monkeypatch.delenv("TFXKFP_MODEL_PVC_MOUNT_PATH")
    server = FakeApiServer()
    with pytest.raises(KubernetesServingError, match="TF Serving cannot read"):
        _run_executor(tmp_path, server, serving_spec())
    assert server.requests == []


def test_executor_without_the_role_fails_once_naming_what_is_missing(tmp_path, step_environment):
    # Seen on a real cluster: without this check the 403 of the pod create was retried as a
    # failed validation num_tries times and the step ended "not blessed".
    server = FakeApiServer(denied=frozenset({"create pods", "get pods/log"}))
    with pytest.raises(KubernetesServingError) as raised:
        _run_executor(tmp_path, server, serving_spec())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"the step's service account may not create pods, get pods/log in namespace {NAMESPACE}: "
        "bind it to a Role with pods create/get/list/watch/delete and pods/log get there")
    assert server.created == []
    assert not (tmp_path / "blessing" / "INFRA_NOT_BLESSED").exists()


def test_executor_goes_on_when_the_cluster_answers_no_access_review(tmp_path, step_environment):
    server = FakeApiServer(phases=["Failed"], access_review_error=403)
    blessing = _run_executor(tmp_path, server, serving_spec())
    assert len(server.created) == 2
    assert blessing.get_int_custom_property("blessed") == 0
