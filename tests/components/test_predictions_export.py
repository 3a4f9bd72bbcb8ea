"""PredictionsExport on BulkInferrer output written by TFX's own conversion.

BulkInferrer turns each PredictionLog into a tf.Example (the input features plus the columns of
its ``output_example_spec``) with ``prediction_to_example_utils.convert`` and writes them as
gzipped TFRecords, ``Split-<split>/examples-*.gz``. The files here are made the same way, from
PredictionLogs shaped as the model's ``serving_default`` answers one example.
"""

from __future__ import annotations

import csv

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.components.bulk_inferrer import prediction_to_example_utils
from tfx.proto import bulk_inferrer_pb2
from tfx.types import artifact_utils, standard_artifacts

from pipeline.components import predictions_export
from pipeline.models import features, model

# As the pipeline configures BulkInferrer: both serving outputs become columns of their name.
OUTPUT_EXAMPLE_SPEC = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
    bulk_inferrer_pb2.OutputColumnsSpec(
        signature_name=model.SERVING_DEFAULT,
        predict_output=bulk_inferrer_pb2.PredictOutput(output_columns=[
            bulk_inferrer_pb2.PredictOutputCol(output_key=key, output_column=key)
            for key in (features.PROBABILITY_KEY, features.CLASS_KEY)
        ]),
    )
])

Prediction = tuple[int, float]  # (user id, probability)


def _inferred_example(user_id: int, probability: float) -> tf.train.Example:
    """What BulkInferrer writes for one inference row (no label, as staged for inference)."""
    request = tf.train.Example()
    feature = request.features.feature
    feature[features.ID_KEY].int64_list.value.append(user_id)
    feature["gender"].bytes_list.value.append(b"Female")
    feature["age"].int64_list.value.append(40)
    feature["estimated_salary"].int64_list.value.append(60_000)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["examples"].CopyFrom(
        tf.make_tensor_proto([request.SerializeToString()])
    )
    outputs = log.predict_log.response.outputs
    outputs[features.PROBABILITY_KEY].CopyFrom(tf.make_tensor_proto([[probability]], tf.float32))
    outputs[features.CLASS_KEY].CopyFrom(tf.make_tensor_proto([[int(probability >= 0.5)]],
                                                              tf.int64))
    return prediction_to_example_utils.convert(log, OUTPUT_EXAMPLE_SPEC)


def _write_split(root, split: str, shards: list[list[Prediction]]) -> None:
    directory = root / f"Split-{split}"
    directory.mkdir(parents=True)
    for index, shard in enumerate(shards):
        name = f"examples-{index:05d}-of-{len(shards):05d}.gz"
        with tf.io.TFRecordWriter(str(directory / name), options="GZIP") as writer:
            for user_id, probability in shard:
                writer.write(_inferred_example(user_id, probability).SerializeToString())


def _read_csv(path) -> list[list[str]]:
    with tf.io.gfile.GFile(str(path)) as handle:
        return list(csv.reader(handle))


def test_every_listed_split_becomes_rows_keyed_by_user(tmp_path):
    _write_split(tmp_path / "inferred", "inference", [[(7, 0.8125), (3, 0.25)], [(9, 0.5)]])
    _write_split(tmp_path / "inferred", "eval", [[(12, 0.123456789)]])
    destination = tmp_path / "predictions.csv"
    rows = predictions_export.write_predictions_csv(
        str(tmp_path / "inferred"), ["inference", "eval"], str(destination)
    )
    assert rows == 4
    assert _read_csv(destination) == [
        ["user_id", "probability", "class"],
        # Shards in name order, records in file order; probabilities to six places.
        ["7", "0.812500", "1"],
        ["3", "0.250000", "0"],
        ["9", "0.500000", "1"],  # the model's threshold: 0.5 is a purchase
        ["12", "0.123457", "0"],
    ]


def test_a_split_not_listed_is_not_exported(tmp_path):
    _write_split(tmp_path / "inferred", "inference", [[(1, 0.9)]])
    _write_split(tmp_path / "inferred", "train", [[(2, 0.1)]])
    destination = tmp_path / "predictions.csv"
    assert predictions_export.write_predictions_csv(
        str(tmp_path / "inferred"), ["inference"], str(destination)
    ) == 1
    assert [row[0] for row in _read_csv(destination)] == ["user_id", "1"]


def test_the_csv_goes_through_tensorflow_file_systems(tmp_path):
    # The pipeline root is gs:// on a cluster; TensorFlow's in-memory file system stands in.
    _write_split(tmp_path / "inferred", "inference", [[(5, 0.75)]])
    destination = "ram://predictions-export-test/predictions.csv"
    predictions_export.write_predictions_csv(str(tmp_path / "inferred"), ["inference"],
                                             destination)
    assert _read_csv(destination) == [["user_id", "probability", "class"], ["5", "0.750000", "1"]]


def _run_component(tmp_path, inferred: standard_artifacts.Examples):
    predictions = predictions_export.PredictionsCsv()
    predictions.uri = str(tmp_path / "predictions")
    tf.io.gfile.makedirs(predictions.uri)  # the launcher creates output directories
    rows = standard_artifacts.Integer()
    rows.uri = str(tmp_path / "rows")
    predictions_export.PredictionsExport.EXECUTOR_SPEC.executor_class().Do(
        {"inferred_examples": [inferred]},
        {predictions_export.PREDICTIONS_KEY: [predictions], "rows": [rows]},
        {},
    )
    written = standard_artifacts.Integer()
    written.uri = rows.uri
    return _read_csv(tmp_path / "predictions" / predictions_export.PREDICTIONS_FILE), written.read()


def test_the_component_exports_the_splits_bulk_inferrer_recorded(tmp_path):
    _write_split(tmp_path / "inferred", "inference", [[(1, 0.9), (2, 0.2)]])
    inferred = standard_artifacts.Examples()
    inferred.uri = str(tmp_path / "inferred")
    inferred.split_names = artifact_utils.encode_split_names(["inference"])
    table, rows = _run_component(tmp_path, inferred)
    assert rows == 2
    assert table == [["user_id", "probability", "class"],
                     ["1", "0.900000", "1"], ["2", "0.200000", "0"]]


@pytest.mark.parametrize("split_names", [None, "[]"], ids=["unset", "empty"])
def test_no_inference_gives_a_header_and_no_rows(tmp_path, split_names):
    # BulkInferrer skips an unblessed model: its output records no split and holds no file.
    inferred = standard_artifacts.Examples()
    inferred.uri = str(tmp_path / "inferred")
    if split_names is not None:
        inferred.split_names = split_names
    table, rows = _run_component(tmp_path, inferred)
    assert rows == 0
    assert table == [["user_id", "probability", "class"]]
