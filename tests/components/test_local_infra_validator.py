"""LOAD_AND_QUERY in process: blesses a servable model, refuses broken ones."""

import json

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from pipeline.components import local_infra_validator as validator
from pipeline.models import model


def test_servable_model_passes_on_both_signatures(tiny_training):
    timings = validator.load_and_query(
        str(tiny_training.serving_model_dir), tiny_training.raw_examples[:8],
        [model.SERVING_DEFAULT, model.SERVING_RAW], [],
    )
    assert {"load_seconds", "serving_default_seconds", "serving_raw_seconds"} <= set(timings)


def test_missing_signature_is_refused(tiny_training):
    with pytest.raises(validator.InfraValidationError, match="signature predict missing"):
        validator.load_and_query(
            str(tiny_training.serving_model_dir), tiny_training.raw_examples[:4],
            ["predict"], [],
        )


def test_unloadable_model_is_refused(tmp_path, tiny_training):
    (tmp_path / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(validator.InfraValidationError, match="model did not load"):
        validator.load_and_query(str(tmp_path), tiny_training.raw_examples[:4],
                                 [model.SERVING_DEFAULT], [])


class _NaNModel(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        return {"probability": tf.fill(tf.shape(examples), float("nan"))}


def test_model_answering_nan_is_refused(tmp_path, tiny_training):
    module = _NaNModel()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    with pytest.raises(validator.InfraValidationError, match=r"outside \[0, 1\]"):
        validator.load_and_query(str(tmp_path), tiny_training.raw_examples[:4],
                                 ["serving_default"], [])


def _run_executor(tmp_path, model_uri, examples_dir, signatures):
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(model_uri)
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_dir)
    examples.split_names = '["eval"]'
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    (tmp_path / "blessing").mkdir()
    request_spec = {"tensorflowServing": {"signatureNames": signatures},
                    "splitName": "eval", "numExamples": 5}
    validator.LocalInfraValidatorExecutor().Do(
        {"model": [model_artifact], "examples": [examples]},
        {"blessing": [blessing]},
        {"request_spec": json.dumps(request_spec)},
    )
    return blessing


@pytest.fixture()
def eval_examples_dir(tmp_path, tiny_training):
    split = tmp_path / "examples" / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for record in tiny_training.raw_examples[:10]:
            writer.write(record)
    return split.parent


def test_executor_writes_a_real_infra_blessing(tmp_path, tiny_training, eval_examples_dir):
    blessing = _run_executor(
        tmp_path, tiny_training.serving_model_dir.parent, eval_examples_dir,
        [model.SERVING_DEFAULT, model.SERVING_RAW],
    )
    assert blessing.get_int_custom_property("blessed") == 1
    assert (tmp_path / "blessing" / validator.BLESSED_FILE).exists()


def test_executor_marks_a_broken_model_not_blessed(tmp_path, tiny_training, eval_examples_dir):
    blessing = _run_executor(
        tmp_path, tiny_training.serving_model_dir.parent, eval_examples_dir, ["no_such"]
    )
    assert blessing.get_int_custom_property("blessed") == 0
    assert "no_such" in blessing.get_string_custom_property("reason")
    assert (tmp_path / "blessing" / validator.NOT_BLESSED_FILE).exists()


class _KerasInModule(tf.Module):
    """A Keras 3 model exported without tracking its tf.Variables: loads in TF 2, not in TF 1."""

    def __init__(self):
        super().__init__()
        import keras

        inputs = keras.Input(shape=(1,), dtype="float32")
        self.model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        ones = tf.ones([tf.shape(examples)[0], 1])
        return {"probability": tf.reshape(self.model(ones), [-1])}


def test_model_that_tf_serving_could_not_restore_is_refused(tmp_path, tiny_training):
    module = _KerasInModule()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    assert "serving_default" in tf.saved_model.load(str(tmp_path)).signatures  # TF 2 is fine
    with pytest.raises(validator.InfraValidationError, match="Could not find variable"):
        validator.load_and_query(str(tmp_path), tiny_training.raw_examples[:4],
                                 ["serving_default"], [])
