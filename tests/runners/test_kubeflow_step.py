"""The KFP step entrypoint runs real TFX executors on the executor input KFP 2.16 sends.

Each step gets the executor input that KFP 2.16.1's driver builds (backend/src/v2/driver/
driver.go, provisionOutputs; metadata/client.go, GetOutputArtifactsByExecutionId and
ToRuntimeArtifact; metadata/converter.go, toRuntimeArtifact; component/launcher_v2.go,
RecordArtifact's custom properties) and the arguments of its compiled container. The
launcher's part is played by the test directory: it holds the local mirror that KFP's
launcher downloads inputs into and uploads outputs from.
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import PipelineConfig
from pipeline.data import staging, synthesize
from pipeline.runners.kubeflow import compiler, step

IMAGE = "registry.example/tfxkfp/pipeline:0.1.0"
ROOT = "minio://mlpipeline/v2/artifacts/social-network-ads/run-1"


@pytest.mark.parametrize(("uri", "local"), [
    ("minio://mlpipeline/v2/artifacts/x", "/mirror/minio/mlpipeline/v2/artifacts/x"),
    ("s3://bucket/key/y", "/mirror/s3/bucket/key/y"),
    ("gs://bucket/z", "gs://bucket/z"),
    ("/tfx/data", "/tfx/data"),
])
def test_uris_map_to_the_launcher_mirror_and_back(uri, local):
    assert step.to_local(uri, "/mirror") == local
    assert step.to_remote(local, "/mirror") == uri


def test_paths_outside_the_mirror_stay_as_they_are():
    assert step.to_remote("/mirror/minion/x", "/mirror") == "/mirror/minion/x"


def _compiled(volume: Path, pipeline_root: str) -> dict:
    """A kind-style spec compiled with the volume mounted at a test directory, and its data."""
    source = synthesize.write_csv(volume / "raw" / "data.csv", rows=60, seed=3)
    data = staging.stage(source, volume / "data").path.parent
    config = PipelineConfig(
        pipeline_root=pipeline_root,
        data_root=str(data),
        serving_model_dir=str(volume / "serving" / "social_network_ads"),
        schema_file=compiler.IMAGE_SCHEMA_FILE,
        target="kfp",
        volume_claim="tfx-store",
        volume_mount_path=str(volume),
    )
    path = compiler.compile_pipeline(config, IMAGE, volume / "pipeline.yaml")
    spec, _ = yaml.safe_load_all(path.read_text())
    return spec


@pytest.fixture(scope="module")
def kind(tmp_path_factory):
    return _compiled(tmp_path_factory.mktemp("volume"), "minio://mlpipeline/v2/artifacts")


_mlmd_ids = itertools.count(7)


def recorded(output_name: str, artifact: dict, root: str) -> dict:
    """An output artifact as the next task's driver reads it back from ML Metadata.

    The launcher records the executor output's metadata as custom properties and adds
    ``display_name`` and ``store_session_info``; the driver names the artifact by its ML
    Metadata id and sends an empty instance schema as its type.
    """
    session = {"Provider": root.split(":", 1)[0], "Params": {"fromEnv": "true"}}
    return {
        "name": str(next(_mlmd_ids)),
        "uri": artifact["uri"],
        "type": {"instanceSchema": ""},
        "metadata": {
            **artifact.get("metadata", {}),
            "display_name": output_name,
            "store_session_info": json.dumps(session),
        },
    }


def driver_executor_input(spec, task, inputs, root: str, mirror: Path) -> dict:
    """The executor input KFP 2.16.1's driver builds for ``task``, logs published."""
    component = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    parameters = spec["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {})
    task_root = f"{root}/{task}/salt-1"
    outputs = {
        name: definition["artifactType"]
        for name, definition in component.get("outputDefinitions", {})
        .get("artifacts", {}).items()
    }
    outputs["executor-logs"] = {"schemaTitle": "system.Artifact"}
    return {
        "inputs": {
            # Each task constant as a protobuf Value.
            "parameterValues": {
                name: value["runtimeValue"]["constant"] for name, value in parameters.items()
            },
            "artifacts": {name: {"artifacts": [artifact]} for name, artifact in inputs.items()},
        },
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{"name": name, "uri": f"{task_root}/{name}",
                                      "type": artifact_type}]}
                for name, artifact_type in outputs.items()
            },
            # Under the launcher's local copy of the task root.
            "outputFile": str(step.to_local(f"{task_root}/output_metadata.json",
                                                str(mirror))),
        },
    }


def _args(spec, task, executor_input) -> list[str]:
    component = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    return [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]


