"""Compiles the pipeline for Kubeflow Pipelines 2.x (``kfp``) or Vertex AI Pipelines (``vertex``).

TFX 1.16's KubeflowV2DagRunner writes a PipelineJob JSON (``displayName``, ``pipelineSpec``,
``runtimeConfig``): Vertex takes it as is. Open-source KFP takes the ``pipelineSpec`` part
as a pipeline package, so for ``kfp`` that part is written as YAML with the pipeline root
as its default. Compiling reads and writes only local files: component code travels in the
image and is referenced by module path, and no cloud credentials are needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from tfx import v1 as tfx

from pipeline import images
from pipeline.config import CURATED_SCHEMA, PipelineConfig
from pipeline.pipeline import create_pipeline

# Where the pipeline image keeps this repository (docker/pipeline/Dockerfile), so files the
# package ships, like the curated schema, have a known path inside step containers.
IMAGE_SOURCE_ROOT = "/opt/tfx-kfp-gke"
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_ROOT}/{CURATED_SCHEMA.relative_to(CURATED_SCHEMA.parents[2])}"



class CompileError(ValueError):
    """A compile request that cannot produce a usable spec; one line."""


def check_pinned_image(image: str) -> None:
    """Refuses image references that could change under a compiled spec."""
    if not images.is_pinned(image):
        raise CompileError(
            f"image {image!r} is not pinned: give a tag other than 'latest' or a digest"
        )


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
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image)
    )
    job = runner.run(create_pipeline(config), write_out=False)
    # Set here rather than per component: TFX's compiler drops per-component resources
    # for ExampleGen, and every step runs the same image with similar needs.
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["resources"] = step_resources(config)
    return job


def compile_pipeline(config: PipelineConfig, image: str, output: Path) -> Path:
    """Writes the ``config.target`` spec to ``output``; returns the path."""
    if config.target not in ("kfp", "vertex"):
        raise CompileError(f"target must be kfp or vertex, got {config.target!r}")
    check_pinned_image(image)
    job = _pipeline_job(config, image)
    output.parent.mkdir(parents=True, exist_ok=True)
    if config.target == "vertex":
        output.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
        return output
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = config.pipeline_root
    output.write_text(yaml.safe_dump(spec, sort_keys=True))
    return output
