"""The compiled Kubeflow Pipelines spec, checked as the KFP API server would receive it."""

import json
import os
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline.config import PipelineConfig
from pipeline.runners import kubeflow

IMAGE = "europe-west4-docker.pkg.dev/demo/tfxkfp/pipeline:0.1.0"
GOLDEN = Path(__file__).parent / "golden" / "pipeline-kfp.yaml"
COMPONENTS = {
    "CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
    "AnomaliesGate", "Transform", "Tuner", "Trainer", "latest_served_model", "Evaluator",
    "InfraValidator", "Pusher", "BulkInferrer", "PredictionsExport",
}


def _config(target="kfp", **changes) -> PipelineConfig:
    return PipelineConfig(
        pipeline_root="gs://demo-bucket/pipeline-root",
        data_root="gs://demo-bucket/data/social_network_ads",
        serving_model_dir="gs://demo-bucket/serving/social_network_ads",
        schema_file=kubeflow.IMAGE_SCHEMA_FILE,
        target=target,
        **changes,
    )


@pytest.fixture(scope="module")
def kfp_spec_path(tmp_path_factory) -> Path:
    return kubeflow.compile_pipeline(
        _config(), IMAGE, tmp_path_factory.mktemp("spec") / "pipeline.yaml"
    )


@pytest.fixture(scope="module")
def kfp_spec(kfp_spec_path) -> dict:
    return yaml.safe_load(kfp_spec_path.read_text())


def _task(spec: dict, name: str) -> dict:
    return spec["root"]["dag"]["tasks"][name]


def _executor(spec: dict, task: str) -> dict:
    label = spec["components"][_task(spec, task)["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def test_every_component_is_a_task_with_its_dependencies(kfp_spec):
    tasks = kfp_spec["root"]["dag"]["tasks"]
    assert set(tasks) == COMPONENTS
    dependencies = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert dependencies["Transform"] == {"AnomaliesGate", "CsvExampleGen", "ImportSchemaGen"}
    assert {"Trainer", "latest_served_model", "CsvExampleGen"} <= dependencies["Evaluator"]
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
        parameters["serving_spec"]["runtimeValue"]["constantValue"]["stringValue"]
    )
    assert "kubernetes" in serving_spec
    assert serving_spec["tensorflow_serving"]["tags"] == ["2.16.1"]


def test_the_baseline_comes_from_an_ordinary_step(kfp_spec):
    executor = _executor(kfp_spec, "latest_served_model")["container"]
    assert any("LatestServedModel" in arg for arg in executor["args"])
    evaluator_inputs = _task(kfp_spec, "Evaluator")["inputs"]["artifacts"]
    assert evaluator_inputs["baseline_model"]["taskOutputArtifact"]["producerTask"] == (
        "latest_served_model"
    )


def test_pipeline_root_and_in_image_schema(kfp_spec):
    assert kfp_spec["defaultPipelineRoot"] == "gs://demo-bucket/pipeline-root"
    parameters = _task(kfp_spec, "ImportSchemaGen")["inputs"]["parameters"]
    schema_file = parameters["schema_file"]["runtimeValue"]["constantValue"]["stringValue"]
    assert schema_file == kubeflow.IMAGE_SCHEMA_FILE


def test_golden_spec(kfp_spec_path):
    """Catches unintended spec changes; regenerate with UPDATE_GOLDEN=1 after intended ones."""
    actual = kfp_spec_path.read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(actual)
    assert actual == GOLDEN.read_text(), (
        "compiled spec differs from tests/runners/golden/pipeline-kfp.yaml; if intended, "
        "rerun with UPDATE_GOLDEN=1 and review the diff"
    )


def test_vertex_target_keeps_tfx_resolver_and_in_process_infra_validation(tmp_path):
    path = kubeflow.compile_pipeline(_config("vertex"), IMAGE, tmp_path / "pipeline.json")
    job = json.loads(path.read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]
    assert baseline["producerTask"] == "latest_blessed_model_resolver-model-resolver"
    assert "latest_served_model" not in tasks
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert "resolver" in executors["latest_blessed_model_resolver-model-resolver_executor"]
    assert "LocalInfraValidatorExecutor" in json.dumps(executors)
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://demo-bucket/pipeline-root"


def test_compiling_writes_nothing_to_the_pipeline_root(tmp_path):
    root = tmp_path / "root"
    config = PipelineConfig(pipeline_root=str(root), data_root="/data",
                            serving_model_dir="/models/x", target="kfp")
    kubeflow.compile_pipeline(config, IMAGE, tmp_path / "spec.yaml")
    assert not root.exists()


@pytest.mark.parametrize("image", ["pipeline", "pipeline:latest", "registry:5000/pipeline",
                                   "pipeline:latest@sha256:" + "0" * 63])
def test_unpinned_images_are_refused(image):
    with pytest.raises(kubeflow.CompileError, match="not pinned"):
        kubeflow.check_pinned_image(image)


@pytest.mark.parametrize("image", ["registry:5000/pipeline:1.2", "pipeline@sha256:" + "a" * 64])
def test_pinned_images_are_accepted(image):
    kubeflow.check_pinned_image(image)


def test_cli_compile_exit_codes(tmp_path, capsys):
    common = ["compile", "--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
              "--serving-dir", "gs://b/serving/m"]
    output = tmp_path / "p.yaml"
    assert cli.main([*common, "--image", IMAGE, "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["pipelineInfo"]["name"] == "social-network-ads"
    assert cli.main([*common, "--image", "pipeline:latest"]) == cli.EXIT_INPUT
    assert "not pinned" in capsys.readouterr().err
    assert cli.main([*common, "--image", IMAGE, "--beam-runner", "dataflow"]) == cli.EXIT_INPUT
    assert "--dataflow-project" in capsys.readouterr().err


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
