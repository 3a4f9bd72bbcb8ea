"""Feature names shared by staging, the schema, preprocessing, the model and serving.

Keys are the normalised CSV column names (see ``pipeline.data.staging``); the schema in
``pipeline/data/schema/schema.pbtxt`` uses the same names.
"""

LABEL_KEY = "purchased"
ID_KEY = "user_id"  # carried along for joining predictions back to users; never a feature

CATEGORICAL_FEATURE_KEY = "gender"
NUMERIC_FEATURE_KEYS = ("age", "estimated_salary")
FEATURE_KEYS = (CATEGORICAL_FEATURE_KEY, *NUMERIC_FEATURE_KEYS)

GENDER_VOCABULARY = ("Female", "Male")
# Age bands used both as a model feature (bucketised age) and as an evaluation slice:
# [18, 26), [26, 36), [36, 46), [46, 56), [56, ...).
AGE_BAND_BOUNDARIES = (26, 36, 46, 56)
AGE_BAND_KEY = "age_band"

# The exported model's serving signatures (pipeline.models.model): serialized tf.Examples, and
# named raw features. Here, where clients of the served model find them without TensorFlow.
SERVING_DEFAULT = "serving_default"
SERVING_RAW = "serving_raw"

# Outputs of every serving signature.
PROBABILITY_KEY = "probability"
CLASS_KEY = "class"


def transformed_name(key: str) -> str:
    """Name of a feature after Transform (TFX convention: suffix ``_xf``)."""
    return f"{key}_xf"
