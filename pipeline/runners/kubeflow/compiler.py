"""Compiles the pipeline for Kubeflow Pipelines 2.x (``kfp``) or Vertex AI Pipelines (``vertex``).

TFX 1.16's KubeflowV2DagRunner writes a PipelineJob JSON (``displayName``, ``pipelineSpec``,
``runtimeConfig``): Vertex takes it as is. Open-source KFP takes the ``pipelineSpec`` part
as a pipeline package, so for ``kfp`` that part is written as YAML with the pipeline root
as its default, adapted to what the open-source backend does differently from Vertex:

- the spec uses schema 2.1, the only form of constants the open-source backend resolves;
- every step runs ``pipeline.runners.kubeflow.step`` with its component's output definitions
  (the input definitions TFX already passes): it types artifacts as the component declares
  them, where the open-source driver leaves types out or adds outputs of its own, lets TFX
  executors use the launcher's local copies of artifacts, and runs ExampleGen's driver,
  which Vertex runs as ``lifecycle.preCacheCheck`` and the open-source backend ignores;
- the steps that read outside their inputs are never cached (KFP's cache key cannot see a
  change there): ExampleGen (new data files) and the baseline lookup (a new push);
- with ``volume_claim``, a second YAML document (KFP's platform spec) mounts the claim on
  every step, and its name and mount path reach the InfraValidator through the environment.

Compiling reads and writes only local files: component code travels in the image and is
referenced by module path, and no cloud credentials are needed.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_config_pb2
from tfx import v1 as tfx

from pipeline import images, node_ids
from pipeline.components.step_pod import MODEL_PVC_ENV, MODEL_PVC_MOUNT_PATH_ENV
from pipeline.config import CURATED_SCHEMA, PipelineConfig
from pipeline.errors import InputError
from pipeline.pipeline import create_pipeline
from pipeline.runners.kubeflow.step import OUTPUTS_SPEC_FLAG, PRE_CACHE_CHECK_FLAG
from pipeline.targets import COMPILED

# Where the pipeline image keeps this repository (docker/pipeline/Dockerfile), so files the
# package ships, like the curated schema, have a known path inside step containers.
IMAGE_SOURCE_ROOT = "/opt/tfx-kfp-gke"
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_ROOT}/{CURATED_SCHEMA.relative_to(CURATED_SCHEMA.parents[3])}"

STEP_COMMAND = ("python", "-m", "pipeline.runners.kubeflow.step")
# The only pre-cache check TFX compiles: file-based ExampleGen's span/fingerprint driver.
EXAMPLE_GEN_DRIVER = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"


class CompileError(InputError):
    """A compile request that cannot produce a usable spec; one line."""


def check_pinned_image(image: str) -> None:
    """Refuses image references that could change under a compiled spec."""
    if not images.is_pinned(image):
        raise CompileError(
            f"image {image!r} is not pinned: give a tag other than 'latest' or a digest"
        )


def _under(path: str, directory: str) -> bool:
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return posixpath.commonpath([path, directory]) == directory


def check_locations(config: PipelineConfig) -> None:
    """Refuses a pipeline root, data, hparams or serving location the steps cannot reach."""
    schemes = config.platform.pipeline_root_schemes
    if not config.pipeline_root.startswith(schemes):
        raise CompileError(
            f"pipeline root {config.pipeline_root!r}: {config.target} needs a "
            f"{' or '.join(schemes)} URI"
        )
    # KFP's importer records and downloads only object-store URIs (importer_launcher.go):
    # a plain path would fail at run time, after the steps before it.
    if config.hparams_uri is not None and not config.hparams_uri.startswith(schemes):
        raise CompileError(
            f"hparams uri {config.hparams_uri!r}: the {config.target} importer needs a "
            f"{' or '.join(schemes)} URI"
        )
    mount = config.volume_mount_path
    if config.volume_claim:
        if not config.platform.open_source_kfp:
            raise CompileError("volume claim: Vertex AI steps cannot mount a PersistentVolumeClaim")
        if not posixpath.isabs(mount) or posixpath.normpath(mount) == "/":
            raise CompileError(f"volume mount path {mount!r}: give an absolute directory, not /")
    for name, location in (
        ("data root", config.data_root),
        ("serving dir", config.serving_model_dir),
        ("inference data root", config.inference_data_root),
    ):
        if location is None or location.startswith("gs://"):
            continue
        if config.volume_claim and _under(location, mount):
            continue
        volume = f" or a path under the volume mount {mount}" if config.volume_claim else (
            " (or mount a volume claim and give a path under it)"
        )
        raise CompileError(f"{name} {location!r}: step pods cannot read it; give gs://...{volume}")


def step_resources(config: PipelineConfig) -> dict[str, Any]:
    """Requests and limits of every step container, in the spec's JSON form.

    Written in both of the spec's forms: Kubernetes quantities (read by open-source KFP
    2.x) and numeric vCPU/GB (read by Vertex AI).
    """
    gb_per_gib = 2**30 / 1e9
    return {
        "cpuRequest": config.step_cpu_request,
        "cpuLimit": config.step_cpu_limit,
        "memoryRequest": round(config.step_memory_request_gib * gb_per_gib, 3),
        "memoryLimit": round(config.step_memory_limit_gib * gb_per_gib, 3),
        "resourceCpuRequest": f"{config.step_cpu_request:g}",
        "resourceCpuLimit": f"{config.step_cpu_limit:g}",
        "resourceMemoryRequest": f"{config.step_memory_request_gib:g}Gi",
        "resourceMemoryLimit": f"{config.step_memory_limit_gib:g}Gi",
    }


def _pipeline_job(config: PipelineConfig, image: str) -> dict[str, Any]:
    open_source = config.platform.open_source_kfp
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image,
            default_commands=list(STEP_COMMAND) if open_source else None,
            # Open-source KFP resolves only schema 2.1 constants (``runtimeValue.constant``)
            # and sends only ``parameterValues``, which TFX reads when given the inputs spec
            # that 2.1 adds to every step's arguments.
            use_pipeline_spec_2_1=open_source,
        )
    )
    job = runner.run(create_pipeline(config), write_out=False)
    # Set here rather than per component: TFX's compiler drops per-component resources
    # for ExampleGen, and every step runs the same image with similar needs.
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["resources"] = step_resources(config)
    return job


def _adapt_to_open_source_kfp(spec: dict[str, Any], config: PipelineConfig) -> None:
    """Step command, ExampleGen's driver and caching, as the module docstring says."""
    executors = spec["deploymentSpec"]["executors"]
    components = spec["components"]
    outputs_by_label = {
        component["executorLabel"]: component.get("outputDefinitions", {})
        for component in components.values() if "executorLabel" in component
    }
    driven = set()
    for label, executor in executors.items():
        container = executor.get("container")
        if container is None:  # importers run inside the KFP backend
            continue
        container["args"] += [
            OUTPUTS_SPEC_FLAG, json.dumps(outputs_by_label[label], indent=2, sort_keys=True)
        ]
        lifecycle = container.pop("lifecycle", None)
        if lifecycle is not None:
            if lifecycle["preCacheCheck"]["command"][-1] != EXAMPLE_GEN_DRIVER:
                raise CompileError(f"{label}: unknown pre-cache check {lifecycle}")
            container["args"].append(PRE_CACHE_CHECK_FLAG)
            driven.add(label)
        if config.volume_claim:
            container["env"] = [
                {"name": MODEL_PVC_ENV, "value": config.volume_claim},
                {"name": MODEL_PVC_MOUNT_PATH_ENV, "value": config.volume_mount_path},
            ]
    for name, task in spec["root"]["dag"]["tasks"].items():
        executor_label = components[task["componentRef"]["name"]].get("executorLabel")
        if executor_label in driven or name == node_ids.LATEST_SERVED_MODEL:
            task["cachingOptions"] = {"enableCache": False}