def _run(spec, task, inputs, root: str, mirror: Path) -> dict:
    """Runs ``task``'s container args as the KFP launcher would; its ExecutorOutput."""
    executor_input = driver_executor_input(spec, task, inputs, root, mirror)
    # The launcher opens the log file before the step starts (launcher_v2.go, getLogWriter).
    logs = step.to_local(
        executor_input["outputs"]["artifacts"]["executor-logs"]["artifacts"][0]["uri"],
        str(mirror),
    )
    Path(logs).parent.mkdir(parents=True, exist_ok=True)
    Path(logs).touch()
    step.run_step(_args(spec, task, executor_input), mirror_root=str(mirror))
    return json.loads(Path(executor_input["outputs"]["outputFile"]).read_text())


def _example_gen_then_statistics_gen(spec, root: str, mirror: Path) -> None:
    examples_output = _run(spec, "CsvExampleGen", {}, root, mirror)

    # The executor reports only what the component declares; the logs are the launcher's.
    assert set(examples_output["artifacts"]) == {"examples"}
    [examples] = examples_output["artifacts"]["examples"]["artifacts"]
    # The launcher records and uploads what the executor output says: the object-store URI.
    assert examples["uri"] == f"{root}/CsvExampleGen/salt-1/examples"
    local = Path(step.to_local(root, str(mirror)))
    splits = sorted(p.name for p in (local / "CsvExampleGen/salt-1/examples").iterdir())
    assert splits == ["Split-eval", "Split-train"]
    # ExampleGen's driver ran: span and input fingerprint are on the artifact (the driver
    # records the span as a custom property, as on Vertex).
    assert examples["metadata"]["custom:span"] == 0
    assert examples["metadata"]["input_fingerprint"].startswith("split:single_split,num_files:1")

    # The next step gets the artifact back from ML Metadata, untyped; the launcher has
    # downloaded it into the mirror, where it already is here.
    statistics_output = _run(
        spec, "StatisticsGen", {"examples": recorded("examples", examples, root)}, root, mirror
    )
    [statistics] = statistics_output["artifacts"]["statistics"]["artifacts"]
    assert statistics["uri"] == f"{root}/StatisticsGen/salt-1/statistics"
    for split in ("Split-train", "Split-eval"):
        stats = local / "StatisticsGen/salt-1/statistics" / split / "FeatureStats.pb"
        assert stats.stat().st_size


def test_example_gen_then_statistics_gen_on_a_minio_root(kind, tmp_path):
    root = "minio://mlpipeline/v2/artifacts/social-network-ads/run-1"
    _example_gen_then_statistics_gen(kind, root, tmp_path / "mirror")


def test_the_step_command_starts_under_absl_and_parses_its_own_flags():
    """The command every compiled step runs, as a process: absl's app.run must let it start.

    run_step alone never goes through app.run, which refused to start before its FLAGS were
    parsed: every step on a real cluster died there.
    """
    started = subprocess.run([sys.executable, "-m", "pipeline.runners.kubeflow.step"],
                             capture_output=True, text=True, timeout=300)
    assert "FLAGS must be parsed" not in started.stderr
    assert started.returncode == 2, started.stderr
    assert "required: --json_serialized_invocation_args" in started.stderr.splitlines()[-1]


def test_a_crash_in_interpreter_teardown_does_not_fail_a_finished_step(kind, tmp_path):
    """Some TFX executors' native libraries crash while the interpreter shuts down ("pure
    virtual method called"), after the outputs are written; KFP would record the task as
    failed. Here an exit handler aborts the process the same way."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import atexit, os\natexit.register(os.abort)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
    )}
    teardown = subprocess.run([sys.executable, "-c", "pass"], env=env, timeout=60)
    assert teardown.returncode < 0  # the hook does crash a process that exits normally

    # Plain paths as URIs: the subprocess has no test mirror, and its outputs stay local.
    executor_input = driver_executor_input(
        kind, "CsvExampleGen", {}, str(tmp_path / "root"), tmp_path / "mirror"
    )
    finished = subprocess.run(
        [sys.executable, "-m", "pipeline.runners.kubeflow.step",
         *_args(kind, "CsvExampleGen", executor_input)],
        env=env, capture_output=True, text=True, timeout=600,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    output = json.loads(Path(executor_input["outputs"]["outputFile"]).read_text())
    [examples] = output["artifacts"]["examples"]["artifacts"]
    assert sorted(p.name for p in Path(examples["uri"]).iterdir()) == ["Split-eval", "Split-train"]
