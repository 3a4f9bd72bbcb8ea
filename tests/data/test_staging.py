"""Every malformed-input case gets a one-line InputError naming the file and the field."""

import pytest

from pipeline.data import synthesize
from pipeline.data.staging import normalise_column_name, stage
from pipeline.errors import InputError

HEADER = ",".join(synthesize.HEADER) + "\n"
GOOD_ROW = "15600001,Male,23,31000,0\n"


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("User ID", "user_id"), ("EstimatedSalary", "estimated_salary"), ("Gender", "gender"),
     ("Purchased", "purchased"), (" Age ", "age"), ("estimated_salary", "estimated_salary")],
)
def test_header_normalisation(raw, normalised):
    assert normalise_column_name(raw) == normalised


def test_stages_normalised_columns_in_schema_order(tmp_path):
    source = _write(tmp_path, "Purchased,Age,Gender,EstimatedSalary,User ID\n"
                              "1,47.0,Female,25000,15\n")
    staged = stage(source, tmp_path / "out")
    assert staged.rows == 1
    assert staged.path.read_text() == (
        "user_id,gender,age,estimated_salary,purchased\n15,Female,47,25000,1\n"
    )


def test_unchanged_content_keeps_the_staged_file_untouched(tmp_path):
    source = _write(tmp_path, HEADER + GOOD_ROW)
    first = stage(source, tmp_path / "out").path
    mtime = first.stat().st_mtime_ns
    second = stage(source, tmp_path / "out").path
    assert second.stat().st_mtime_ns == mtime  # ExampleGen's fingerprint includes mtime
    _write(tmp_path, HEADER + GOOD_ROW + "15600002,Female,41,72000,1\n")
    assert stage(source, tmp_path / "out").rows == 2


def test_inference_data_needs_no_label(tmp_path):
    source = _write(tmp_path, "User ID,Gender,Age,EstimatedSalary\n1,Male,30,40000\n")
    staged = stage(source, tmp_path / "out", labelled=False)
    assert staged.path.read_text().splitlines()[0] == "user_id,gender,age,estimated_salary"


def test_inference_data_may_carry_the_label_which_is_dropped(tmp_path):
    source = _write(tmp_path, HEADER + GOOD_ROW)
    staged = stage(source, tmp_path / "out", labelled=False)
    assert staged.path.read_text().splitlines() == [
        "user_id,gender,age,estimated_salary", "15600001,Male,23,31000"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"data\.csv: file is empty"),
        ("  \n\n", r"data\.csv: file is empty"),
        (HEADER, r"data\.csv: has a header but no data rows"),
        ("User ID;Gender;Age;EstimatedSalary;Purchased\n1;Male;19;19000;0\n",
         r"data\.csv: header is one column split by ';'"),
        ("User ID,Gender,EstimatedSalary,Purchased\n1,Male,19000,0\n",
         r"data\.csv: missing column\(s\) age"),
        (HEADER + "15600003,Male,nineteen,31000,0\n",
         r"data\.csv: line 2, column Age: 'nineteen' is not a number"),
        (HEADER + GOOD_ROW + "15600004,Male,23,0\n",
         r"data\.csv: line 3 has 4 fields, the header has 5"),
        ("User ID,Gender,Age,EstimatedSalary,Purchased,Country\n15600001,Male,23,31000,0,DE\n",
         r"data\.csv: unexpected column\(s\) country; expected exactly user_id, gender, age, "
         r"estimated_salary, purchased"),
        ("User ID,Gender,Age,age,EstimatedSalary,Purchased\n15600001,Male,23,23,31000,0\n",
         r"data\.csv: column\(s\) age appear more than once in the header"),
        (HEADER + GOOD_ROW + HEADER + GOOD_ROW, r"data\.csv: line 3 repeats the header"),
    ],
    ids=["empty", "blank", "header-only", "semicolons", "missing-column", "non-numeric-age",
         "ragged-row", "unknown-column", "duplicated-column", "repeated-header"],
)
def test_bad_input_is_one_line_naming_file_and_field(tmp_path, content, message):
    source = _write(tmp_path, content)
    with pytest.raises(InputError, match=message) as raised:
        stage(source, tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out" / "data.csv").exists()


@pytest.mark.parametrize(
    ("content", "features"),
    [
        ("", ("(file)",)),
        ("User ID;Gender;Age;EstimatedSalary;Purchased\n1;Male;19;19000;0\n", ("(header)",)),
        ("User ID,Gender,Purchased\n1,Male,0\n", ("age", "estimated_salary")),
        (HEADER + "15600003,Male,23,lots,0\n", ("estimated_salary",)),
        (HEADER + GOOD_ROW + "15600004,Male,23,0\n", ("(row)",)),
    ],
    ids=["empty", "semicolons", "missing-columns", "non-numeric-salary", "ragged-row"],
)
def test_input_errors_name_the_schema_feature(tmp_path, content, features):
    with pytest.raises(InputError) as raised:
        stage(_write(tmp_path, content), tmp_path / "out")
    assert raised.value.features == features


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        stage(tmp_path / "nope.csv", tmp_path / "out")


def test_empty_cells_are_left_for_the_schema(tmp_path):
    # A missing age is a schema anomaly (presence), not a parse error.
    staged = stage(_write(tmp_path, HEADER + "1,Male,,19000,0\n"), tmp_path / "out")
    assert staged.path.read_text().splitlines()[1] == "1,Male,,19000,0"
