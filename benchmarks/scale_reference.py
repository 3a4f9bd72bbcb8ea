"""A hand-written reference of the pipeline's training path, for benchmarks/scale.py.

The same steps as the pipeline, by hand: read the CSV with pandas, z-score age and
salary and one-hot gender and age band with the train split's statistics, train the same
ensemble of networks with the same batch size and passes, and score the eval split. The split
is the pipeline's own (its ExampleGen's hash buckets, read from the run's output by user id),
so both AUCs are measured on the same rows. Prints one JSON line:
``{"seconds": ..., "auc": ..., "train_rows": ..., "eval_rows": ...}``.

    .venv/bin/python benchmarks/scale_reference.py DATA.csv RUN_OUTPUT_DIR
"""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

# A hand-written script pays for these imports: they are timed.
_IMPORTS_STARTED = time.monotonic()
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

IMPORT_SECONDS = time.monotonic() - _IMPORTS_STARTED

# Not timed: the pipeline's model code brings TFX along, which a hand-written script would not.
from pipeline.models import constants, features, model  # noqa: E402


def eval_user_ids(run_dir: Path) -> set[int]:
    """User ids of the pipeline's eval split (CsvExampleGen's output in ``run_dir``)."""
    examples = max(glob.glob(str(run_dir / "pipeline_root" / "CsvExampleGen" / "examples" / "*")),
                   key=lambda path: int(Path(path).name))
    files = glob.glob(f"{examples}/Split-eval/*")
    ids = set()
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        ids.add(example.features.feature["user_id"].int64_list.value[0])
    return ids


def _features(frame: pd.DataFrame, means: pd.Series, stds: pd.Series) -> dict[str, np.ndarray]:
    numeric = (frame[["Age", "EstimatedSalary"]] - means) / stds
    # The bands tft.apply_buckets gives: below the first boundary is band 0.
    age_band = np.searchsorted(features.AGE_BAND_BOUNDARIES, frame["Age"].to_numpy(), side="right")
    return {
        "age_xf": numeric["Age"].to_numpy("float32").reshape(-1, 1),
        "estimated_salary_xf": numeric["EstimatedSalary"].to_numpy("float32").reshape(-1, 1),
        "gender_xf": (frame["Gender"] == "Male").to_numpy("int64").reshape(-1, 1),
        "age_band_xf": age_band.astype("int64").reshape(-1, 1),
    }


def main(data: Path, run_dir: Path) -> None:
    eval_ids = eval_user_ids(run_dir)  # the split is the pipeline's: not reference work
    started = time.monotonic()
    frame = pd.read_csv(data)
    is_eval = frame["User ID"].isin(eval_ids).to_numpy()
    train, evaluation = frame[~is_eval], frame[is_eval]
    means = train[["Age", "EstimatedSalary"]].mean()
    stds = train[["Age", "EstimatedSalary"]].std(ddof=0)
    x_train, x_eval = _features(train, means, stds), _features(evaluation, means, stds)
    y_train = train["Purchased"].to_numpy("float32")
    budget = model.training_budget(len(train))
    keras.utils.set_random_seed(0)
    probabilities = []
    for _ in range(constants.ENSEMBLE_SIZE):
        network = model.build_model(constants.DEFAULT_HPARAMS)
        network.fit(x_train, y_train, batch_size=budget.batch_size, epochs=budget.epochs,
                    shuffle=True, verbose=0)
        probabilities.append(network.predict(x_eval, batch_size=8192, verbose=0).reshape(-1))
    auc = roc_auc_score(evaluation["Purchased"], np.mean(probabilities, axis=0))
    seconds = IMPORT_SECONDS + time.monotonic() - started
    print(json.dumps({"seconds": round(seconds, 1), "auc": round(float(auc), 4),
                      "train_rows": int(len(train)), "eval_rows": int(len(evaluation))}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