def platform_spec(spec: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """KFP's platform spec mounting ``config.volume_claim`` on every container step.

    Built with kfp-kubernetes' own message, in the form its ``mount_pvc`` writes (the claim
    as a parameter, and again in the field older backends read).
    """
    mount = k8s_config_pb2.PvcMount(
        constant=config.volume_claim, mount_path=config.volume_mount_path
    )
    mount.pvc_name_parameter.runtime_value.constant.string_value = config.volume_claim
    executor_config = k8s_config_pb2.KubernetesExecutorConfig(pvc_mount=[mount])
    executors = {
        label: json_format.MessageToDict(executor_config)
        for label, executor in spec["deploymentSpec"]["executors"].items()
        if "container" in executor
    }
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def compile_pipeline(config: PipelineConfig, image: str, output: Path) -> Path:
    """Writes the ``config.target`` spec to ``output``; returns the path."""
    if config.platform.spec_format is None:
        raise CompileError(f"target must be one of {', '.join(COMPILED)}, got {config.target!r}")
    check_pinned_image(image)
    check_locations(config)
    job = _pipeline_job(config, image)
    output.parent.mkdir(parents=True, exist_ok=True)
    if config.platform.spec_format == "json":
        output.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
        return output
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = config.pipeline_root
    _adapt_to_open_source_kfp(spec, config)
    documents = [spec, platform_spec(spec, config)] if config.volume_claim else [spec]
    output.write_text(yaml.safe_dump_all(documents, sort_keys=True))
    return output
