"""run_fn and the exported signatures, on a tiny model trained through a real Transform graph."""

import json

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from pipeline.models import constants, model
from pipeline.models.features import CLASS_KEY, PROBABILITY_KEY


@pytest.fixture(scope="module")
def loaded(tiny_training):
    return tf.saved_model.load(str(tiny_training.serving_model_dir))


def _raw_features(serialized):
    parsed = tf.io.parse_example(tf.constant(serialized), {
        "gender": tf.io.FixedLenFeature([], tf.string),
        "age": tf.io.FixedLenFeature([], tf.int64),
        "estimated_salary": tf.io.FixedLenFeature([], tf.int64),
    })
    return parsed


def test_exports_the_serving_signatures(loaded):
    assert set(loaded.signatures) == {
        model.SERVING_DEFAULT, model.SERVING_RAW, model.TRANSFORM_FEATURES
    }
    raw_inputs = loaded.signatures[model.SERVING_RAW].structured_input_signature[1]
    assert {name: spec.dtype for name, spec in raw_inputs.items()} == {
        "gender": tf.string, "age": tf.int64, "estimated_salary": tf.int64
    }


def test_both_signatures_give_the_same_probabilities(loaded, tiny_training):
    serialized = tiny_training.raw_examples[:20]
    by_example = loaded.signatures[model.SERVING_DEFAULT](examples=tf.constant(serialized))
    by_features = loaded.signatures[model.SERVING_RAW](**_raw_features(serialized))
    probability = by_example[PROBABILITY_KEY].numpy()
    assert probability.shape == (20,)
    assert np.all((probability >= 0) & (probability <= 1))
    np.testing.assert_allclose(by_features[PROBABILITY_KEY].numpy(), probability, atol=1e-6)
    np.testing.assert_array_equal(by_example[CLASS_KEY].numpy(), (probability >= 0.5).astype(int))


def test_serving_ignores_label_and_user_id(loaded):
    # A client's tf.Example carries only the three features.
    example = tf.train.Example()
    example.features.feature["gender"].bytes_list.value.append(b"Female")
    example.features.feature["age"].int64_list.value.append(45)
    example.features.feature["estimated_salary"].int64_list.value.append(90_000)
    result = loaded.signatures[model.SERVING_DEFAULT](
        examples=tf.constant([example.SerializeToString()])
    )
    assert result[PROBABILITY_KEY].shape == (1,)


def test_unknown_gender_is_served_through_the_oov_bucket(loaded):
    result = loaded.signatures[model.SERVING_RAW](
        gender=tf.constant(["Other"]), age=tf.constant([30], tf.int64),
        estimated_salary=tf.constant([50_000], tf.int64),
    )
    assert 0.0 <= float(result[PROBABILITY_KEY][0]) <= 1.0


def test_transform_signature_gives_the_age_band_for_slicing(loaded, tiny_training):
    transformed = loaded.signatures[model.TRANSFORM_FEATURES](
        examples=tf.constant(tiny_training.raw_examples[:3])
    )
    assert "age_band_xf" in transformed


def test_hparams_from_a_tuner_config_override_the_defaults():
    tuned = keras_tuner.HyperParameters()
    tuned.Fixed(constants.HIDDEN_UNITS, 32)
    values = model.hparams_values(json.loads(json.dumps(tuned.get_config())))
    assert values == {**constants.DEFAULT_HPARAMS, constants.HIDDEN_UNITS: 32}
    assert model.hparams_values(None) == constants.DEFAULT_HPARAMS


@pytest.mark.parametrize("layers", [1, 2])
def test_build_model_follows_the_hyperparameters(layers):
    built = model.build_model({**constants.DEFAULT_HPARAMS, constants.HIDDEN_LAYERS: layers})
    dense = [layer for layer in built.layers if layer.__class__.__name__ == "Dense"]
    assert len(dense) == layers + 1  # hidden layers plus the output


@pytest.mark.parametrize(("rows", "max_epochs", "batch_size", "epochs"), [
    (300, 20, 32, 20),  # the real data: trains as its quality was measured
    (3_200, 20, 32, 6),  # 100 steps a pass at the smallest batch: passes stop at 600 steps
    (7_500, 20, 128, 11),
    (75_000, 20, 1024, 9),
    (750_000, 20, 1024, 1),  # a pass alone is past the step budget
    (300, 2, 32, 2),  # --epochs is an upper bound
])
def test_the_training_budget_follows_the_data_size(rows, max_epochs, batch_size, epochs):
    budget = model.training_budget(rows, max_epochs=max_epochs)
    assert (budget.batch_size, budget.epochs) == (batch_size, epochs)
    assert budget.steps == epochs * -(-rows // batch_size)


def test_the_trainer_counts_its_examples(tiny_training):
    files = [str(tiny_training.transform_dir.parent / "transformed_examples" / "Split-train" / "*")]
    assert model.count_examples(files) == 90
