"""The whole pipeline through the `tfxkfp` command, as a user runs it.

On the real Social Network Ads CSV when ../shared has it (synthetic data otherwise): the
first run trains, blesses and pushes; the second run on the same output directory serves
everything it can from the cache and evaluates against the first run's model.
"""

import csv
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline import node_ids
from pipeline.data.synthesize import HEADER, synthesize, write_csv

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run_tmpdir(tmp_path_factory) -> Path:
    """The TMPDIR of every run here, so a test can see what runs leave behind in it."""
    return tmp_path_factory.mktemp("tmpdir")


@pytest.fixture(scope="module")
def tfxkfp(tfxkfp_script, run_tmpdir) -> Callable[..., subprocess.CompletedProcess]:
    """``tfxkfp(*args)``: the command in a process of its own, as a user runs it."""

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(run_tmpdir)}
        result = subprocess.run([tfxkfp_script, *args], capture_output=True, text=True,
                                env=env, timeout=1200)
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        return result

    return run


def summary_of(output: Path) -> dict:
    return json.loads((output / "run_summary.json").read_text())


@pytest.fixture(scope="module")
def training_data(real_data, tmp_path_factory) -> Path:
    if real_data is not None:
        return real_data
    return write_csv(tmp_path_factory.mktemp("data") / "synthetic.csv", rows=400, seed=11)


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run") / "output"


@pytest.fixture(scope="module")
def first_run(tfxkfp, training_data, output_dir):
    result = tfxkfp("run", "--data", str(training_data), "--output", str(output_dir))
    return result, summary_of(output_dir)


@pytest.fixture(scope="module")
def second_run(tfxkfp, first_run, training_data, output_dir, tmp_path_factory):
    inference = tmp_path_factory.mktemp("inference") / "new_users.csv"
    inference.write_text(
        "User ID,Gender,Age,EstimatedSalary\n1,Male,59,140000\n2,Female,21,18000\n"
    )
    result = tfxkfp("run", "--data", str(training_data), "--output", str(output_dir),
                    "--inference-data", str(inference))
    return result, summary_of(output_dir)


def test_first_run_pushes_a_blessed_model(first_run, real_data, default_pipeline_node_ids):
    result, summary = first_run
    assert result.returncode == 0, result.stderr
    assert summary["status"] == "pushed" and summary["exit_code"] == 0
    assert {c["id"] for c in summary["components"]} == default_pipeline_node_ids
    assert all(c["status"] == "complete" for c in summary["components"]), summary["components"]
    assert summary["blessed"] == {"evaluator": True, "infra_validator": True}
    assert summary["baseline_model"] is None
    assert summary["anomalies"] == []
    overall = summary["metrics"]["overall"]
    # The eval split is a quarter of the data by hash buckets.
    assert 60 <= overall["example_count"] <= 140
    if real_data is not None:
        assert overall["auc"] >= 0.93 and overall["binary_accuracy"] >= 0.88, overall
    assert {"gender=Female", "gender=Male"} <= set(summary["metrics"]["slices"])
    assert any(name.startswith("age_band=") for name in summary["metrics"]["slices"])
    # Progress: every component announced itself on the terminal.
    for component in default_pipeline_node_ids:
        assert f"] {component} ..." in result.stdout


def test_a_run_leaves_no_copy_of_tfx_in_the_temporary_directory(first_run, run_tmpdir):
    # TFX packages its whole installation (52 MB) for remote Beam workers, in a directory it
    # never removes, whenever a Beam step is given any Beam argument; local runs give none.
    result, _ = first_run
    assert result.returncode == 0, result.stderr
    copies = sorted(str(path) for path in run_tmpdir.rglob("tfx_ephemeral*"))
    assert copies == []


def test_pushed_model_is_a_tf_serving_version_answering_both_signatures(first_run):
    _, summary = first_run
    pushed = Path(summary["pushed_model"]["path"])
    assert pushed.name == str(summary["pushed_model"]["version"])
    assert (pushed / "saved_model.pb").is_file()
    assert [p.name for p in pushed.parent.iterdir()] == [pushed.name]  # no partial leftovers

    loaded = tf.saved_model.load(str(pushed))
    users = [("Male", 59, 140_000), ("Female", 21, 18_000), ("Female", 44, 80_000)]
    examples = []
    for gender, age, salary in users:
        example = tf.train.Example()
        example.features.feature["gender"].bytes_list.value.append(gender.encode())
        example.features.feature["age"].int64_list.value.append(age)
        example.features.feature["estimated_salary"].int64_list.value.append(salary)
        examples.append(example.SerializeToString())
    by_example = loaded.signatures["serving_default"](examples=tf.constant(examples))
    by_features = loaded.signatures["serving_raw"](
        gender=tf.constant([u[0] for u in users]),
        age=tf.constant([u[1] for u in users], tf.int64),
        estimated_salary=tf.constant([u[2] for u in users], tf.int64),
    )
    probability = by_example["probability"].numpy()
    np.testing.assert_allclose(by_features["probability"].numpy(), probability, atol=1e-6)
    # Older, richer users buy: the model learned the relationship in the data.
    assert probability[0] > 0.5 > probability[1]


