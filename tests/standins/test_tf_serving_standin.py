"""The TF Serving stand-in, run as a real process on loopback, against real SavedModels.

What the stand-in must reproduce is TF Serving 2.16.1's behaviour as its sources give it (see
the stand-in's docstring); these tests check that it does, through the same clients the chart's
probes, its helm test and TFX's InfraValidator use: HTTP/JSON, TF Serving's gRPC stubs and gRPC
health checking.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).parent / "tf_serving" / "tf_serving_standin.py"
# TensorFlow's import and a model load take a few seconds on a small CI machine.
START_SECONDS = 90
CHANGE_SECONDS = 30
METRICS_PATH = "/monitoring/prometheus/metrics"
SCALES = {1: 1.0, 2: 2.0}  # version -> the scale its model multiplies by
AVAILABLE_V1 = {"version": "1", "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}


class _Tiny(tf.Module):
    """Two signatures shaped like the project's: serialized tf.Examples, and raw features."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = tf.Variable(scale)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def from_examples(self, examples):
        parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([2], tf.float32)})
        return {"score": tf.reduce_sum(parsed["x"], axis=1) * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32),
                                  tf.TensorSpec([None], tf.string)])
    def raw(self, x, word):
        length = tf.cast(tf.strings.length(word), tf.float32)
        return {"score": tf.reduce_sum(x, axis=1) * self.scale + length, "word_bytes": word}


def _example(x: list[float]) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=x))
    return tf.train.Example(
        features=tf.train.Features(feature={"x": feature})).SerializeToString()


EXAMPLES = [_example([0.1, 0.2]), _example([1.5, -3.25])]
RAW_X = [[0.1, 0.2], [1.5, -3.25]]
RAW_WORDS = [b"ab", b"\xffbinary"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, condition: Callable[[], object], seconds: float,
              server: Server | None = None) -> None:
    """Polls condition until it is truthy; fails at the deadline, or once the stand-in exits."""
    deadline = time.monotonic() + seconds
    while not condition():
        exited = server is not None and server.process.poll() is not None
        if exited or time.monotonic() > deadline:
            log = server.stderr.read_text()[-3000:] if server else ""
            pytest.fail(f"no {what} within {seconds} s{' (the stand-in exited)' if exited else ''}"
                        f"\n{log}")
        time.sleep(0.2)


def _http(url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _version(base: Path, number: int, saved: dict[int, Path]) -> None:
    """Publishes a version the way the Pusher does: written beside, then renamed into place."""
    staging = base / f".staging-{number}"
    shutil.copytree(saved[number], staging)
    staging.rename(base / str(number))


@dataclass
class Server:
    process: subprocess.Popen
    base: Path  # its working directory, where the tests put model base paths
    rest: str
    grpc_target: str
    stdout: Path
    stderr: Path

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.grpc_target)


def _start(tmp: Path, args: list[str]) -> Server:
    grpc_port, rest_port = _free_port(), _free_port()
    stdout, stderr = tmp / "stdout.log", tmp / "stderr.log"
    env = {**os.environ, "TF_SERVING_STANDIN_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(STANDIN), f"--port={grpc_port}",
             f"--rest_api_port={rest_port}", *args],
            stdout=out, stderr=err, env=env, cwd=tmp)
    return Server(process, tmp, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}",
                  stdout, stderr)


def _stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


def _health(server: Server, service: str) -> int | str:
    """The health status of service, or the gRPC code name when the check fails."""
    with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        except grpc.RpcError as error:
            return error.code().name


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[int, Path]:
    """A SavedModel per version, saved as the project's trainer saves (tf.saved_model.save)."""
    root = tmp_path_factory.mktemp("saved")
    saved = {}
    for version, scale in SCALES.items():
        module = _Tiny(scale)
        saved[version] = root / str(version)
        tf.saved_model.save(module, str(saved[version]), signatures={
            "serving_default": module.from_examples, "serving_raw": module.raw})
    return saved


@pytest.fixture(scope="module")
def server(tmp_path_factory, saved_models) -> Iterator[Server]:
    """The stand-in with the chart's flags (helm/tf-serving deployment.yaml), gRPC health
    on (a flag the stand-in reproduces, which the chart no longer sets), and two models."""
    tmp = tmp_path_factory.mktemp("serving")
    for model in ("tiny", "rolling"):
        (tmp / model).mkdir()
        _version(tmp / model, 1, saved_models)
    (tmp / "model_config.pbtxt").write_text(f"""
model_config_list {{
  config {{ name: "tiny" base_path: "{tmp / 'tiny'}" model_platform: "tensorflow" }}
  config {{
    name: "rolling"
    base_path: "{tmp / 'rolling'}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
}}""")
    (tmp / "monitoring_config.pbtxt").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    (tmp / "batching_parameters.pbtxt").write_text("max_batch_size { value: 32 }\n")
    server = _start(tmp, [
        f"--model_config_file={tmp / 'model_config.pbtxt'}",
        f"--monitoring_config_file={tmp / 'monitoring_config.pbtxt'}",
        "--enable_grpc_healthcheck_service=true",
        "--file_system_poll_wait_seconds=1",
        "--enable_model_warmup=true",
        "--allow_version_labels_for_unavailable_models=true",
        "--enable_batching=true",
        f"--batching_parameters_file={tmp / 'batching_parameters.pbtxt'}",
        "--max_num_load_retries=0",  # a broken version ends at once, not after 5 minutes
        "--no_such_flag=1",
    ])
    try:
        _wait_for("gRPC health SERVING", lambda: _health(server, "") == 1, START_SECONDS, server)
        _wait_for("the REST API", lambda: _http(f"{server.rest}/v1/models/tiny")[0] == 200, 10)
        yield server
    finally:
        exit_code = _stop(server)
    assert exit_code == 0, server.stderr.read_text()  # SIGTERM: exit 0 within _stop's 10 s


