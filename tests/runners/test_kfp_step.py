"""The KFP step entrypoint runs real TFX executors on a ``minio://`` pipeline root.

Each step gets the executor input the KFP driver would build from the compiled kind spec
(parameters from the task, artifacts on ``minio://``) and the arguments of its container.
The launcher's part is played by the test directory: it holds the local mirror that KFP's
launcher downloads inputs into and uploads outputs from.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import PipelineConfig
from pipeline.data import staging, synthesize
from pipeline.runners import kfp_step, kubeflow

IMAGE = "registry.example/tfxkfp/pipeline:0.1.0"
ROOT = "minio://mlpipeline/v2/artifacts/social-network-ads/run-1"


@pytest.mark.parametrize(("uri", "local"), [
    ("minio://mlpipeline/v2/artifacts/x", "/mirror/minio/mlpipeline/v2/artifacts/x"),
    ("s3://bucket/key/y", "/mirror/s3/bucket/key/y"),
    ("gs://bucket/z", "gs://bucket/z"),
    ("/tfx/data", "/tfx/data"),
])
def test_uris_map_to_the_launcher_mirror_and_back(uri, local):
    assert kfp_step.to_local(uri, "/mirror") == local
    assert kfp_step.to_remote(local, "/mirror") == uri


def test_paths_outside_the_mirror_stay_as_they_are():
    assert kfp_step.to_remote("/mirror/minion/x", "/mirror") == "/mirror/minion/x"


@pytest.fixture(scope="module")
def kind(tmp_path_factory):
    """A kind-style spec compiled with the volume mounted at a test directory, and its data."""
    volume = tmp_path_factory.mktemp("volume")
    source = synthesize.write_csv(volume / "raw" / "data.csv", rows=60, seed=3)
    data = staging.stage(source, volume / "data").path.parent
    config = PipelineConfig(
        pipeline_root="minio://mlpipeline/v2/artifacts",
        data_root=str(data),
        serving_model_dir=str(volume / "serving" / "social_network_ads"),
        schema_file=kubeflow.IMAGE_SCHEMA_FILE,
        target="kfp",
        volume_claim="tfx-store",
        volume_mount_path=str(volume),
    )
    path = kubeflow.compile_pipeline(config, IMAGE, volume / "pipeline.yaml")
    spec, _ = yaml.safe_load_all(path.read_text())
    return spec


def _run(spec, task, inputs, outputs, work: Path, mirror: Path) -> dict:
    """Runs ``task``'s container args the way the KFP launcher would; its ExecutorOutput."""
    component = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    parameters = spec["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {})
    output_file = work / task / "output_metadata.json"
    executor_input = {
        "inputs": {
            # What the KFP driver sends: each task constant as a protobuf Value.
            "parameterValues": {
                name: value["runtimeValue"]["constant"] for name, value in parameters.items()
            },
            # Typed by the consuming component's input definition, as the driver does.
            "artifacts": {
                name: {"artifacts": [{
                    **artifact,
                    "type": component["inputDefinitions"]["artifacts"][name]["artifactType"],
                }]}
                for name, artifact in inputs.items()
            },
        },
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{
                    "name": f"{task}-{name}",
                    "type": component["outputDefinitions"]["artifacts"][name]["artifactType"],
                    "uri": f"{ROOT}/{task}/{name}",
                }]}
                for name in outputs
            },
            "outputFile": str(output_file),
        },
    }
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    kfp_step.run_step(args, mirror_root=str(mirror))
    return json.loads(output_file.read_text())


def test_example_gen_then_statistics_gen_on_a_minio_root(kind, tmp_path):
    mirror = tmp_path / "mirror"
    examples_output = _run(kind, "CsvExampleGen", {}, ["examples"], tmp_path, mirror)

    [examples] = examples_output["artifacts"]["examples"]["artifacts"]
    # The launcher records and uploads what the executor output says: the object-store URI.
    assert examples["uri"] == f"{ROOT}/CsvExampleGen/examples"
    local = mirror / "minio" / "mlpipeline/v2/artifacts/social-network-ads/run-1"
    splits = sorted(p.name for p in (local / "CsvExampleGen" / "examples").iterdir())
    assert splits == ["Split-eval", "Split-train"]
    # ExampleGen's driver ran: span and input fingerprint are on the artifact (the driver
    # records the span as a custom property, as on Vertex).
    assert examples["metadata"]["custom:span"] == 0
    assert examples["metadata"]["input_fingerprint"].startswith("split:single_split,num_files:1")

    # The next step gets the artifact as the KFP driver passes it on, under its remote URI;
    # the launcher has downloaded it into the mirror, where it already is here.
    statistics_output = _run(
        kind, "StatisticsGen", {"examples": examples}, ["statistics"], tmp_path, mirror
    )
    [statistics] = statistics_output["artifacts"]["statistics"]["artifacts"]
    assert statistics["uri"] == f"{ROOT}/StatisticsGen/statistics"
    for split in ("Split-train", "Split-eval"):
        assert (local / "StatisticsGen" / "statistics" / split / "FeatureStats.pb").stat().st_size


def test_the_step_command_starts_under_absl_and_parses_its_own_flags():
    """The command every compiled step runs, as a process: absl's app.run must let it start.

    run_step alone never goes through app.run, which refused to start before its FLAGS were
    parsed: every step on a real cluster died there.
    """
    started = subprocess.run([sys.executable, "-m", "pipeline.runners.kfp_step"],
                             capture_output=True, text=True, timeout=300)
    assert "FLAGS must be parsed" not in started.stderr
    assert started.returncode == 2, started.stderr
    assert "required: --json_serialized_invocation_args" in started.stderr.splitlines()[-1]
