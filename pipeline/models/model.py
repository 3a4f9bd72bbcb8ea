"""The Keras model, its training loop and the SavedModel it exports for serving.

The exported SavedModel carries the Transform graph, so every caller sends raw features
and gets the same preprocessing training saw (no training/serving skew). Signatures:

- ``serving_default``: serialized ``tf.Example`` strings (TF Serving predict with
  ``{"b64": ...}``, TFMA, BulkInferrer, InfraValidator).
- ``serving_raw``: named raw features (``gender``, ``age``, ``estimated_salary``), one value
  per user each, which is what a REST client naturally sends as JSON.
- ``transform_features``: serialized examples to transformed features, for TFMA to slice
  by age band.

Keras 3 cannot write a TF SavedModel through ``model.save``, so the model and the Transform
layer are wrapped in a ``tf.Module`` and saved with ``tf.saved_model.save``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from pipeline.models import constants, features, preprocessing
from pipeline.models.features import SERVING_DEFAULT, SERVING_RAW

TRANSFORM_FEATURES = "transform_features"

_GENDER_IDS = len(features.GENDER_VOCABULARY) + preprocessing.GENDER_OOV_BUCKETS
_AGE_BANDS = len(features.AGE_BAND_BOUNDARIES) + 1
# Training examples are shuffled in a window of this many (tfx_bsl's default too).
SHUFFLE_BUFFER = 10_000
# The transformed features the model reads; the label and anything else are left out.
MODEL_INPUT_KEYS = tuple(
    features.transformed_name(key)
    for key in (*features.NUMERIC_FEATURE_KEYS, features.CATEGORICAL_FEATURE_KEY,
                features.AGE_BAND_KEY)
)


@dataclass(frozen=True)
class TrainingBudget:
    """How one network trains: ``epochs`` passes over the train split in batches."""

    batch_size: int
    epochs: int
    steps: int  # over all passes


def training_budget(train_rows: int, max_epochs: int = constants.EPOCHS) -> TrainingBudget:
    """The budget for a train split of ``train_rows`` rows (constants.py says why).

    Small data trains as it always has; larger data in larger batches and, once a pass
    alone is long, in fewer passes, so the steps stop growing with the data and only the
    reading does.
    """
    batch_size = constants.BATCH_SIZE
    while (batch_size < constants.MAX_BATCH_SIZE
           and train_rows > batch_size * constants.STEPS_PER_PASS):
        batch_size *= 2
    steps_per_pass = max(1, math.ceil(train_rows / batch_size))
    epochs = max(1, min(max_epochs, math.ceil(constants.MAX_TRAINING_STEPS / steps_per_pass)))
    return TrainingBudget(batch_size=batch_size, epochs=epochs, steps=epochs * steps_per_pass)


def _records(file_pattern: list[str]) -> tf.data.Dataset:
    """The serialized examples of gzipped TFRecord files (Transform writes these), in order."""
    files = sorted(name for pattern in file_pattern for name in tf.io.gfile.glob(pattern))
    return tf.data.TFRecordDataset(files, compression_type="GZIP",
                                   num_parallel_reads=tf.data.AUTOTUNE)


def count_examples(file_pattern: list[str]) -> int:
    """Records in the files: one read, no parsing."""
    return int(_records(file_pattern).reduce(tf.constant(0, tf.int64),
                                             lambda count, _: count + 1))


def input_fn(
    file_pattern: list[str],
    tf_transform_output: tft.TFTransformOutput,
    *,
    batch_size: int,
    training: bool,
    seed: int,
) -> tf.data.Dataset:
    """One pass of batches of (transformed features, label); Keras repeats it per epoch.

    Training data is reshuffled on every pass; evaluation data is read in order, so
    validation metrics count every eval example exactly once. Parsed with tf.data directly:
    TFX's DataAccessor (tfx_bsl) made the Trainer's passes about three times slower
    (benchmarks/results/direct_runner_modes.md).
    """
    records = _records(file_pattern)
    if training:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    feature_spec = tf_transform_output.transformed_feature_spec()

    def split_label(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        parsed = tf.io.parse_example(serialized, feature_spec)
        return {key: parsed[key] for key in MODEL_INPUT_KEYS}, parsed[features.LABEL_KEY]

    return (records.batch(batch_size)
            .map(split_label, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def training_kwargs(fn_args: tfx.components.FnArgs) -> dict[str, Any]:
    """``Model.fit`` arguments shared by the Tuner's trials and the Trainer.

    Seeds every random source and makes TensorFlow's kernels deterministic, so the same data
    and seed give the same model: a rerun is comparable with its baseline. The batch size
    and passes come from the size of the train split (``training_budget``), counted here:
    no row count needs to be known when the pipeline is compiled.
    """
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    custom_config = fn_args.custom_config or {}
    seed = int(custom_config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    train_rows = count_examples(fn_args.train_files)
    budget = training_budget(
        train_rows, max_epochs=int(custom_config.get("epochs", constants.EPOCHS))
    )
    logging.info("training budget: %d train rows, batch %d, %d passes, %d steps a network",
                 train_rows, budget.batch_size, budget.epochs, budget.steps)
    return {
        "x": input_fn(fn_args.train_files, tf_transform_output,
                      batch_size=budget.batch_size, training=True, seed=seed),
        # Evaluation batches do not change the result; large ones only make it faster.
        "validation_data": input_fn(fn_args.eval_files, tf_transform_output,
                                    batch_size=constants.MAX_BATCH_SIZE, training=False,
                                    seed=seed),
        "epochs": budget.epochs,
        "verbose": 0,
    }


def hparams_values(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """Hyperparameter values from a KerasTuner config (Tuner output), else the defaults."""
    if not hyperparameters:
        return dict(constants.DEFAULT_HPARAMS)
    values = keras_tuner.HyperParameters.from_config(hyperparameters).values
    return {**constants.DEFAULT_HPARAMS, **values}


def build_model(hparams: dict[str, Any]) -> keras.Model:
    """A small MLP over z-scored numbers and one-hot gender and age band."""
    numeric_inputs = [
        keras.Input(shape=(1,), name=features.transformed_name(key), dtype="float32")
        for key in features.NUMERIC_FEATURE_KEYS
    ]
    gender = keras.Input(
        shape=(1,), name=features.transformed_name(features.CATEGORICAL_FEATURE_KEY), dtype="int64"
    )
    age_band = keras.Input(
        shape=(1,), name=features.transformed_name(features.AGE_BAND_KEY), dtype="int64"
    )
    encoded = [
        *numeric_inputs,
        keras.layers.CategoryEncoding(_GENDER_IDS, output_mode="one_hot")(gender),
        keras.layers.CategoryEncoding(_AGE_BANDS, output_mode="one_hot")(age_band),
    ]
    hidden = keras.layers.Concatenate()(encoded)
    for _ in range(int(hparams[constants.HIDDEN_LAYERS])):
        hidden = keras.layers.Dense(
            int(hparams[constants.HIDDEN_UNITS]),
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(constants.L2_REGULARIZATION),
        )(hidden)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs=[*numeric_inputs, gender, age_band], outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(float(hparams[constants.LEARNING_RATE])),
        loss="binary_crossentropy",
        # Enough thresholds that the Tuner's objective agrees with TFMA's AUC.
        metrics=[
            keras.metrics.AUC(num_thresholds=1000, name="auc"), keras.metrics.BinaryAccuracy()
        ],
    )
    return model


class _ServingModule(tf.Module):
    """Transform layer + the averaged models, with the serving signatures as methods."""

    def __init__(
        self, models: list[keras.Model], tf_transform_output: tft.TFTransformOutput
    ):
        super().__init__()
        self.models = models
        # Keras 3 variables wrap tf.Variables that the SavedModel's TF1 restore path (the one
        # TF Serving's C++ loader and BulkInferrer use) cannot find unless tracked directly.
        self.model_variables = [v.value for model in models for v in model.variables]
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        # Serving requests carry no label; the user id may be there and is ignored.
        self._feature_spec = {key: raw_spec[key] for key in features.FEATURE_KEYS}
        self._eval_spec = {
            key: spec for key, spec in raw_spec.items() if key != features.ID_KEY
        }

    def _predict(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer(raw_features)
        model_inputs = {name: transformed[name] for name in MODEL_INPUT_KEYS}
        probability = tf.reshape(
            tf.add_n([model(model_inputs) for model in self.models]) / len(self.models), [-1]
        )
        return {
            features.PROBABILITY_KEY: probability,
            features.CLASS_KEY: tf.cast(probability >= 0.5, tf.int64),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(tf.io.parse_example(serialized, self._feature_spec))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=features.CATEGORICAL_FEATURE_KEY),
            tf.TensorSpec([None], tf.int64, name="age"),
            tf.TensorSpec([None], tf.int64, name="estimated_salary"),
        ]
    )
    def serve_raw(self, gender: tf.Tensor, age: tf.Tensor, estimated_salary: tf.Tensor):
        # The Transform graph expects [batch, 1] columns, as parsed from tf.Examples.
        raw = {"gender": gender, "age": age, "estimated_salary": estimated_salary}
        return self._predict({key: tf.reshape(value, [-1, 1]) for key, value in raw.items()})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.tft_layer(tf.io.parse_example(serialized, self._eval_spec))


def export_serving_model(
    models: list[keras.Model], tf_transform_output: tft.TFTransformOutput, export_dir: str
) -> None:
    """Writes the SavedModel with the three signatures described in the module docstring."""
    module = _ServingModule(models, tf_transform_output)
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            SERVING_DEFAULT: module.serve_examples,
            SERVING_RAW: module.serve_raw,
            TRANSFORM_FEATURES: module.transform_examples,
        },
    )


# Called by the Trainer component (module path in pipeline.pipeline).
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains with the tuned (or default) hyperparameters and exports the serving model."""
    fit_kwargs = training_kwargs(fn_args)
    # The eval split is the Evaluator's to judge; only the Tuner, which ranks trials by it,
    # validates while training.
    del fit_kwargs["validation_data"]
    hparams = hparams_values(fn_args.hyperparameters)
    # The record of what was trained, in the step's log: tuned, imported or the defaults.
    logging.info("training with hyperparameters %s", json.dumps(hparams, sort_keys=True))
    # An average of a few networks from different initialisations: on ~300 rows a single
    # network's eval accuracy moves by several points with its random start.
    models = []
    for member in range(constants.ENSEMBLE_SIZE):
        model = build_model(hparams)
        # A budget fixed by the data size, no early stopping: the eval split is not used
        # to decide when training ends.
        model.fit(
            **fit_kwargs,
            callbacks=[
                keras.callbacks.TensorBoard(log_dir=f"{fn_args.model_run_dir}/member_{member}"),
                # Epoch metrics go to the run log, not the terminal.
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs, member=member: logging.info(
                        "member %d epoch %d: %s", member, epoch + 1, logs
                    )
                ),
            ],
        )
        models.append(model)
    export_serving_model(
        models, tft.TFTransformOutput(fn_args.transform_graph_path), fn_args.serving_model_dir
    )
