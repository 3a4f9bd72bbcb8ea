"""Compares the pipeline's model with classical baselines on exactly the same eval split.

Reads a finished run's output directory: the Transform output (so the features and the
train/eval split are the pipeline's own) and run_summary.json (the pipeline's TFMA metrics).
Fits an RBF-SVM (C and gamma tuned by 4-fold CV on the train split) and a logistic regression
with scikit-learn and prints one table. Usage:

    .venv/bin/python benchmarks/reference_models.py output
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

FEATURES = ("age_xf", "estimated_salary_xf", "gender_xf")


def _newest(pattern: str) -> str:
    return max(glob.glob(pattern), key=lambda path: int(Path(path).name))


def load_split(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    transform = run_dir / "pipeline_root" / "Transform"
    spec = tft.TFTransformOutput(_newest(str(transform / "transform_graph" / "*"))
                                 ).transformed_feature_spec()
    files = glob.glob(str(Path(_newest(str(transform / "transformed_examples" / "*")))
                          / f"Split-{split}" / "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    parsed = tf.io.parse_example(tf.constant(records), spec)
    features = np.hstack([parsed[key].numpy().astype(float) for key in FEATURES])
    return features, parsed["purchased"].numpy().reshape(-1)


def main(run_dir: Path) -> None:
    x_train, y_train = load_split(run_dir, "train")
    x_eval, y_eval = load_split(run_dir, "eval")
    svm = GridSearchCV(
        SVC(kernel="rbf", probability=True, random_state=0),
        {"C": [0.3, 1, 3, 10], "gamma": [0.1, 0.3, 1, 3]}, cv=4, scoring="roc_auc",
    ).fit(x_train, y_train)
    logistic = LogisticRegression().fit(x_train, y_train)
    overall = json.loads((run_dir / "run_summary.json").read_text())["metrics"]["overall"]
    print(f"train rows {len(y_train)}, eval rows {len(y_eval)}")
    print(f"{'model':<40} {'eval AUC':>9} {'eval acc':>9}")
    print(f"{'pipeline (TFMA)':<40} {overall['auc']:>9.3f} {overall['binary_accuracy']:>9.3f}")
    for name, model in ((f"RBF-SVM {svm.best_params_}", svm), ("logistic regression", logistic)):
        probability = model.predict_proba(x_eval)[:, 1]
        accuracy = np.mean((probability >= 0.5) == y_eval)
        print(f"{name:<40} {roc_auc_score(y_eval, probability):>9.3f} {accuracy:>9.3f}")
    print(f"RBF-SVM 4-fold CV AUC on the train split: {svm.best_score_:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "output"))
