"""Bad input: one line on stderr naming the file and field, exit 2, a summary, nothing pushed."""

import json

import pytest

from pipeline import cli, exit_codes
from pipeline.data import synthesize

HEADER = ",".join(synthesize.HEADER) + "\n"


def _run(tmp_path, capsys, *args):
    output = tmp_path / "out"
    code = cli.main(["run", "--output", str(output), *args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "data.csv: no such file"),
        ("", "data.csv: file is empty"),
        (HEADER, "data.csv: has a header but no data rows"),
        ("User ID;Gender;Age;EstimatedSalary;Purchased\n1;Male;19;19000;0\n",
         "data.csv: header is one column split by ';'"),
        ("User ID,Gender,Age,Purchased\n1,Male,19,0\n", "missing column(s) estimated_salary"),
        (HEADER + "1,Male,19,19000,0\n2,Female,abc,20000,1\n",
         "data.csv: line 3, column Age: 'abc' is not a number"),
    ],
    ids=["missing-file", "empty", "header-only", "wrong-delimiter", "missing-column",
         "non-numeric-age"],
)
def test_bad_training_data(tmp_path, capsys, content, expected):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    code, stderr, output = _run(tmp_path, capsys, "--data", str(data))
    assert code == exit_codes.INPUT
    assert len(stderr) == 1 and expected in stderr[0] and str(data) in stderr[0]
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["status"] == "input_error" and summary["exit_code"] == 2
    assert summary["metrics"] == {"overall": {}, "slices": {}}
    assert summary["pushed_model"] is None
    assert not (output / "serving").exists()
    assert not (output / "metadata.sqlite").exists()  # the pipeline never started


def test_bad_inference_data_is_refused_before_the_run(tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text(HEADER + "1,Male,19,19000,0\n")
    inference = tmp_path / "inference.csv"
    inference.write_text("User ID,Gender,Age\n1,Male,19\n")
    code, stderr, _ = _run(tmp_path, capsys, "--data", str(data),
                           "--inference-data", str(inference))
    assert code == exit_codes.INPUT
    assert "inference.csv: missing column(s) estimated_salary" in stderr[0]


def test_bad_hparams_file_is_refused_before_the_run(tmp_path, capsys):
    hparams = tmp_path / "hp.json"
    hparams.write_text('{"hidden_units": -4}')
    code, stderr, _ = _run(tmp_path, capsys, "--hparams", str(hparams))
    assert code == exit_codes.INPUT
    assert "hp.json: field hidden_units: expected a positive number" in stderr[0]


def test_no_tune_and_hparams_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["run", "--no-tune", "--hparams", str(tmp_path / "x")])
    assert raised.value.code == 2


def test_data_synth_writes_the_requested_rows(tmp_path, capsys):
    out = tmp_path / "synthetic.csv"
    assert cli.main(["data", "synth", "--rows", "25", "--seed", "3", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "User ID,Gender,Age,EstimatedSalary,Purchased"
    assert len(lines) == 26
    assert cli.main(["data", "synth", "--rows", "0", "--out", str(out)]) == exit_codes.INPUT


def test_data_stage_writes_normalised_columns_for_cluster_steps(tmp_path, capsys):
    source = tmp_path / "raw.csv"
    source.write_text(HEADER + "7,Male,35,61000,1\n")
    assert cli.main(["data", "stage", str(source), "--out", str(tmp_path / "data")]) == 0
    staged = (tmp_path / "data" / "data.csv").read_text().splitlines()
    assert staged == ["user_id,gender,age,estimated_salary,purchased", "7,Male,35,61000,1"]


def test_data_stage_refuses_bad_data_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "raw.csv"
    source.write_text(HEADER + "7,Male,old,61000,1\n")
    assert cli.main(["data", "stage", str(source), "--out", str(tmp_path / "data")]) == 2
    assert "column Age: 'old' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