def test_logs_say_stand_in_and_name_each_unhonoured_flag(server):
    lines = server.stderr.read_text().splitlines()
    assert lines[0].startswith("tf_serving_standin: this is the TF Serving stand-in")
    assert "not tensorflow_model_server" in lines[0]
    unhonoured = [line for line in lines if "cannot honour" in line]
    assert len(unhonoured) == 3, unhonoured
    assert any("--enable_batching=true (no batching in the stand-in); ignored" in line
               for line in unhonoured)
    assert any("--enable_model_warmup=true" in line for line in unhonoured)
    assert any("--batching_parameters_file=" in line for line in unhonoured)
    # TF Serving names the first unknown argument, prints its usage and serves all the same.
    assert server.stdout.read_text().startswith("unknown argument: --no_such_flag=1\nusage:")


def test_model_status_json_is_tf_servings(server):
    assert _http(f"{server.rest}/v1/models/tiny") == (200, {"model_version_status": [AVAILABLE_V1]})
    assert _http(f"{server.rest}/v1/models/tiny/versions/1") == (
        200, {"model_version_status": [AVAILABLE_V1]})
    assert _http(f"{server.rest}/v1/models/tiny/versions/7") == (
        404, {"error": "Could not find version 7 of model tiny"})


def test_unknown_model_is_404(server):
    assert _http(f"{server.rest}/v1/models/nope") == (
        404, {"error": "Could not find any versions of model nope"})
    status, body = _http(f"{server.rest}/v1/models/nope:predict", {"instances": [1.0]})
    assert (status, body) == (404, {"error": "Servable not found for request: Latest(nope)"})
    with server.channel() as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetModelStatus(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_model_status_is_what_tfx_infra_validator_reads(server):
    # TFX's TensorFlowServingClient: READY iff every version listed is AVAILABLE.
    with server.channel() as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "tiny"
        response = stub.GetModelStatus(request, timeout=10)
    [status] = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.status.error_message == ""


def test_the_charts_helm_test_passes(server):
    script = REPO_ROOT / "helm" / "tf-serving" / "files" / "check_model_available.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TF_SERVING_URL": server.rest, "MODEL_NAME": "rolling",
             "VERSION_LABELS": "stable", "TIMEOUT_SECONDS": "10", "RETRY_SECONDS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "model rolling is served" in result.stdout


def test_predict_over_rest_and_grpc_gives_the_models_own_numbers(server, saved_models):
    model = tf.saved_model.load(str(saved_models[1]))
    from_examples = model.signatures["serving_default"](
        examples=tf.constant(EXAMPLES))["score"].numpy()
    raw = model.signatures["serving_raw"](x=tf.constant(RAW_X), word=tf.constant(RAW_WORDS))
    b64 = [{"b64": base64.b64encode(e).decode()} for e in EXAMPLES]

    status, rows = _http(f"{server.rest}/v1/models/tiny:predict", {"instances": b64})
    assert status == 200, rows
    np.testing.assert_array_equal(np.float32(rows["predictions"]), from_examples)

    words = [{"b64": base64.b64encode(w).decode()} for w in RAW_WORDS]
    status, columns = _http(f"{server.rest}/v1/models/tiny/versions/1:predict", {
        "signature_name": "serving_raw", "inputs": {"x": RAW_X, "word": words}})
    assert status == 200, columns
    np.testing.assert_array_equal(np.float32(columns["outputs"]["score"]), raw["score"].numpy())
    assert columns["outputs"]["word_bytes"] == words  # *_bytes outputs come back as b64

    with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"  # as TFX's InfraValidator request builder fills it
        request.model_spec.signature_name = "serving_default"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(EXAMPLES))
        response = stub.Predict(request, timeout=10)
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"])
        metadata_request.model_spec.name = "tiny"
        metadata = stub.GetModelMetadata(metadata_request, timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["score"]), from_examples)
    assert list(response.outputs["score"].float_val)  # typed fields, as TF Serving fills them
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "serving_raw"} <= set(signatures.signature_def)


def test_grpc_health_has_tf_servings_service_names(server):
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(server, "") == serving  # the kubelet's startup probe
    assert _health(server, "PredictionService") == serving  # the chart's readiness probe
    assert _health(server, "ModelService") == serving
    assert _health(server, "tensorflow.serving.PredictionService") == "NOT_FOUND"


