"""The submit and schedule commands' exit codes and one-line errors (no server needed)."""

import socket

import pytest

from pipeline import cli


@pytest.fixture()
def closed_port_host() -> str:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipelineInfo: {name: p}\nroot: {dag: {tasks: {}}}\n"
                    "deploymentSpec: {executors: {}}\ncomponents: {}\nschemaVersion: 2.1.0\n")
    return path


def test_submit_without_host_is_a_usage_error(spec, capsys, monkeypatch):
    monkeypatch.delenv("TFXKFP_KFP_HOST", raising=False)
    assert cli.main(["submit", str(spec)]) == cli.EXIT_INPUT
    assert "--host" in capsys.readouterr().err


def test_submit_to_an_unreachable_host_exits_1(spec, closed_port_host, capsys):
    assert cli.main(["submit", str(spec), "--host", closed_port_host]) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot reach KFP at {closed_port_host}: connection refused"]


def test_submit_with_a_bad_param_sends_nothing(spec, closed_port_host, capsys):
    code = cli.main(["submit", str(spec), "--host", closed_port_host, "--param", "novalue"])
    assert code == cli.EXIT_INPUT
    assert "novalue" in capsys.readouterr().err


def test_vertex_submit_needs_project_and_region(spec, capsys, monkeypatch):
    monkeypatch.delenv("TFXKFP_VERTEX_PROJECT", raising=False)
    monkeypatch.delenv("TFXKFP_VERTEX_REGION", raising=False)
    assert cli.main(["submit", str(spec), "--target", "vertex"]) == cli.EXIT_INPUT
    assert "--project, --region" in capsys.readouterr().err


def test_schedule_list_on_an_unreachable_host_exits_1(closed_port_host, capsys):
    assert cli.main(["schedule", "list", "--host", closed_port_host]) == cli.EXIT_FAILED
    assert "cannot reach KFP" in capsys.readouterr().err


def test_schedule_with_a_five_field_cron_is_refused(spec, closed_port_host, capsys):
    code = cli.main(["schedule", "create", str(spec), "--host", closed_port_host,
                     "--name", "nightly", "--cron", "0 3 * * *"])
    assert code == cli.EXIT_INPUT
    assert "0 3 * * *" in capsys.readouterr().err