def test_predictions_csv_covers_the_eval_split(first_run):
    _, summary = first_run
    with open(summary["predictions"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["metrics"]["overall"]["example_count"]
    assert set(rows[0]) == {"user_id", "probability", "class"}
    for row in rows:
        probability = float(row["probability"])
        assert 0.0 <= probability <= 1.0
        assert int(row["class"]) == int(probability >= 0.5)


def test_second_run_uses_the_cache_and_the_first_model_as_baseline(first_run, second_run):
    _, first = first_run
    result, second = second_run
    assert result.returncode == 0, result.stderr
    states = {c["id"]: c["status"] for c in second["components"]}
    for cached in (node_ids.EXAMPLE_GEN, node_ids.STATISTICS_GEN, node_ids.TRANSFORM,
                   node_ids.TUNER, node_ids.TRAINER, node_ids.INFRA_VALIDATOR):
        assert states[cached] == "cached", states
    # The baseline is looked up afresh on every run (the serving directory may have changed);
    # validation reruns, now with the first span as its drift baseline, and finds no drift.
    assert states[node_ids.LATEST_SERVED_MODEL] == states[node_ids.EXAMPLE_VALIDATOR] == "complete"
    assert second["anomalies"] == []
    # The candidate is the cached first model, and the baseline is that same model as served,
    # so it does not regress, and it is already serving: no second copy is pushed.
    assert second["baseline_model"] == first["pushed_model"]["path"]
    assert second["blessed"]["evaluator"] is True
    assert second["pushed_model"] == first["pushed_model"]
    assert "from cache:" in result.stdout


def test_second_run_predicts_for_the_inference_data(second_run):
    _, summary = second_run
    with open(summary["predictions"]) as handle:
        rows = {row["user_id"]: float(row["probability"]) for row in csv.DictReader(handle)}
    assert set(rows) == {"1", "2"}
    assert rows["1"] > 0.5 > rows["2"]


def test_anomalies_stop_the_run_before_training(tfxkfp, tmp_path):
    data = tmp_path / "bad.csv"
    rows = synthesize(120, seed=2)
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows[:-2])
        writer.writerow([99, "Unknown", 30, 50_000, 0])  # outside the gender domain
        writer.writerow([98, "Male", 250, 50_000, 1])  # implausible age
    output = tmp_path / "out"
    result = tfxkfp("run", "--data", str(data), "--output", str(output), "--no-tune")
    assert result.returncode == 3
    assert f"error: {data}: data anomalies" in result.stderr
    summary = summary_of(output)
    assert summary["status"] == "anomalies" and summary["exit_code"] == 3
    assert {a["feature"] for a in summary["anomalies"]} == {"gender", "age"}
    states = {c["id"]: c["status"] for c in summary["components"]}
    assert states[node_ids.ANOMALIES_GATE] == "failed"
    assert states[node_ids.TRANSFORM] == states[node_ids.TRAINER] == "skipped"
    assert states[node_ids.PUSHER] == "skipped"
    assert not (output / "serving").exists()


def test_unlearnable_labels_are_not_blessed_and_not_pushed(tfxkfp, tmp_path):
    # Labels independent of the features: AUC near 0.5 fails the Evaluator's value floor.
    rng = np.random.default_rng(4)
    data = tmp_path / "noise.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for user_id, gender, age, salary, _ in synthesize(300, seed=9):
            writer.writerow([user_id, gender, age, salary, int(rng.random() < 0.4)])
    hparams = tmp_path / "hparams.json"
    hparams.write_text(json.dumps({"hidden_units": 8, "hidden_layers": 1}))
    output = tmp_path / "out"
    result = tfxkfp("run", "--data", str(data), "--output", str(output),
                    "--hparams", str(hparams))
    assert result.returncode == 4
    summary = summary_of(output)
    assert summary["status"] == "not_blessed"
    assert summary["blessed"]["evaluator"] is False
    assert summary["pushed_model"] is None
    states = {c["id"]: c["status"] for c in summary["components"]}
    assert states[node_ids.HPARAMS_IMPORTER] == "complete" and node_ids.TUNER not in states
    assert not any((output / "serving" / "social_network_ads").glob("[0-9]*"))
