"""Only a model at least as good as the served one, and servable, replaces it; rollbacks stick.

One output directory and one sequence of real pipeline runs on copies of the real data,
shared by the tests below; each step is checked against the state the previous one left:

1. a weak model (2 epochs) is pushed: version v1;
2. a model with a broken serving signature is blessed on metrics, refused by the
   InfraValidator, and not pushed;
3. a better model (8 epochs) is pushed as v2, and v1 stays for rollback;
4. the weak model again (from the cache) is worse than the served v2: not blessed, by the
   baseline comparison alone (it passes the absolute floors);
5. ``tfxkfp rollback --to v1`` serves v1's model again as v3 and revokes v2's model;
6. the better model again (from the cache) is judged against v3, the restored model, and
   is blessed, but not pushed: the rollback stands;
7. salary recorded in cents drifts from the previous span: exit 3;
8. shuffled labels pass validation (the rejected span of step 7 is not the drift baseline)
   and train a model that is not blessed.
"""

from __future__ import annotations

import json
import random

import broken_serving_model
import pytest
from fault_runs import Run, column, serving_dir, tfxkfp

from pipeline import model_versions

pytestmark = pytest.mark.e2e

WEAK_EPOCHS, GOOD_EPOCHS = "2", "8"


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return tmp_path_factory.mktemp("model_faults") / "out"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _run(output, data, *args: str) -> Run:
    return tfxkfp(output, "run", "--data", str(data), "--output", str(output), "--no-tune",
                  *args)


def _states(run: Run) -> dict[str, str]:
    return {c["id"]: c["status"] for c in run.summary["components"]}


def _version_dir(output, version: int) -> str:
    return str(serving_dir(output) / str(version))


@pytest.fixture(scope="module")
def clean_csv(with_fault, data_dir):
    return with_fault(data_dir / "clean.csv", lambda header, rows: None)


@pytest.fixture(scope="module")
def weak(output, clean_csv) -> Run:
    return _run(output, clean_csv, "--epochs", WEAK_EPOCHS)


@pytest.fixture(scope="module")
def broken(weak, output, clean_csv) -> Run:
    return _run(output, clean_csv, "--epochs", GOOD_EPOCHS,
                "--run-fn", f"{broken_serving_model.__name__}.run_fn")


@pytest.fixture(scope="module")
def better(broken, output, clean_csv) -> Run:
    return _run(output, clean_csv, "--epochs", GOOD_EPOCHS)


@pytest.fixture(scope="module")
def regressed(better, output, clean_csv) -> Run:
    return _run(output, clean_csv, "--epochs", WEAK_EPOCHS)


@pytest.fixture(scope="module")
def rolled_back(weak, regressed, output) -> Run:
    return tfxkfp(output, "rollback", "--to", str(weak.versions[0]), "--output", str(output))


@pytest.fixture(scope="module")
def after_rollback(rolled_back, output, clean_csv) -> Run:
    return _run(output, clean_csv, "--epochs", GOOD_EPOCHS)


@pytest.fixture(scope="module")
def drifted(after_rollback, output, with_fault, data_dir) -> Run:
    def salary_in_cents(header, rows):
        salary = column(header, "EstimatedSalary")
        for row in rows:
            row[salary] = str(int(row[salary]) * 100)

    return _run(output, with_fault(data_dir / "cents.csv", salary_in_cents),
                "--epochs", WEAK_EPOCHS)


@pytest.fixture(scope="module")
def shuffled(drifted, output, with_fault, data_dir) -> Run:
    def shuffle_labels(header, rows):
        label = column(header, "Purchased")
        labels = [row[label] for row in rows]
        random.Random(3).shuffle(labels)
        for row, value in zip(rows, labels):
            row[label] = value

    return _run(output, with_fault(data_dir / "shuffled.csv", shuffle_labels),
                "--epochs", WEAK_EPOCHS)


def test_a_first_model_is_pushed(weak):
    assert weak.code == 0, weak.stderr
    # No baseline model and no previous span yet: both lookups succeed with nothing.
    assert all(c["status"] == "complete" for c in weak.summary["components"]), (
        weak.summary["components"]
    )
    assert weak.summary["baseline_model"] is None
    assert len(weak.versions) == 1


def test_a_broken_serving_signature_is_not_pushed(weak, broken):
    assert broken.code == 4, broken.stderr
    assert broken.summary["status"] == "not_blessed"
    # Good on metrics (serving_default is intact), refused only because it does not serve.
    assert broken.summary["blessed"] == {"evaluator": True, "infra_validator": False}
    [failure] = broken.summary["gate_failures"]
    assert failure["gate"] == "InfraValidator"
    assert "serving_raw" in failure["reason"] and "disagree" in failure["reason"]
    assert any("InfraValidator: signatures" in line for line in broken.stderr)
    assert broken.summary["pushed_model"] is None
    assert broken.versions == weak.versions


