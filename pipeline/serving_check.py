"""Does TF Serving serve a pushed version, and answer as the pushed SavedModel does?

A push only writes files; clients see the model once TF Serving has loaded the version and
routes requests to it. This asks the server, over REST and gRPC, to predict for the same
users with the ``serving_raw`` signature and compares each probability with the SavedModel
run in this process. ``tfxkfp serving check`` (and ``make cluster-submit``) use it after a run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline import model_versions
from pipeline.errors import InputError
from pipeline.models.features import PROBABILITY_KEY, SERVING_RAW

# Users that cover both genders and the age and salary ranges of the data.
USERS = (
    {"gender": "Male", "age": 19, "estimated_salary": 19000},
    {"gender": "Female", "age": 35, "estimated_salary": 20000},
    {"gender": "Female", "age": 47, "estimated_salary": 92000},
    {"gender": "Male", "age": 60, "estimated_salary": 42000},
    {"gender": "Male", "age": 27, "estimated_salary": 150000},
)
# float32 arithmetic in two processes on the same graph.
TOLERANCE = 1e-5
_REQUEST_SECONDS = 30


class ServingCheckError(RuntimeError):
    """The server does not serve the version, or answers differently; one line."""


@dataclass(frozen=True)
class CheckResult:
    version: int
    expected: list[float]
    rest: list[float]
    grpc: list[float]


def _columns() -> dict[str, list]:
    return {key: [user[key] for user in USERS] for key in USERS[0]}


def in_process(version_dir: str | Path) -> list[float]:
    """The SavedModel's own probabilities for USERS."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[SERVING_RAW]
    columns = _columns()
    output = signature(
        gender=tf.constant(columns["gender"]),
        age=tf.constant(columns["age"], dtype=tf.int64),
        estimated_salary=tf.constant(columns["estimated_salary"], dtype=tf.int64),
    )[PROBABILITY_KEY]
    return [float(p) for p in output.numpy().reshape(-1)]


def _get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(url, data=data, timeout=_REQUEST_SECONDS) as response:
        return json.load(response)


def available_versions(rest_url: str, model_name: str) -> list[int]:
    """Versions TF Serving reports AVAILABLE (its REST status API)."""
    status = _get_json(f"{rest_url}/v1/models/{model_name}")["model_version_status"]
    return sorted(int(s["version"]) for s in status if s["state"] == "AVAILABLE")


def wait_until_available(rest_url: str, model_name: str, version: int, seconds: float) -> None:
    """Returns once ``version`` is AVAILABLE; a server not answering yet counts as not yet."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            versions = available_versions(rest_url, model_name)
            if version in versions:
                return
            last = f"AVAILABLE: {versions or 'none'}"
        except (OSError, ValueError, KeyError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise ServingCheckError(
                f"{rest_url}: version {version} of {model_name} not AVAILABLE after "
                f"{seconds:g} s ({last})")
        time.sleep(2)


def rest_predictions(rest_url: str, model_name: str, version: int) -> list[float]:
    reply = _get_json(f"{rest_url}/v1/models/{model_name}/versions/{version}:predict",
                      {"signature_name": SERVING_RAW, "instances": list(USERS)})
    return [float(prediction[PROBABILITY_KEY]) for prediction in reply["predictions"]]


def grpc_predictions(address: str, model_name: str, version: int) -> list[float]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.version.value = version
    request.model_spec.signature_name = SERVING_RAW
    for key, values in _columns().items():
        dtype = tf.string if key == "gender" else tf.int64
        request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    with grpc.insecure_channel(address) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=_REQUEST_SECONDS)
    if response.model_spec.version.value != version:
        raise ServingCheckError(
            f"{address}: gRPC answered with version {response.model_spec.version.value}, "
            f"not {version}")
    return [float(p) for p in tf.make_ndarray(response.outputs[PROBABILITY_KEY]).reshape(-1)]


def _compare(source: str, got: list[float], expected: list[float]) -> None:
    if len(got) != len(expected):
        raise ServingCheckError(f"{source}: {len(got)} predictions for {len(expected)} users")
    for user, value, want in zip(USERS, got, expected, strict=True):
        if abs(value - want) > TOLERANCE:
            raise ServingCheckError(
                f"{source}: {user} -> probability {value:.6f}, the SavedModel gives {want:.6f}")


def check(
    serving_dir: str, rest_url: str, grpc_address: str, model_name: str,
    version: int | None = None, wait_seconds: float = 120.0,
) -> CheckResult:
    """Checks ``version`` (default: the newest under ``serving_dir``) over REST and gRPC."""
    versions = model_versions.served_versions(serving_dir)
    if version is None:
        if not versions:
            raise InputError(f"{serving_dir}: no served version (no <version>/saved_model.pb)")
        version = versions[-1]
    elif version not in versions:
        raise InputError(f"{serving_dir}: no version {version} (there are: {versions or 'none'})")
    expected = in_process(model_versions.version_path(serving_dir, version))
    rest_url = rest_url.rstrip("/")
    wait_until_available(rest_url, model_name, version, wait_seconds)
    try:
        rest = rest_predictions(rest_url, model_name, version)
    except (OSError, ValueError, KeyError) as error:
        raise ServingCheckError(f"{rest_url}: predict failed: {error}") from error
    _compare(f"REST {rest_url}", rest, expected)
    import grpc

    try:
        by_grpc = grpc_predictions(grpc_address, model_name, version)
    except grpc.RpcError as error:
        raise ServingCheckError(
            f"gRPC {grpc_address}: {error.code().name}: {error.details()}") from error
    _compare(f"gRPC {grpc_address}", by_grpc, expected)
    return CheckResult(version=version, expected=expected, rest=rest, grpc=by_grpc)
