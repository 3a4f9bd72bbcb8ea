"""A Trainer run_fn whose model trains and evaluates well but serves wrong answers.

It trains and exports exactly as ``pipeline.models.model.run_fn`` does, then re-exports the
model with one classic wiring bug: ``serving_raw`` hands the age to the salary input and the
salary to the age input. ``serving_default`` (what the Evaluator uses) is untouched, so the
model is blessed on metrics; only a request to the raw signature shows the fault. Used with
``tfxkfp run --run-fn broken_serving_model.run_fn``.
"""

from __future__ import annotations

import tempfile

import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import io_utils

from pipeline.models import features, model


class _SwappedRawInputs(tf.Module):
    def __init__(self, exported):
        super().__init__()
        self.exported = exported

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=features.CATEGORICAL_FEATURE_KEY),
        tf.TensorSpec([None], tf.int64, name="age"),
        tf.TensorSpec([None], tf.int64, name="estimated_salary"),
    ])
    def serve_raw(self, gender, age, estimated_salary):
        return self.exported.signatures[model.SERVING_RAW](
            gender=gender, age=estimated_salary, estimated_salary=age
        )


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    model.run_fn(fn_args)
    exported = tf.saved_model.load(fn_args.serving_model_dir)
    module = _SwappedRawInputs(exported)
    with tempfile.TemporaryDirectory() as staging:
        tf.saved_model.save(module, staging, signatures={
            model.SERVING_DEFAULT: exported.signatures[model.SERVING_DEFAULT],
            model.SERVING_RAW: module.serve_raw,
            model.TRANSFORM_FEATURES: exported.signatures[model.TRANSFORM_FEATURES],
        })
        io_utils.delete_dir(fn_args.serving_model_dir)
        io_utils.copy_dir(staging, fn_args.serving_model_dir)
