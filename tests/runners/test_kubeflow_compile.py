"""The compiled Kubeflow Pipelines spec, checked as the KFP API server would receive it."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import cli, exit_codes, node_ids
from pipeline.components import step_pod
from pipeline.components.predictions_export import PredictionsCsv
from pipeline.config import PipelineConfig
from pipeline.runners.kubeflow import compiler

IMAGE = "europe-west4-docker.pkg.dev/demo/tfxkfp/pipeline:0.1.0"
GOLDEN = Path(__file__).parent / "golden"
# kind/minikube: KFP's in-cluster object store, and a claim for data and serving directory.
KIND = {
    "pipeline_root": "minio://mlpipeline/v2/artifacts",
    "data_root": "/tfx/data/social_network_ads",
    "serving_model_dir": "/tfx/serving/social_network_ads",
    "volume_claim": "tfx-store",
    "volume_mount_path": "/tfx",
}


def _config(target="kfp", **changes) -> PipelineConfig:
    settings = {
        "pipeline_root": "gs://demo-bucket/pipeline-root",
        "data_root": "gs://demo-bucket/data/social_network_ads",
        "serving_model_dir": "gs://demo-bucket/serving/social_network_ads",
        "schema_file": compiler.IMAGE_SCHEMA_FILE,
        "target": target,
    }
    return PipelineConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def kfp_spec_path(tmp_path_factory) -> Path:
    return compiler.compile_pipeline(
        _config(), IMAGE, tmp_path_factory.mktemp("spec") / "pipeline.yaml"
    )


@pytest.fixture(scope="module")
def kfp_spec(kfp_spec_path) -> dict:
    return yaml.safe_load(kfp_spec_path.read_text())


@pytest.fixture(scope="module")
def kind_spec_path(tmp_path_factory) -> Path:
    return compiler.compile_pipeline(
        _config(**KIND), IMAGE, tmp_path_factory.mktemp("spec") / "pipeline.yaml"
    )


def _task(spec: dict, name: str) -> dict:
    return spec["root"]["dag"]["tasks"][name]


def _executor(spec: dict, task: str) -> dict:
    label = spec["components"][_task(spec, task)["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def test_every_component_is_a_task_with_its_dependencies(kfp_spec, default_pipeline_node_ids):
    tasks = kfp_spec["root"]["dag"]["tasks"]
    # Open-source KFP cannot run the previous span's Resolver (pipeline.targets).
    assert set(tasks) == default_pipeline_node_ids - {node_ids.PREVIOUS_SPAN_STATISTICS}
    dependencies = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert dependencies["Transform"] == {"AnomaliesGate", "CsvExampleGen", "ImportSchemaGen"}
    assert {"Trainer", "LatestServedModel", "CsvExampleGen"} <= dependencies["Evaluator"]
    assert {"Trainer", "Evaluator", "InfraValidator"} <= dependencies["Pusher"]
    assert "Tuner" in dependencies["Trainer"]
    assert dependencies["CsvExampleGen"] == set()


def test_every_executor_runs_on_open_source_kfp(kfp_spec):
    for label, executor in kfp_spec["deploymentSpec"]["executors"].items():
        kinds = set(executor)
        assert kinds in ({"container"}, {"importer"}), (label, kinds)
    assert "resolver" not in json.dumps(kfp_spec["deploymentSpec"])
    assert "customJob" not in json.dumps(kfp_spec)


def test_every_container_is_pinned_and_has_requests_and_limits(kfp_spec):
    containers = [e["container"] for e in kfp_spec["deploymentSpec"]["executors"].values()]
    assert containers
    for container in containers:
        assert container["image"] == IMAGE
        resources = container["resources"]
        assert resources["resourceCpuRequest"] == "0.5"
        assert resources["resourceMemoryRequest"] == "2Gi"
        assert resources["resourceCpuLimit"] == "2"
        assert resources["resourceMemoryLimit"] == "4Gi"
        assert resources["memoryLimit"] == pytest.approx(4 * 2**30 / 1e9, abs=1e-3)


def test_infra_validator_step_carries_the_kubernetes_serving_spec(kfp_spec):
    executor = _executor(kfp_spec, "InfraValidator")["container"]
    assert any(arg.endswith("KubernetesInfraValidatorExecutor") for arg in executor["args"])
    parameters = _task(kfp_spec, "InfraValidator")["inputs"]["parameters"]
    serving_spec = json.loads(
        parameters["serving_spec"]["runtimeValue"]["constant"]
    )
    assert "kubernetes" in serving_spec
    assert serving_spec["tensorflow_serving"] == {"image_name": "tensorflow/serving",
                                                  "tags": ["2.16.1"]}


def test_the_infra_validator_can_start_a_mirror_of_tf_serving(tmp_path, monkeypatch):
    # A cluster that cannot pull tensorflow/serving (a private registry's mirror, the local
    # cluster's stand-in) names its own image; TFX's default would be tensorflow/serving.
    monkeypatch.setenv("TFXKFP_TF_SERVING_IMAGE", "registry.example/mirror/tf-serving")
    output = tmp_path / "p.yaml"
    assert cli.main(["compile", "--image", IMAGE, "--pipeline-root", "gs://b/root",
                     "--data-root", "gs://b/data", "--serving-dir", "gs://b/serving/m",
                     "--output", str(output), "--tf-serving-tag", "2.16.0"]) == 0
    parameters = _task(yaml.safe_load(output.read_text()), "InfraValidator")["inputs"]["parameters"]
    serving_spec = json.loads(parameters["serving_spec"]["runtimeValue"]["constant"])
    assert serving_spec["tensorflow_serving"] == {
        "image_name": "registry.example/mirror/tf-serving", "tags": ["2.16.0"]}


def test_the_baseline_comes_from_an_ordinary_step(kfp_spec):
    executor = _executor(kfp_spec, "LatestServedModel")["container"]
    assert any("LatestServedModel" in arg for arg in executor["args"])
    evaluator_inputs = _task(kfp_spec, "Evaluator")["inputs"]["artifacts"]
    assert evaluator_inputs["baseline_model"]["taskOutputArtifact"]["producerTask"] == (
        "LatestServedModel"
    )


def test_pipeline_root_and_in_image_schema(kfp_spec):
    assert kfp_spec["defaultPipelineRoot"] == "gs://demo-bucket/pipeline-root"
    parameters = _task(kfp_spec, "ImportSchemaGen")["inputs"]["parameters"]
    schema_file = parameters["schema_file"]["runtimeValue"]["constant"]
    assert schema_file == compiler.IMAGE_SCHEMA_FILE


@pytest.mark.parametrize("scenario", ["gke", "kind"])
def test_golden_spec(scenario, kfp_spec_path, kind_spec_path):
    """Catches unintended spec changes; regenerate with UPDATE_GOLDEN=1 after intended ones."""
    actual = {"gke": kfp_spec_path, "kind": kind_spec_path}[scenario].read_text()
    golden = GOLDEN / f"pipeline-kfp-{scenario}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(actual)
    assert actual == golden.read_text(), (
        f"compiled spec differs from {golden}; if intended, rerun with UPDATE_GOLDEN=1 and "
        "review the diff"
    )


def test_every_step_runs_the_step_entrypoint(kfp_spec):
    for executor in kfp_spec["deploymentSpec"]["executors"].values():
        if "container" in executor:
            assert executor["container"]["command"] == list(compiler.STEP_COMMAND)
            assert "lifecycle" not in executor["container"]  # ignored by open-source KFP


def test_every_step_gets_its_component_output_definitions(kfp_spec):
    """step.py types outputs from these, not from what KFP's driver sends (its point 1)."""
    for name, component in kfp_spec["components"].items():
        args = kfp_spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "container" not in args:
            continue
        args = args["container"]["args"]
        flag = args.index("--json_serialized_outputs_spec_args")
        declared = json.loads(args[flag + 1])
        assert declared == component.get("outputDefinitions", {}), name
        json_format.ParseDict(declared, pipeline_spec_pb2.ComponentOutputsSpec())


