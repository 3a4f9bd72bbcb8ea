"""InfraValidator's local flavour: LOAD_AND_QUERY without a model server binary.

TFX's InfraValidator starts TF Serving (Docker or Kubernetes) and queries it. Neither exists
on a laptop without Docker, so this flavour keeps the component's spec (model, examples,
serving/request/validation specs -> InfraBlessing) and swaps the executor: it loads the
candidate SavedModel from disk as a model server does (TF Serving's C++ loader restores the
MetaGraph into a session and runs signatures by tensor name; TensorFlow's 1.x loader does the
same from Python, with no model code), sends each requested signature a batch built from real
examples, and blesses the model only if every signature answers with well-formed, agreeing
predictions. The Kubernetes flavour reuses the same spec with TF Serving in a pod, so the
pipeline wiring does not change between the two.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor, executor_spec
from tfx.proto import infra_validator_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils, proto_utils

from pipeline import artifact_properties
from pipeline.components.infra_validator_component import InfraValidatorComponent
from pipeline.config import INFRA_VALIDATION_EXAMPLES
from pipeline.models import features

BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
_MAX_PROBABILITY_DISAGREEMENT = 1e-5


class InfraValidationError(RuntimeError):
    """The model loaded but did not answer like a servable model."""


def read_serialized_examples(examples: types.Artifact, split: str, limit: int) -> list[bytes]:
    """Up to ``limit`` serialized tf.Examples from one split of an Examples artifact."""
    split_uri = artifact_utils.get_split_uri([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(split_uri, "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


def _feed(signature, serialized: list[bytes]) -> dict[str, Any]:
    """A request for ``signature``: the examples themselves, or their parsed raw features."""
    inputs = dict(signature.inputs)
    if len(inputs) == 1:
        key, info = next(iter(inputs.items()))
        if info.dtype == tf.string.as_datatype_enum and key not in features.FEATURE_KEYS:
            return {info.name: serialized}
    parse_spec = {
        key: tf.io.FixedLenFeature([], tf.dtypes.as_dtype(info.dtype))
        for key, info in inputs.items()
    }
    parsed = tf.io.parse_example(tf.constant(serialized), parse_spec)
    return {inputs[key].name: value.numpy() for key, value in parsed.items()}


def _check_outputs(name: str, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
    if features.PROBABILITY_KEY not in outputs:
        raise InfraValidationError(
            f"signature {name}: no '{features.PROBABILITY_KEY}' output (got {sorted(outputs)})"
        )
    probability = np.asarray(outputs[features.PROBABILITY_KEY]).reshape(-1)
    if probability.shape[0] != count:
        raise InfraValidationError(
            f"signature {name}: {probability.shape[0]} predictions for {count} requests"
        )
    if not np.all(np.isfinite(probability)) or np.any((probability < 0) | (probability > 1)):
        raise InfraValidationError(f"signature {name}: probabilities outside [0, 1]")
    return probability


def load_and_query(
    model_path: str, serialized: list[bytes], signature_names: list[str], tags: list[str]
) -> dict[str, float]:
    """Loads the SavedModel as TF Serving does and queries every signature; returns timings.

    TF Serving's C++ loader restores the SavedModel's MetaGraph into a session and runs
    signatures by their tensor names; TensorFlow's Python 1.x loader does the same, so a
    model that only works through ``tf.saved_model.load`` (object graph, Python) fails here
    as it would in the server.
    """
    # Not `with session:`, which would make its graph the default and requests symbolic.
    session = tf.compat.v1.Session(graph=tf.Graph())
    try:
        started = time.monotonic()
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(
                session, tags or [tf.saved_model.SERVING], model_path
            )
        except Exception as error:  # any load failure means "not servable"
            raise InfraValidationError(f"model did not load: {error}") from error
        timings = {"load_seconds": time.monotonic() - started}
        predictions = {}
        for name in signature_names:
            if name not in meta_graph.signature_def:
                raise InfraValidationError(
                    f"signature {name} missing (model has {sorted(meta_graph.signature_def)})"
                )
            signature = meta_graph.signature_def[name]
            fetches = {key: info.name for key, info in signature.outputs.items()}
            started = time.monotonic()
            try:
                outputs = session.run(fetches, feed_dict=_feed(signature, serialized))
            except Exception as error:  # a request the model cannot answer
                # TensorFlow's messages open with a generic line; the cause is the first
                # line that says something.
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                message = next((line for line in lines if not line.endswith("error:")), "")
                raise InfraValidationError(f"signature {name} failed: {message}") from error
            timings[f"{name}_seconds"] = time.monotonic() - started
            predictions[name] = _check_outputs(name, outputs, len(serialized))
    finally:
        session.close()
    reference_name, reference = next(iter(predictions.items()))
    for name, probability in predictions.items():
        if np.max(np.abs(probability - reference)) > _MAX_PROBABILITY_DISAGREEMENT:
            raise InfraValidationError(
                f"signatures {reference_name} and {name} disagree on the same examples"
            )
    return timings


class LocalInfraValidatorExecutor(base_executor.BaseExecutor):
    """Blesses the model when it loads and answers real requests on every signature."""

    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY]
        )
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY]
        )
        request_spec = infra_validator_pb2.RequestSpec()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.REQUEST_SPEC_KEY], request_spec
        )
        serving_request = request_spec.tensorflow_serving
        serialized = read_serialized_examples(
            examples,
            request_spec.split_name or "eval",
            # num_examples is optional in RequestSpec, and TFX's own request builder has a
            # default for it; with none, an unset count would read no examples and refuse
            # every model.
            request_spec.num_examples or INFRA_VALIDATION_EXAMPLES,
        )
        signature_names = list(serving_request.signature_names) or ["serving_default"]
        try:
            if not serialized:
                raise InfraValidationError("no examples to build requests from")
            timings = load_and_query(
                path_utils.serving_model_path(model.uri),
                serialized,
                signature_names,
                list(serving_request.tag_set),
            )
        except InfraValidationError as error:
            logging.warning("Infra validation failed: %s", error)
            blessing.set_int_custom_property(artifact_properties.BLESSED, 0)
            blessing.set_string_custom_property(artifact_properties.INFRA_REASON, str(error))
            io_utils.write_string_file(os.path.join(blessing.uri, NOT_BLESSED_FILE), str(error))
            return
        logging.info("Infra validation passed: %s", timings)
        blessing.set_int_custom_property(artifact_properties.BLESSED, 1)
        io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE), "")


class LocalInfraValidator(InfraValidatorComponent):
    """InfraValidator with the in-process LOAD_AND_QUERY executor."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(LocalInfraValidatorExecutor)