def test_prometheus_metrics_on_the_rest_port(server):
    assert _http(f"{server.rest}/v1/models/tiny")[0] == 200
    status, page = _http(f"{server.rest}{METRICS_PATH}")
    assert status == 200
    counts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
              for line in page.splitlines() if not line.startswith("#")
              and ("request_count" in line or "load_attempt_count" in line)}
    assert counts[':tensorflow:serving:request_count{model_name="tiny",status="OK"}'] >= 1
    loaded = (':tensorflow:cc:saved_model:load_attempt_count'
              f'{{model_path="{server.base / "tiny" / "1"}",status="success"}}')
    assert counts[loaded] == 1
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page
    assert _http(f"{server.rest}/monitoring/other")[0] == 404


def test_versions_load_and_unload_while_running(server, saved_models):
    rolling = server.base / "rolling"

    def status():
        return {s["version"]: s for s in _http(f"{server.rest}/v1/models/rolling")[1].get(
            "model_version_status", [])}

    _version(rolling, 2, saved_models)
    _wait_for("version 2 AVAILABLE and version 1 unloaded",
              lambda: status().get("2", {}).get("state") == "AVAILABLE"
              and status()["1"]["state"] == "END", CHANGE_SECONDS)
    assert status()["1"]["status"] == {"error_code": "OK", "error_message": ""}
    status_code, body = _http(f"{server.rest}/v1/models/rolling:predict",
                              {"instances": [{"b64": base64.b64encode(EXAMPLES[1]).decode()}]})
    assert status_code == 200
    assert body["predictions"] == [pytest.approx((1.5 - 3.25) * SCALES[2])]
    # The label still points at version 1, which is no longer loaded.
    assert _http(f"{server.rest}/v1/models/rolling/labels/stable:predict",
                 {"instances": [{"b64": base64.b64encode(EXAMPLES[1]).decode()}]}) == (
        404, {"error": "Servable not found for request: Specific(rolling, 1)"})

    # A version directory without a SavedModel: it fails, and version 2 keeps serving.
    (rolling / ".staging-3").mkdir()
    (rolling / ".staging-3").rename(rolling / "3")
    _wait_for("version 3 END", lambda: status().get("3", {}).get("state") == "END",
              CHANGE_SECONDS)
    failed = status()["3"]["status"]
    assert failed["error_code"] == "NOT_FOUND"
    assert "Could not find SavedModel .pb or .pbtxt" in failed["error_message"]
    assert status()["2"]["state"] == "AVAILABLE"


def test_metadata_is_404_while_no_version_is_available(server):
    # What helm/tf-serving's readiness probe relies on: with every version directory gone, TF
    # Serving unloads the last version; the metadata GET resolves an AVAILABLE version and
    # fails, while the status GET still answers 200 with the version in END.
    tiny, aside = server.base / "tiny", server.base / "tiny-aside"
    aside.mkdir()
    (tiny / "1").rename(aside / "1")
    try:
        _wait_for("tiny's metadata 404", lambda: _http(
            f"{server.rest}/v1/models/tiny/metadata")[0] == 404, CHANGE_SECONDS)
        assert _http(f"{server.rest}/v1/models/tiny/metadata")[1] == {
            "error": "Servable not found for request: Latest(tiny)"}
        status_code, status = _http(f"{server.rest}/v1/models/tiny")
        assert status_code == 200
        assert [s["state"] for s in status["model_version_status"]] == ["END"]
    finally:
        (aside / "1").rename(tiny / "1")
    _wait_for("tiny's metadata 200 again", lambda: _http(
        f"{server.rest}/v1/models/tiny/metadata")[0] == 200, CHANGE_SECONDS)


def test_ports_open_only_once_the_first_version_loads(tmp_path, saved_models):
    (tmp_path / "m").mkdir()
    server = _start(tmp_path, ["--model_name=m", f"--model_base_path={tmp_path / 'm'}",
                               "--enable_grpc_healthcheck_service=true"])
    try:
        # Two polls of the empty base path: a server that listened before loading would be
        # listening by the second.
        _wait_for("two polls of the empty base path",
                  lambda: server.stderr.read_text().count("No versions of servable m") >= 2,
                  START_SECONDS, server)
        assert _health(server, "") == "UNAVAILABLE"  # nothing listens on the gRPC port yet
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{server.rest}/v1/models/m", timeout=5)
        _version(tmp_path / "m", 1, saved_models)
        _wait_for("gRPC health SERVING", lambda: _health(server, "") == 1, CHANGE_SECONDS,
                  server)
    finally:
        exit_code = _stop(server)
    assert exit_code == 0


def test_first_version_failing_stops_the_server(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    server = _start(tmp_path, ["--model_name=m", f"--model_base_path={tmp_path / 'm'}",
                               "--max_num_load_retries=0"])
    try:
        assert server.process.wait(timeout=START_SECONDS) == 255
    finally:
        _stop(server)
    assert server.stdout.read_text().startswith(
        "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
        "{{{name: m version: 1} due to error: NOT_FOUND: Could not find SavedModel")