# Argo's rule for template and DAG task names (argo-workflows v3.7.3, workflow/validate/
# validate.go, workflowFieldNameFmt and workflowFieldMaxLength). KFP 2.16's compiler uses each
# task name and component name as they are, and adds "-driver" (argocompiler/dag.go, argo.go);
# the API server validates the workflow with Argo before it creates a run.
ARGO_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
ARGO_NAME_MAX = 128


@pytest.mark.parametrize("changes", [{}, {"hparams_uri": "gs://demo-bucket/hparams"}, KIND])
def test_task_and_component_names_are_valid_argo_names(changes, tmp_path):
    path = compiler.compile_pipeline(_config(**changes), IMAGE, tmp_path / "p.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    names = {*spec["root"]["dag"]["tasks"], *spec["components"]}
    assert names
    for name in names:
        for argo_name in (name, f"{name}-driver"):
            assert ARGO_NAME.fullmatch(argo_name), argo_name
            assert len(argo_name) <= ARGO_NAME_MAX, argo_name


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_every_artifact_title_names_a_class_tfx_can_import(target, tmp_path):
    """TFX's KFP v2 entrypoint imports an artifact's class from its schema title."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils
    from tfx.utils import import_utils

    path = compiler.compile_pipeline(_config(target), IMAGE, tmp_path / "p.out")
    text = path.read_text()
    spec = json.loads(text)["pipelineSpec"] if target == "vertex" else yaml.safe_load(text)
    types = [
        artifact["artifactType"]
        for component in spec["components"].values()
        for definitions in (component.get("inputDefinitions", {}),
                            component.get("outputDefinitions", {}))
        for artifact in definitions.get("artifacts", {}).values()
    ]
    classes = set()
    for artifact_type in types:
        message = json_format.ParseDict(artifact_type, pipeline_spec_pb2.ArtifactTypeSchema())
        classes.add(import_utils.import_class_by_path(utils._retrieve_class_path(message)))
    assert PredictionsCsv in classes


def test_example_gen_runs_its_driver(kfp_spec):
    assert "--pre_cache_check" in _executor(kfp_spec, "CsvExampleGen")["container"]["args"]
    assert "--pre_cache_check" not in _executor(kfp_spec, "Trainer")["container"]["args"]


def test_steps_reading_outside_their_inputs_are_never_cached(kfp_spec):
    for task in ("CsvExampleGen", "LatestServedModel"):
        assert _task(kfp_spec, task)["cachingOptions"] == {"enableCache": False}
    assert _task(kfp_spec, "Trainer")["cachingOptions"] == {"enableCache": True}


def test_the_gke_spec_has_no_platform_spec(kfp_spec_path):
    assert len(list(yaml.safe_load_all(kfp_spec_path.read_text()))) == 1


def test_kind_spec_mounts_the_claim_on_every_step(kind_spec_path):
    spec, platform = yaml.safe_load_all(kind_spec_path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert spec["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"
    containers = {label for label, executor in spec["deploymentSpec"]["executors"].items()
                  if "container" in executor}
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(mounts) == containers
    for label in containers:
        config = json_format.ParseDict(mounts[label], k8s_config_pb2.KubernetesExecutorConfig())
        [mount] = config.pvc_mount
        assert mount.mount_path == "/tfx"
        assert mount.constant == "tfx-store"
        assert mount.pvc_name_parameter.runtime_value.constant.string_value == "tfx-store"
        env = spec["deploymentSpec"]["executors"][label]["container"]["env"]
        assert {e["name"]: e["value"] for e in env} == {
            step_pod.MODEL_PVC_ENV: "tfx-store",
            step_pod.MODEL_PVC_MOUNT_PATH_ENV: "/tfx",
        }


@pytest.mark.parametrize(("changes", "message"), [
    ({"pipeline_root": "/var/pipeline-root"}, "pipeline root '/var/pipeline-root'"),
    ({"data_root": "/tfx/data"}, "data root '/tfx/data': step pods cannot read it"),
    ({**KIND, "serving_model_dir": "/models/x"}, "serving dir '/models/x'.*under the volume"),
    ({**KIND, "inference_data_root": "/tfxdata"}, "inference data root '/tfxdata'"),
    ({**KIND, "volume_mount_path": "tfx"}, "volume mount path 'tfx'"),
    # KFP's importer takes object-store URIs only (importer_launcher.go).
    ({**KIND, "hparams_uri": "/tfx/hparams"},
     "hparams uri '/tfx/hparams': the kfp importer needs a gs:// or minio:// or s3:// URI"),
])
def test_locations_step_pods_cannot_reach_are_refused(changes, message, tmp_path):
    with pytest.raises(compiler.CompileError, match=message):
        compiler.compile_pipeline(_config(**changes), IMAGE, tmp_path / "p.yaml")
    assert not (tmp_path / "p.yaml").exists()


def test_vertex_cannot_mount_a_claim(tmp_path):
    with pytest.raises(compiler.CompileError, match="Vertex AI steps cannot mount"):
        compiler.compile_pipeline(
            _config("vertex", volume_claim="tfx-store", volume_mount_path="/tfx",
                    data_root="/tfx/data"),
            IMAGE, tmp_path / "p.json",
        )
    with pytest.raises(compiler.CompileError, match="vertex needs a gs:// URI"):
        compiler.compile_pipeline(
            _config("vertex", pipeline_root="minio://mlpipeline/v2/artifacts"), IMAGE,
            tmp_path / "p.json",
        )


def test_vertex_target_keeps_tfx_resolver_and_in_process_infra_validation(tmp_path):
    path = compiler.compile_pipeline(_config("vertex"), IMAGE, tmp_path / "pipeline.json")
    job = json.loads(path.read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]
    assert baseline["producerTask"] == "latest_blessed_model_resolver-model-resolver"
    assert "LatestServedModel" not in tasks
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert "resolver" in executors["latest_blessed_model_resolver-model-resolver_executor"]
    assert "LocalInfraValidatorExecutor" in json.dumps(executors)
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://demo-bucket/pipeline-root"


def test_compiling_writes_nothing_but_the_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compiler.compile_pipeline(_config(**KIND), IMAGE, tmp_path / "spec.yaml")
    assert [path.name for path in tmp_path.iterdir()] == ["spec.yaml"]


@pytest.mark.parametrize("image", ["pipeline", "pipeline:latest", "registry:5000/pipeline",
                                   "pipeline:latest@sha256:" + "0" * 63])
def test_unpinned_images_are_refused(image):
    with pytest.raises(compiler.CompileError, match="not pinned"):
        compiler.check_pinned_image(image)


@pytest.mark.parametrize("image", ["registry:5000/pipeline:1.2", "pipeline@sha256:" + "a" * 64])
def test_pinned_images_are_accepted(image):
    compiler.check_pinned_image(image)


def test_cli_compile_exit_codes(tmp_path, capsys):
    common = ["compile", "--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
              "--serving-dir", "gs://b/serving/m"]
    output = tmp_path / "p.yaml"
    assert cli.main([*common, "--image", IMAGE, "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["pipelineInfo"]["name"] == "social-network-ads"
    assert cli.main([*common, "--image", "pipeline:latest"]) == exit_codes.INPUT
    assert "not pinned" in capsys.readouterr().err
    assert cli.main([*common, "--image", IMAGE, "--beam-runner", "dataflow"]) == exit_codes.INPUT
    assert "--dataflow-project" in capsys.readouterr().err


def test_cli_compile_takes_the_training_flags_run_takes(tmp_path):
    output = tmp_path / "p.yaml"
    assert cli.main([
        "compile", "--image", IMAGE, "--pipeline-root", "gs://b/root", "--data-root",
        "gs://b/data", "--serving-dir", "gs://b/serving/m", "--output", str(output),
        "--epochs", "3", "--keep-versions", "2", "--run-fn", "my_models.wide.run_fn",
        "--seed", "9",
    ]) == 0
    text = output.read_text()
    # The Trainer's, Tuner's and Pusher's custom_config constants, and the Trainer's run_fn.
    for setting in ('"epochs": 3', '"keep_versions": 2', '"seed": 9', "my_models.wide.run_fn"):
        assert setting in text, setting


def test_a_compiler_bug_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    """Only InputError means exit 2; any other error propagates with its traceback."""
    def broken(*_):
        raise ValueError("a bug in the compiler")

    monkeypatch.setattr(compiler, "compile_pipeline", broken)
    with pytest.raises(ValueError, match="a bug in the compiler"):
        cli.main(["compile", "--image", IMAGE, "--pipeline-root", "gs://b/root",
                  "--data-root", "gs://b/data", "--serving-dir", "gs://b/serving/m",
                  "--output", str(tmp_path / "p.yaml")])


def test_cli_dataflow_runner_args(tmp_path):
    output = tmp_path / "p.yaml"
    assert cli.main([
        "compile", "--image", IMAGE, "--pipeline-root", "gs://b/root", "--data-root",
        "gs://b/data", "--serving-dir", "gs://b/serving/m", "--output", str(output),
        "--beam-runner", "dataflow", "--dataflow-project", "demo", "--dataflow-region",
        "europe-west4", "--dataflow-temp-location", "gs://b/tmp",
    ]) == 0
    args = yaml.safe_load(output.read_text())["deploymentSpec"]["executors"][
        "Transform_executor"]["container"]["args"]
    assert "--runner=DataflowRunner" in args
    assert f"--sdk_container_image={IMAGE}" in args
