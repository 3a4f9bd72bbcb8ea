"""The kind path end to end: deploy with skaffold, run the pipeline on KFP, query TF Serving.

Needs what the README's kind section sets up: a kind cluster from `make kind-up` that
KUBECONFIG points at, and docker and skaffold on PATH. The test deploys with
`skaffold run -p kind` (its own pipeline submission switched off), stages synthetic data
into the store the cluster mounts, submits a run of the freshly built image, waits for it,
and asks TF Serving for a prediction from the model the run pushed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig
from pipeline.data import staging, synthesize
from pipeline.runners.kubeflow import compiler, runs

pytestmark = pytest.mark.kind

REPO = Path(__file__).resolve().parents[2]
KIND_ENV = REPO / "k8s" / "kind" / "pipeline.env"
IMAGE_FILE = REPO / "build" / "pipeline-image.txt"
DEPLOY_SECONDS = 1800
RUN_SECONDS = 3600
MODEL_AVAILABLE_SECONDS = 300


def _settings() -> dict[str, str]:
    """The kind settings the Makefile compiles with (KEY=value lines), overridable by env."""
    settings = {}
    for line in KIND_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = os.environ.get(key, value)
    return settings


@pytest.fixture(scope="module")
def deployed() -> dict[str, str]:
    """Deploys the kind profile; the settings and the pipeline image it built."""
    missing = [tool for tool in ("docker", "skaffold", "kind") if shutil.which(tool) is None]
    if not os.environ.get("KUBECONFIG") or missing:
        pytest.skip(f"the kind path needs KUBECONFIG and {', '.join(missing) or 'its tools'}: "
                    "set up with `make kind-up` (README, kind section)")
    settings = _settings()
    store = REPO / settings["TFXKFP_KIND_STORE"]
    source = synthesize.write_csv(store / "raw" / "data.csv", rows=400, seed=0)
    staging.stage(source, store / "data" / "social_network_ads")
    subprocess.run(
        ["skaffold", "run", "-p", "kind"], cwd=REPO, check=True, timeout=DEPLOY_SECONDS,
        env={**os.environ, "TFXKFP_SKIP_SUBMIT": "1"},
    )
    return {**settings, "image": IMAGE_FILE.read_text().strip()}


def _get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as reply:
        return json.load(reply)


def _wait_for_available_version(model_url: str) -> int:
    deadline = time.monotonic() + MODEL_AVAILABLE_SECONDS
    while True:
        try:
            versions = _get_json(model_url)["model_version_status"]
            available = [int(v["version"]) for v in versions if v["state"] == "AVAILABLE"]
            if available:
                return max(available)
        except (urllib.error.URLError, KeyError, ValueError):
            pass
        assert time.monotonic() < deadline, f"no AVAILABLE version at {model_url}"
        time.sleep(5)


def test_a_pipeline_run_on_kind_pushes_a_model_tf_serving_answers_with(deployed, tmp_path):
    settings = deployed
    config = PipelineConfig(
        pipeline_root=settings["TFXKFP_PIPELINE_ROOT"],
        data_root=settings["TFXKFP_DATA_ROOT"],
        serving_model_dir=settings["TFXKFP_SERVING_DIR"],
        schema_file=compiler.IMAGE_SCHEMA_FILE,
        target="kfp",
        tune=False,
        volume_claim=settings["TFXKFP_VOLUME_CLAIM"],
        volume_mount_path=settings["TFXKFP_VOLUME_MOUNT_PATH"],
    )
    spec = compiler.compile_pipeline(config, settings["image"], tmp_path / "pipeline.yaml")

    run = runs.submit(
        spec, settings["TFXKFP_KFP_HOST"], run_name="kind e2e", wait=True,
        timeout_seconds=RUN_SECONDS, progress=print,
    )
    assert run.state == "SUCCEEDED"

    model_url = f"{settings['TFXKFP_SERVING_URL']}/v1/models/{config.model_name}"
    version = _wait_for_available_version(model_url)
    reply = _get_json(f"{model_url}/versions/{version}:predict", {
        "signature_name": "serving_raw",
        "instances": [{"gender": "Male", "age": 47, "estimated_salary": 92000}],
    })
    [prediction] = reply["predictions"]
    assert 0.0 <= prediction["probability"] <= 1.0
    assert prediction["class"] in (0, 1)
