"""The submit and schedule commands' exit codes and one-line errors (no server needed)."""

import pytest

from pipeline import cli, exit_codes


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipelineInfo: {name: p}\nroot: {dag: {tasks: {}}}\n"
                    "deploymentSpec: {executors: {}}\ncomponents: {}\nschemaVersion: 2.1.0\n")
    return path


def test_submit_without_host_is_a_usage_error(spec, capsys, monkeypatch):
    monkeypatch.delenv("TFXKFP_KFP_HOST", raising=False)
    assert cli.main(["submit", str(spec)]) == exit_codes.INPUT
    assert "--host" in capsys.readouterr().err


def test_submit_to_an_unreachable_host_exits_1(spec, closed_port_url, capsys):
    assert cli.main(["submit", str(spec), "--host", closed_port_url]) == exit_codes.FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot reach KFP at {closed_port_url}: connection refused"]


def test_submit_with_a_bad_param_sends_nothing(spec, closed_port_url, capsys):
    code = cli.main(["submit", str(spec), "--host", closed_port_url, "--param", "novalue"])
    assert code == exit_codes.INPUT
    assert "novalue" in capsys.readouterr().err


def test_vertex_submit_needs_project_and_region(spec, capsys, monkeypatch):
    monkeypatch.delenv("TFXKFP_VERTEX_PROJECT", raising=False)
    monkeypatch.delenv("TFXKFP_VERTEX_REGION", raising=False)
    assert cli.main(["submit", str(spec), "--target", "vertex"]) == exit_codes.INPUT
    assert "--project, --region" in capsys.readouterr().err


def test_schedule_list_on_an_unreachable_host_exits_1(closed_port_url, capsys):
    assert cli.main(["schedule", "list", "--host", closed_port_url]) == exit_codes.FAILED
    assert "cannot reach KFP" in capsys.readouterr().err


def test_schedule_with_a_five_field_cron_is_refused(spec, closed_port_url, capsys):
    code = cli.main(["schedule", "create", str(spec), "--host", closed_port_url,
                     "--name", "nightly", "--cron", "0 3 * * *"])
    assert code == exit_codes.INPUT
    assert "0 3 * * *" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--experiment", "e"], ["--run-name", "r"], ["--timeout", "60"]])
def test_vertex_submit_refuses_flags_only_kfp_honours(spec, capsys, flag):
    code = cli.main(["submit", str(spec), "--target", "vertex", "--project", "p",
                     "--region", "europe-west4", *flag])
    assert code == exit_codes.INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: --target vertex does not take {flag[0]}")


def test_an_experiment_from_the_environment_does_not_stop_a_vertex_submit(
    spec, capsys, monkeypatch
):
    """Only flags on the command line are refused: TFXKFP_EXPERIMENT may be set for KFP."""
    monkeypatch.setenv("TFXKFP_EXPERIMENT", "e")
    monkeypatch.delenv("TFXKFP_VERTEX_REGION", raising=False)
    assert cli.main(["submit", str(spec), "--target", "vertex", "--project", "p"]) == (
        exit_codes.INPUT)
    assert "--region" in capsys.readouterr().err  # got past the refusal, to the next check