def test_a_better_model_is_pushed_as_a_new_version_and_the_previous_stays(
    weak, better, output
):
    assert better.code == 0, better.stderr
    [v1] = weak.versions
    assert better.summary["baseline_model"] == _version_dir(output, v1)
    assert better.summary["metrics"]["overall"]["auc"] > weak.summary["metrics"]["overall"]["auc"]
    v2 = better.summary["pushed_model"]["version"]
    assert better.versions == [v1, v2] and v2 > v1
    for version in better.versions:
        assert (serving_dir(output) / str(version) / "saved_model.pb").is_file()


def test_a_model_worse_than_the_served_one_is_not_blessed(better, regressed, output):
    assert regressed.code == 4, regressed.stderr
    assert _states(regressed)["Trainer"] == "cached"  # the weak model of the first run
    v2 = better.versions[-1]
    assert regressed.summary["baseline_model"] == _version_dir(output, v2)
    assert regressed.summary["blessed"] == {"evaluator": False, "infra_validator": True}
    # Above the absolute floors: only the comparison with the served model refuses it.
    overall = regressed.summary["metrics"]["overall"]
    assert overall["auc"] >= 0.85 and overall["binary_accuracy"] >= 0.75
    [failure] = regressed.summary["gate_failures"]
    assert failure["gate"] == "Evaluator"
    assert failure["reason"].startswith("auc -") and "against the baseline" in failure["reason"]
    assert any(line == f"  Evaluator: {failure['reason']}" for line in regressed.stderr)
    assert regressed.versions == better.versions  # v2 is still the newest


def test_rollback_serves_the_old_model_again_as_the_newest_version(
    weak, regressed, rolled_back, output
):
    assert rolled_back.code == 0, rolled_back.stderr
    [v1], v2 = weak.versions, regressed.versions[-1]
    v3 = rolled_back.versions[-1]
    assert rolled_back.versions == [v1, v2, v3] and v3 > v2  # history stays
    serving = str(serving_dir(output))
    digest = model_versions.directory_digest
    assert digest(_version_dir(output, v3)) == digest(_version_dir(output, v1))
    revoked = json.loads((serving_dir(output) / model_versions.REVOKED_FILE).read_text())
    assert list(revoked) == [digest(_version_dir(output, v2))]
    assert revoked[digest(_version_dir(output, v2))]["restored"] == v1
    assert model_versions.served_versions(serving) == rolled_back.versions


def test_the_next_run_compares_with_the_restored_model_and_keeps_the_rollback(
    rolled_back, after_rollback, output
):
    assert after_rollback.code == 4, after_rollback.stderr
    assert _states(after_rollback)["Trainer"] == "cached"  # the model rolled back from
    v3 = rolled_back.versions[-1]
    assert after_rollback.summary["baseline_model"] == _version_dir(output, v3)
    assert after_rollback.summary["blessed"] == {"evaluator": True, "infra_validator": True}
    [failure] = after_rollback.summary["gate_failures"]
    assert failure["gate"] == "Pusher" and "rolled back to version" in failure["reason"]
    assert after_rollback.summary["pushed_model"] is None
    assert after_rollback.versions == rolled_back.versions


def test_salary_in_cents_is_drift_from_the_previous_span(after_rollback, drifted):
    assert drifted.code == 3, drifted.stderr
    assert any(line.startswith("  estimated_salary: train:")
               and "drift from the previous span" in line for line in drifted.stderr)
    recorded = {a["feature"]: a["description"] for a in drifted.summary["anomalies"]}
    assert "Jensen-Shannon divergence" in recorded["estimated_salary"]
    assert "drift from the previous span" in recorded["estimated_salary"]
    assert _states(drifted)["Transform"] == "skipped"
    assert drifted.versions == after_rollback.versions


def test_shuffled_labels_are_not_blessed_and_the_served_version_stays(
    rolled_back, drifted, shuffled, output
):
    # Validated against the last accepted span, not the drifted one refused just before.
    assert shuffled.summary["anomalies"] == []
    assert _states(shuffled)["AnomaliesGate"] == "complete"
    assert shuffled.code == 4, shuffled.stderr
    assert shuffled.summary["baseline_model"] == _version_dir(output, rolled_back.versions[-1])
    assert shuffled.summary["blessed"]["evaluator"] is False
    assert shuffled.summary["metrics"]["overall"]["auc"] < 0.75
    reasons = [f["reason"] for f in shuffled.summary["gate_failures"] if f["gate"] == "Evaluator"]
    assert any(reason.startswith("auc ") and "below the floor 0.85" in reason
               for reason in reasons), reasons
    assert shuffled.summary["pushed_model"] is None
    assert shuffled.versions == rolled_back.versions  # the restored version is still newest
