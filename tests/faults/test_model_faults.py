"""Only a model at least as good as the served one, and servable, replaces it; rollbacks stick.

Real pipeline runs on copies of the real data. Every scenario builds on one first run, made
once per module: a weak model (2 epochs) pushed as version v1. A scenario that needs only
what that run left works on a copy of its output directory, made for it alone, so it runs
by itself and a failure in it leaves the others alone:

- a model with a broken serving signature is blessed on metrics, refused by the
  InfraValidator, and not pushed;
- salary recorded in cents drifts from the previous span: exit 3; after it, shuffled labels
  pass validation (the rejected span is not the drift baseline) and train a model that is
  not blessed.

The served models' history needs the Trainer's cache of the first run, which a copy does not
have (CsvExampleGen's cache key holds the absolute path of the staged data), so it goes on in
the first run's own directory, after the copies were taken, each step checked against the
state the previous one left:

1. a better model (8 epochs) is pushed as v2, and v1 stays for rollback;
2. the weak model again (from the cache) is worse than the served v2: not blessed, by the
   baseline comparison alone (it passes the absolute floors);
3. ``tfxkfp rollback --to v1`` serves v1's model again as v3 and revokes v2's model;
4. the better model again (from the cache) is judged against v3, the restored model, and is
   blessed, but not pushed: the rollback stands.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import broken_serving_model
from fault_runs import Run, column, serving_dir, tfxkfp
from pipeline import exit_codes, model_versions, node_ids

pytestmark = pytest.mark.e2e

WEAK_EPOCHS, GOOD_EPOCHS = "2", "8"


@dataclass(frozen=True)
class FirstRun:
    output: Path
    run: Run
    pristine: Path  # a copy of ``output`` as the first run left it


def _run(output: Path, data: Path, *args: str) -> Run:
    return tfxkfp(output, "run", "--data", str(data), "--output", str(output), "--no-tune",
                  *args)


def _states(run: Run) -> dict[str, str]:
    return {c["id"]: c["status"] for c in run.summary["components"]}


def _version_dir(output: Path, version: int) -> str:
    return str(serving_dir(output) / str(version))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def clean_csv(with_fault, data_dir) -> Path:
    return with_fault(data_dir / "clean.csv", lambda header, rows: None)


@pytest.fixture(scope="module")
def first(clean_csv, tmp_path_factory) -> FirstRun:
    output = tmp_path_factory.mktemp("first") / "out"
    run = _run(output, clean_csv, "--epochs", WEAK_EPOCHS)
    # Copied at once: the history scenario goes on changing ``output``. Copying a finished
    # output directory takes seconds; running the pipeline again, minutes.
    pristine = tmp_path_factory.mktemp("first_pristine") / "out"
    shutil.copytree(output, pristine, symlinks=True)
    return FirstRun(output, run, pristine)


@pytest.fixture(scope="module")
def weak(first) -> Run:
    return first.run


@pytest.fixture(scope="module")
def pushed_first(first) -> FirstRun:
    """The first run, for scenarios that build on its model: they cannot start without one."""
    if first.run.code != exit_codes.OK:
        pytest.fail(f"the first run exited {first.run.code}, not pushing the model this "
                    "scenario builds on (test_a_first_model_is_pushed says why)")
    return first


def _copy_of_first(first: FirstRun, tmp_path_factory, name: str) -> Path:
    output = tmp_path_factory.mktemp(name) / "out"
    shutil.copytree(first.pristine, output, symlinks=True)
    return output


@pytest.fixture(scope="module")
def broken(pushed_first, clean_csv, tmp_path_factory) -> Run:
    output = _copy_of_first(pushed_first, tmp_path_factory, "broken")
    return _run(output, clean_csv, "--epochs", GOOD_EPOCHS,
                "--run-fn", f"{broken_serving_model.__name__}.run_fn")


@pytest.fixture(scope="module")
def better(pushed_first, clean_csv) -> Run:
    return _run(pushed_first.output, clean_csv, "--epochs", GOOD_EPOCHS)


@pytest.fixture(scope="module")
def regressed(better, pushed_first, clean_csv) -> Run:
    return _run(pushed_first.output, clean_csv, "--epochs", WEAK_EPOCHS)


@pytest.fixture(scope="module")
def rolled_back(regressed, pushed_first) -> Run:
    output = pushed_first.output
    return tfxkfp(output, "rollback", "--to", str(pushed_first.run.versions[0]),
                  "--output", str(output))


@pytest.fixture(scope="module")
def after_rollback(rolled_back, pushed_first, clean_csv) -> Run:
    return _run(pushed_first.output, clean_csv, "--epochs", GOOD_EPOCHS)


@pytest.fixture(scope="module")
def drift_output(pushed_first, tmp_path_factory) -> Path:
    return _copy_of_first(pushed_first, tmp_path_factory, "drift")


@pytest.fixture(scope="module")
def drifted(drift_output, with_fault, data_dir) -> Run:
    def salary_in_cents(header, rows):
        salary = column(header, "EstimatedSalary")
        for row in rows:
            row[salary] = str(int(row[salary]) * 100)

    return _run(drift_output, with_fault(data_dir / "cents.csv", salary_in_cents),
                "--epochs", WEAK_EPOCHS)


@pytest.fixture(scope="module")
def shuffled(drifted, drift_output, with_fault, data_dir) -> Run:
    def shuffle_labels(header, rows):
        label = column(header, "Purchased")
        labels = [row[label] for row in rows]
        random.Random(3).shuffle(labels)
        for row, value in zip(rows, labels, strict=True):
            row[label] = value

    return _run(drift_output, with_fault(data_dir / "shuffled.csv", shuffle_labels),
                "--epochs", WEAK_EPOCHS)


def test_a_first_model_is_pushed(weak):
    assert weak.code == exit_codes.OK, weak.stderr
    # No baseline model and no previous span yet: both lookups succeed with nothing.
    assert all(c["status"] == "complete" for c in weak.summary["components"]), (
        weak.summary["components"]
    )
    assert weak.summary["baseline_model"] is None
    assert len(weak.versions) == 1


def test_a_broken_serving_signature_is_not_pushed(weak, broken):
    assert broken.code == exit_codes.NOT_BLESSED, broken.stderr
    assert broken.summary["status"] == "not_blessed"
    # Good on metrics (serving_default is intact), refused only because it does not serve.
    assert broken.summary["blessed"] == {"evaluator": True, "infra_validator": False}
    [failure] = broken.summary["gate_failures"]
    assert failure["gate"] == node_ids.INFRA_VALIDATOR
    assert "serving_raw" in failure["reason"] and "disagree" in failure["reason"]
    assert any(f"{node_ids.INFRA_VALIDATOR}: signatures" in line for line in broken.stderr)
    assert broken.summary["pushed_model"] is None
    assert broken.versions == weak.versions


def test_salary_in_cents_is_drift_from_the_previous_span(weak, drifted):
    assert drifted.code == exit_codes.ANOMALIES, drifted.stderr
    assert any(line.startswith("  estimated_salary: train:")
               and "drift from the previous span" in line for line in drifted.stderr)
    recorded = {a["feature"]: a["description"] for a in drifted.summary["anomalies"]}
    assert "Jensen-Shannon divergence" in recorded["estimated_salary"]
    assert "drift from the previous span" in recorded["estimated_salary"]
    assert _states(drifted)[node_ids.TRANSFORM] == "skipped"
    assert drifted.versions == weak.versions  # what the copy of the first run served


def test_shuffled_labels_are_not_blessed_and_the_served_version_stays(
    drifted, shuffled, drift_output
):
    # Validated against the last accepted span, not the drifted one refused just before.
    assert shuffled.summary["anomalies"] == []
    assert _states(shuffled)[node_ids.ANOMALIES_GATE] == "complete"
    assert shuffled.code == exit_codes.NOT_BLESSED, shuffled.stderr
    assert shuffled.summary["baseline_model"] == _version_dir(drift_output, drifted.versions[-1])
    assert shuffled.summary["blessed"]["evaluator"] is False
    assert shuffled.summary["metrics"]["overall"]["auc"] < 0.75
    reasons = [f["reason"] for f in shuffled.summary["gate_failures"]
               if f["gate"] == node_ids.EVALUATOR]
    assert any(reason.startswith("auc ") and "below the floor 0.85" in reason
               for reason in reasons), reasons
    assert shuffled.summary["pushed_model"] is None
    assert shuffled.versions == drifted.versions  # the served version is still the newest


def test_a_better_model_is_pushed_as_a_new_version_and_the_previous_stays(
    weak, better, pushed_first
):
    output = pushed_first.output
    assert better.code == exit_codes.OK, better.stderr
    [v1] = weak.versions
    assert better.summary["baseline_model"] == _version_dir(output, v1)
    assert better.summary["metrics"]["overall"]["auc"] > weak.summary["metrics"]["overall"]["auc"]
    v2 = better.summary["pushed_model"]["version"]
    assert better.versions == [v1, v2] and v2 > v1
    for version in better.versions:
        assert (serving_dir(output) / str(version) / "saved_model.pb").is_file()


def test_a_model_worse_than_the_served_one_is_not_blessed(better, regressed, pushed_first):
    output = pushed_first.output
    assert regressed.code == exit_codes.NOT_BLESSED, regressed.stderr
    assert _states(regressed)[node_ids.TRAINER] == "cached"  # the weak model of the first run
    v2 = better.versions[-1]
    assert regressed.summary["baseline_model"] == _version_dir(output, v2)
    assert regressed.summary["blessed"] == {"evaluator": False, "infra_validator": True}
    # Above the absolute floors: only the comparison with the served model refuses it.
    overall = regressed.summary["metrics"]["overall"]
    assert overall["auc"] >= 0.85 and overall["binary_accuracy"] >= 0.75
    [failure] = regressed.summary["gate_failures"]
    assert failure["gate"] == node_ids.EVALUATOR
    assert failure["reason"].startswith("auc -") and "against the baseline" in failure["reason"]
    assert any(line == f"  {node_ids.EVALUATOR}: {failure['reason']}"
               for line in regressed.stderr)
    assert regressed.versions == better.versions  # v2 is still the newest


def test_rollback_serves_the_old_model_again_as_the_newest_version(
    weak, regressed, rolled_back, pushed_first
):
    output = pushed_first.output
    assert rolled_back.code == exit_codes.OK, rolled_back.stderr
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
    rolled_back, after_rollback, pushed_first
):
    assert after_rollback.code == exit_codes.NOT_BLESSED, after_rollback.stderr
    assert _states(after_rollback)[node_ids.TRAINER] == "cached"  # the model rolled back from
    v3 = rolled_back.versions[-1]
    assert after_rollback.summary["baseline_model"] == _version_dir(pushed_first.output, v3)
    assert after_rollback.summary["blessed"] == {"evaluator": True, "infra_validator": True}
    [failure] = after_rollback.summary["gate_failures"]
    assert failure["gate"] == node_ids.PUSHER and "rolled back to version" in failure["reason"]
    assert after_rollback.summary["pushed_model"] is None
    assert after_rollback.versions == rolled_back.versions
