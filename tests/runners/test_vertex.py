"""The Vertex AI PipelineJob built from a compiled spec, checked without a Google project.

aiplatform.PipelineJob can be constructed offline with anonymous credentials and an
explicit project and region; what it would send is then read back with ``to_dict()``.
Only ``submit()`` needs Vertex AI, so it is not called here.
"""

import json
from pathlib import Path

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from pipeline.errors import InputError
from pipeline.runners import vertex
from pipeline.runners.kubeflow.errors import ParamError, SpecError

PROJECT, REGION = "demo-project", "europe-west4"


@pytest.fixture(scope="module")
def spec_yaml(two_step_spec) -> Path:
    return two_step_spec


@pytest.fixture(scope="module")
def job_json(spec_yaml) -> Path:
    """The shape KubeflowV2DagRunner writes for --target vertex."""
    path = spec_yaml.with_name("two-step-job.json")
    spec = yaml.safe_load(spec_yaml.read_text())
    del spec["defaultPipelineRoot"]  # TFX puts the root in runtimeConfig only
    path.write_text(json.dumps({
        "displayName": "two-step-job",
        "pipelineSpec": spec,
        "runtimeConfig": {"gcsOutputDirectory": "gs://demo-bucket/compiled-root"},
    }))
    return path


def _kwargs(path, **changes):
    options = {"project": PROJECT, "region": REGION, "credentials": AnonymousCredentials()}
    return vertex.pipeline_job_kwargs(path, **{**options, **changes})


def test_kwargs_carry_the_compiled_name_the_typed_params_and_the_options(job_json):
    credentials = AnonymousCredentials()

    kwargs = vertex.pipeline_job_kwargs(
        job_json, project=PROJECT, region=REGION, pipeline_root="gs://demo-bucket/other",
        params={"a": "5", "b": "0.5", "flag": "false"}, enable_caching=False,
        credentials=credentials,
    )

    assert kwargs == {
        "display_name": "two-step-job",
        "template_path": str(job_json),
        "pipeline_root": "gs://demo-bucket/other",
        "parameter_values": {"a": 5, "b": 0.5, "flag": False},
        "enable_caching": False,
        "project": PROJECT,
        "location": REGION,
        "credentials": credentials,
    }


def test_constructed_job_has_the_display_name_parameters_root_and_caching(job_json):
    job = aiplatform.PipelineJob(**_kwargs(
        job_json, pipeline_root="gs://demo-bucket/other", params={"a": "5", "msg": "yo"},
        enable_caching=False,
    ))

    sent = job.to_dict()
    assert sent["displayName"] == "two-step-job"
    assert sent["runtimeConfig"] == {
        "gcsOutputDirectory": "gs://demo-bucket/other",
        "parameterValues": {"a": 5, "msg": "yo"},
    }
    tasks = sent["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {name: task["cachingOptions"] for name, task in tasks.items()} == {
        "add": {"enableCache": False}, "echo": {"enableCache": False},
    }
    assert (job.project, job.location) == (PROJECT, REGION)
    assert job.job_id.startswith("two-step-")


def test_constructed_job_keeps_the_compiled_root_and_caching_by_default(job_json):
    sent = aiplatform.PipelineJob(**_kwargs(job_json)).to_dict()

    assert sent["runtimeConfig"] == {"gcsOutputDirectory": "gs://demo-bucket/compiled-root"}
    tasks = sent["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {name: task["cachingOptions"] for name, task in tasks.items()} == {
        "add": {"enableCache": True}, "echo": {"enableCache": True},  # as compiled
    }


def test_a_bare_pipeline_spec_is_taken_too_and_named_after_the_pipeline(spec_yaml):
    kwargs = _kwargs(spec_yaml, pipeline_root="gs://demo-bucket/root")

    assert kwargs["display_name"] == "two-step"
    sent = aiplatform.PipelineJob(**kwargs).to_dict()
    assert sent["runtimeConfig"]["gcsOutputDirectory"] == "gs://demo-bucket/root"


@pytest.mark.parametrize("content, error, message", [
    (None, SpecError, "no such pipeline spec file"),
    ("[1, 2]", SpecError, "expected a JSON object"),
    ('{"displayName": "x", "pipelineSpec": []}', SpecError, "pipelineSpec is not an object"),
    ('{"displayName": "x", "pipelineSpec": {"nope": 1}}', SpecError, "not a pipeline spec: "),
    ("{broken", SpecError, "cannot read the pipeline job"),
])
def test_bad_job_files_are_refused(tmp_path, content, error, message):
    path = tmp_path / "job.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(error, match=message) as caught:
        vertex.submit_vertex(path, project=PROJECT, region=REGION,
                             credentials=AnonymousCredentials())

    assert str(caught.value).startswith(str(path))
    assert isinstance(caught.value, InputError)


@pytest.mark.parametrize("changes, error, message", [
    ({"params": {"epochs": "3"}}, ParamError,
     "has no parameter 'epochs' (it takes: a, b, conf, flag, items, msg)"),
    ({"params": {"a": "1.5"}}, ParamError, "a takes an integer"),
    ({"pipeline_root": "/tmp/root"}, InputError, "'/tmp/root' is not a gs:// path"),
    ({"project": " "}, InputError, "Vertex AI needs a project and a region"),
    ({"region": "mars-central1"}, InputError, "cannot take it: Unsupported region for Vertex AI"),
])
def test_bad_inputs_are_refused_before_anything_is_sent(job_json, changes, error, message):
    options = {"project": PROJECT, "region": REGION, "credentials": AnonymousCredentials()}

    with pytest.raises(error) as caught:
        vertex.submit_vertex(job_json, **{**options, **changes})

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_console_url():
    assert vertex.console_url(
        "projects/123/locations/europe-west4/pipelineJobs/two-step-20250101000000"
    ) == ("https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
          "two-step-20250101000000?project=123")
