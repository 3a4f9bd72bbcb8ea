"""Feature engineering, run by TF Transform over the whole training set."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from pipeline.models import features

# One extra vocabulary id for genders not seen in training (the schema rejects them in
# training data; at serving time they must still map somewhere).
GENDER_OOV_BUCKETS = 1
GENDER_VOCABULARY_FILE = "gender"


# Called by the Transform component (module path in pipeline.pipeline).
def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Z-scores the numbers, indexes gender, bands age; the label passes through."""
    outputs = {}
    for key in features.NUMERIC_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(
            tf.cast(inputs[key], tf.float32)
        )
    outputs[features.transformed_name(features.CATEGORICAL_FEATURE_KEY)] = (
        tft.compute_and_apply_vocabulary(
            inputs[features.CATEGORICAL_FEATURE_KEY],
            num_oov_buckets=GENDER_OOV_BUCKETS,
            vocab_filename=GENDER_VOCABULARY_FILE,
        )
    )
    # Fixed bands rather than quantiles: they mean the same thing in every run and are the
    # slices the Evaluator reports on.
    outputs[features.transformed_name(features.AGE_BAND_KEY)] = tft.apply_buckets(
        tf.cast(inputs["age"], tf.float32),
        bucket_boundaries=tf.constant([features.AGE_BAND_BOUNDARIES], dtype=tf.float32),
    )
    # At serving time the label is absent; the transform layer then prunes this output.
    outputs[features.LABEL_KEY] = inputs[features.LABEL_KEY]
    return outputs
