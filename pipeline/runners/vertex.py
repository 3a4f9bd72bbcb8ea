"""Submits the compiled PipelineJob (``tfxkfp compile --target vertex``) to Vertex AI Pipelines.

Vertex runs the same pipeline IR as open-source KFP, but through google-cloud-aiplatform's
``PipelineJob`` and Google credentials rather than a KFP host and bearer token. Inputs are
checked, and parameters typed, with the same rules and errors as for KFP
(``runners/kubeflow/spec_file.py``); the keyword arguments for ``PipelineJob`` come from a pure
function, so what would be sent can be checked without a Google project.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud import aiplatform

from pipeline.errors import InputError
from pipeline.runners.kubeflow.errors import KfpError, RunFailedError, SpecError, one_line
from pipeline.runners.kubeflow.spec_file import check_pipeline_spec, typed_params

_SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
_RESOURCE_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/pipelineJobs/(?P<job>[^/]+)$"
)


class VertexError(KfpError):
    """Vertex AI (or Google auth) refused the job; one line naming project and region."""


def _load_pipeline_job(spec_path: str | Path) -> dict[str, Any]:
    """Reads a PipelineJob JSON, or a bare PipelineSpec (JSON or YAML) as aiplatform allows.

    Checked here so a bad file is an input error before any credentials are looked up.
    """
    path = Path(spec_path)
    try:
        document = yaml.safe_load(path.read_text())  # JSON is YAML, as aiplatform reads it
    except FileNotFoundError:
        raise SpecError(f"{path}: no such pipeline spec file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SpecError(f"{path}: cannot read the pipeline job: {one_line(error)}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{path}: not a pipeline job (expected a JSON object)")
    job = document if "pipelineSpec" in document else {"pipelineSpec": document}
    if not isinstance(job["pipelineSpec"], dict):
        raise SpecError(f"{path}: pipelineSpec is not an object")
    check_pipeline_spec(job["pipelineSpec"], path)
    return job


def pipeline_job_kwargs(
    spec_path: str | Path,
    *,
    project: str,
    region: str,
    pipeline_root: str | None = None,
    params: dict[str, str] | None = None,
    enable_caching: bool | None = None,
    credentials: auth_credentials.Credentials | None = None,
) -> dict[str, Any]:
    """The ``aiplatform.PipelineJob`` keyword arguments for a compiled spec.

    The display name is the compiled one (TFX sets it to the pipeline name). Without
    ``pipeline_root`` aiplatform keeps the compiled root (``defaultPipelineRoot`` or
    ``runtimeConfig.gcsOutputDirectory``).
    """
    if not project.strip() or not region.strip():
        raise InputError("Vertex AI needs a project and a region")
    if pipeline_root is not None and not pipeline_root.startswith("gs://"):
        raise InputError(f"pipeline root {pipeline_root!r} is not a gs:// path, as Vertex AI needs")
    job = _load_pipeline_job(spec_path)
    spec = job["pipelineSpec"]
    return {
        "display_name": job.get("displayName") or spec["pipelineInfo"]["name"],
        "template_path": str(spec_path),
        "pipeline_root": pipeline_root,
        "parameter_values": typed_params(spec, params or {}, spec_path),
        "enable_caching": enable_caching,
        "project": project,
        "location": region,
        "credentials": credentials,
    }


def submit_vertex(
    spec_path: str | Path,
    *,
    project: str,
    region: str,
    pipeline_root: str | None = None,
    params: dict[str, str] | None = None,
    service_account: str | None = None,
    experiment: str | None = None,
    enable_caching: bool | None = None,
    wait: bool = False,
    credentials: auth_credentials.Credentials | None = None,
) -> str:
    """Creates a Vertex AI pipeline job; returns its Cloud console URL.

    Without ``credentials`` aiplatform uses Application Default Credentials. With ``wait``
    the job is followed (by aiplatform, which logs its state) until it ends; anything but
    SUCCEEDED raises ``RunFailedError``.
    """
    kwargs = pipeline_job_kwargs(
        spec_path, project=project, region=region, pipeline_root=pipeline_root,
        params=params, enable_caching=enable_caching, credentials=credentials,
    )
    where = f"Vertex AI ({project}, {region})"
    with _google_errors(where, "prepare the pipeline job"):
        try:
            job = aiplatform.PipelineJob(**kwargs)
        except ValueError as error:  # e.g. an unsupported region, a job id Vertex refuses
            raise InputError(f"{spec_path}: {where} cannot take it: {one_line(error)}") from None
    with _google_errors(where, "create the pipeline job"):
        try:
            job.submit(service_account=service_account, experiment=experiment)
        except (RuntimeError, ValueError) as error:  # how aiplatform refuses the experiment
            cause = f" ({one_line(error.__cause__)})" if error.__cause__ else ""
            raise VertexError(f"{where}: {one_line(error)}{cause}") from None
    url = console_url(job.resource_name)
    if wait:
        # wait() raises a bare RuntimeError for FAILED and CANCELLED; the state says which.
        with _google_errors(where, f"report pipeline job {job.job_id}"), \
                contextlib.suppress(RuntimeError):
            job.wait()
        state = job.to_dict().get("state", "PIPELINE_STATE_UNSPECIFIED")
        if state != _SUCCEEDED:
            raise RunFailedError(
                f"Vertex pipeline job {job.job_id} ended {state}: {url}",
                run_id=job.resource_name, state=state, run_url=url,
            )
    return url


def console_url(resource_name: str) -> str:
    """``projects/P/locations/L/pipelineJobs/J`` -> the job's page in the Cloud console."""
    match = _RESOURCE_NAME.match(resource_name)
    if not match:
        raise ValueError(f"not a pipeline job resource name: {resource_name!r}")
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{match['location']}"
        f"/pipelines/runs/{match['job']}?project={match['project']}"
    )


@contextlib.contextmanager
def _google_errors(where: str, action: str) -> Iterator[None]:
    """Turns Google API and auth exceptions into one-line ``VertexError``s."""
    try:
        yield
    except api_exceptions.GoogleAPICallError as error:
        raise VertexError(
            f"{where} could not {action}: HTTP {error.code} {one_line(error.message)}"
        ) from None
    except auth_exceptions.GoogleAuthError as error:
        raise VertexError(f"no usable Google credentials for {where}: {one_line(error)}") from None
