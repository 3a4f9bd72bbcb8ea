"""Writes BulkInferrer's output as a CSV a person can open: user_id, probability, class.

BulkInferrer emits tf.Examples (the input features plus the prediction columns); downstream
tools and people want a table keyed by user.
"""

# No `from __future__ import annotations`: TFX reads these annotations as types.
import csv
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from pipeline.models import features

PREDICTIONS_FILE = "predictions.csv"
# The output's key: the name of PredictionsExport's `predictions` parameter below.
PREDICTIONS_KEY = "predictions"
COLUMNS = (features.ID_KEY, features.PROBABILITY_KEY, features.CLASS_KEY)


class PredictionsCsv(tfx.dsl.Artifact):
    """A directory holding ``predictions.csv``."""

    # The module and class TFX imports it by on KFP and Vertex (pipeline/__init__.py).
    TYPE_NAME = "pipeline.PredictionsCsv"


def _value(feature: tf.train.Feature):
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if values else ""


def write_predictions_csv(examples_uri: str, splits: list[str], destination: str) -> int:
    """Converts every split's examples under ``examples_uri``; returns the row count."""
    rows = 0
    with tf.io.gfile.GFile(destination, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for split in splits:
            pattern = os.path.join(examples_uri, f"Split-{split}", "*")
            files = sorted(tf.io.gfile.glob(pattern))
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
                example = tf.train.Example.FromString(record.numpy())
                values = example.features.feature
                probability = _value(values[features.PROBABILITY_KEY])
                writer.writerow([
                    _value(values[features.ID_KEY]),
                    f"{probability:.6f}",
                    _value(values[features.CLASS_KEY]),
                ])
                rows += 1
    return rows


@tfx.dsl.components.component
def PredictionsExport(  # noqa: N802 - TFX component names are class-like
    inferred_examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples
    ],
    predictions: tfx.dsl.components.OutputArtifact[PredictionsCsv],
) -> tfx.dsl.components.OutputDict(rows=int):
    """Writes ``predictions.csv``; no rows when BulkInferrer skipped an unblessed model."""
    splits = artifact_utils.decode_split_names(inferred_examples.split_names or "[]")
    rows = write_predictions_csv(
        inferred_examples.uri, splits, os.path.join(predictions.uri, PREDICTIONS_FILE)
    )
    return {"rows": rows}
