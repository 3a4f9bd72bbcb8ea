"""preprocessing_fn through TF Transform's real Beam implementation, with exact values."""

import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx.utils import io_utils

from pipeline.config import CURATED_SCHEMA
from pipeline.models.features import transformed_name
from pipeline.models.preprocessing import preprocessing_fn

Z = np.sqrt(3 / 2)  # z-score of the extremes of three evenly spaced values


def _row(user_id, gender, age, salary, purchased):
    return {"user_id": [user_id], "gender": [gender.encode()], "age": [age],
            "estimated_salary": [salary], "purchased": [purchased]}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    metadata = dataset_metadata.DatasetMetadata(schema)
    analysed = [
        _row(1, "Male", 20, 10_000, 0),
        _row(2, "Male", 30, 20_000, 0),
        _row(3, "Female", 40, 30_000, 1),
    ]
    unseen = [_row(4, "Other", 25, 20_000, 1), _row(5, "Female", 56, 40_000, 0)]
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft"))):
        (train, _), transform_fn = (analysed, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False
        )
        new, _ = ((unseen, metadata), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=False
        )
    return train, new


def _column(rows, key):
    return [float(np.asarray(row[key]).reshape(-1)[0]) for row in rows]


def test_numeric_features_are_z_scored_with_training_statistics(transformed):
    train, new = transformed
    assert _column(train, transformed_name("age")) == pytest.approx([-Z, 0.0, Z], abs=1e-5)
    assert _column(train, transformed_name("estimated_salary")) == pytest.approx(
        [-Z, 0.0, Z], abs=1e-5)
    # New data is scaled with the training mean (30) and standard deviation (8.165).
    assert _column(new, transformed_name("age")) == pytest.approx(
        [-5 / np.sqrt(200 / 3), 26 / np.sqrt(200 / 3)], abs=1e-5)


def test_gender_vocabulary_by_frequency_with_an_oov_bucket(transformed):
    train, new = transformed
    assert _column(train, transformed_name("gender")) == [0, 0, 1]  # Male is most frequent
    assert _column(new, transformed_name("gender")) == [2, 1]  # "Other" -> the OOV bucket


def test_age_is_banded_at_fixed_boundaries(transformed):
    train, new = transformed
    assert _column(train, transformed_name("age_band")) == [0, 1, 2]
    assert _column(new, transformed_name("age_band")) == [0, 4]  # 25 -> <26, 56 -> 56+


def test_label_passes_through_and_user_id_is_not_a_feature(transformed):
    train, _ = transformed
    assert _column(train, "purchased") == [0, 0, 1]
    assert set(train[0]) == {
        "age_xf", "estimated_salary_xf", "gender_xf", "age_band_xf", "purchased"
    }
