"""`tfxkfp serving check` against a serving process: the TF Serving stand-in
(tests/standins/tf_serving), serving SavedModels with the pipeline's `serving_raw` signature.

Two small models with that signature stand for "the model pushed" and "another model": the
check passes when the server serves the pushed one, over REST and gRPC, and fails in one
line when it serves another, or not the version asked for. The cluster tier runs the same
check against the tf-serving release (tests/cluster/test_kfp_runs.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline import serving_check
from pipeline.cli import main
from pipeline.errors import InputError

STANDIN = Path(__file__).parent / "standins" / "tf_serving" / "tf_serving_standin.py"
MODEL = "social_network_ads"
START_SECONDS = 60


class _RawModel(tf.Module):
    """probability = sigmoid(weight * (age - 40)): the serving_raw signature, one weight."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = tf.Variable(weight)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="gender"),
                                  tf.TensorSpec([None], tf.int64, name="age"),
                                  tf.TensorSpec([None], tf.int64, name="estimated_salary")])
    def raw(self, gender, age, estimated_salary):
        logits = self.weight * (tf.cast(age, tf.float32) - 40.0)
        probability = tf.sigmoid(logits)
        return {"probability": probability, "class": tf.cast(probability > 0.5, tf.int64)}


def _save(path: Path, weight: float) -> Path:
    module = _RawModel(weight)
    tf.saved_model.save(module, str(path), signatures={"serving_raw": module.raw})
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The stand-in serving version 1 of `pushed`; `other` holds a different version 1."""
    root = tmp_path_factory.mktemp("serving")
    pushed, other = root / "pushed", root / "other"
    _save(pushed / "1", 0.1)
    _save(other / "1", -0.3)
    shutil.copytree(pushed / "1", other / "2")  # a version the server does not have
    grpc_port, rest_port = _free_port(), _free_port()
    env = {**os.environ, "TF_SERVING_STANDIN_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with (root / "log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(STANDIN), f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_name={MODEL}", f"--model_base_path={pushed}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    rest, grpc_address = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    try:
        serving_check.wait_until_available(rest, MODEL, 1, START_SECONDS)
        yield {"pushed": pushed, "other": other, "rest": rest, "grpc": grpc_address}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_pushed_version_answers_as_the_saved_model_over_rest_and_grpc(served):
    result = serving_check.check(str(served["pushed"]), served["rest"], served["grpc"], MODEL)
    assert result.version == 1
    assert len(result.expected) == len(serving_check.USERS)
    # The users span both sides of the decision, so equal answers are not a constant.
    assert min(result.expected) < 0.5 < max(result.expected)
    assert result.rest == pytest.approx(result.expected, abs=serving_check.TOLERANCE)
    assert result.grpc == pytest.approx(result.expected, abs=serving_check.TOLERANCE)


def test_another_model_under_the_same_version_is_a_difference(served):
    with pytest.raises(serving_check.ServingCheckError, match=r"^REST .*: \{.*\} -> probability"):
        serving_check.check(str(served["other"]), served["rest"], served["grpc"], MODEL, 1)


def test_a_version_the_server_never_loads_is_reported_after_the_wait(served):
    started = time.monotonic()
    with pytest.raises(serving_check.ServingCheckError,
                       match=r"version 2 of social_network_ads not AVAILABLE after 3 s "
                             r"\(AVAILABLE: \[1\]\)"):
        serving_check.check(str(served["other"]), served["rest"], served["grpc"], MODEL, 2,
                            wait_seconds=3)
    assert time.monotonic() - started < 30


def test_a_serving_directory_without_the_version_is_bad_input(served, tmp_path):
    with pytest.raises(InputError, match="no served version"):
        serving_check.check(str(tmp_path), served["rest"], served["grpc"], MODEL)
    with pytest.raises(InputError, match=r"no version 7 \(there are: \[1\]\)"):
        serving_check.check(str(served["pushed"]), served["rest"], served["grpc"], MODEL, 7)


def test_the_command_exits_0_1_or_2_with_one_line(served, capsys):
    args = ["serving", "check", "--rest", served["rest"], "--grpc", served["grpc"]]
    assert main([*args, str(served["pushed"])]) == 0
    assert capsys.readouterr().out.startswith("version 1: REST and gRPC predictions equal")
    assert main([*args, str(served["other"]), "--version", "1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: REST ") and error.count("\n") == 1
    assert main([*args, str(served["pushed"]), "--version", "3"]) == 2
