"""Shared fixtures: the real Social Network Ads CSV when ../shared has it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "social_network_ads.csv"

# TensorFlow's C++ start-up chatter hides test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def real_data() -> Path | None:
    """The real CSV, or None (tests then use synthetic data and say so)."""
    if REAL_DATA.exists():
        return REAL_DATA
    print(f"note: {REAL_DATA} not found; using synthetic data")
    return None


@dataclass(frozen=True)
class TinyTraining:
    """A model trained by run_fn on synthetic rows through a real Transform graph."""

    raw_examples: list[bytes]  # serialized raw tf.Examples (features + label + user id)
    transform_dir: Path
    serving_model_dir: Path


def _raw_example(user_id: int, gender: str, age: int, salary: int, label: int) -> bytes:
    import tensorflow as tf

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "user_id": ints(user_id),
        "gender": tf.train.Feature(bytes_list=tf.train.BytesList(value=[gender.encode()])),
        "age": ints(age),
        "estimated_salary": ints(salary),
        "purchased": ints(label),
    })).SerializeToString()


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory) -> TinyTraining:
    """Runs TF Transform's Beam analysis and the Trainer's run_fn on 120 synthetic rows."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts
    from tfx.utils import io_utils

    from pipeline.data.synthesize import synthesize
    from pipeline.models import model, preprocessing
    from pipeline.config import CURATED_SCHEMA

    root = tmp_path_factory.mktemp("tiny")
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    records = synthesize(120, seed=5)
    raw_examples = [_raw_example(*record) for record in records]
    rows = [
        {"user_id": [r[0]], "gender": [r[1].encode()], "age": [r[2]],
         "estimated_salary": [r[3]], "purchased": [r[4]]}
        for r in records
    ]
    transform_dir = root / "transform_graph"
    with tft_beam.Context(temp_dir=str(root / "tft_tmp")):
        (transformed, transformed_metadata), transform_fn = (
            rows, dataset_metadata.DatasetMetadata(schema)
        ) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing.preprocessing_fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(transform_dir))
    # The Transform component also writes the raw metadata; serving parses with it.
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        str(transform_dir / tft.TFTransformOutput.RAW_METADATA_DIR),
    )

    coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
    examples_dir = root / "transformed_examples"
    for split, part in (("train", transformed[:90]), ("eval", transformed[90:])):
        (examples_dir / f"Split-{split}").mkdir(parents=True)
        with tf.io.TFRecordWriter(
            str(examples_dir / f"Split-{split}" / "data.gz"), options="GZIP"
        ) as writer:
            for row in part:
                writer.write(coder.encode(row))
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_dir)
    examples.split_names = '["train", "eval"]'
    fn_args = fn_args_utils.FnArgs(
        train_files=[str(examples_dir / "Split-train" / "*")],
        eval_files=[str(examples_dir / "Split-eval" / "*")],
        transform_graph_path=str(transform_dir),
        serving_model_dir=str(root / "model" / "Format-Serving"),
        model_run_dir=str(root / "model_run"),
        train_steps=6,
        custom_config={"epochs": 2, "seed": 1},
        data_accessor=fn_args_utils.DataAccessor(
            tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
                [examples], []
            ),
            record_batch_factory=None,
            data_view_decode_fn=None,
        ),
    )
    model.run_fn(fn_args)
    return TinyTraining(raw_examples, transform_dir, Path(fn_args.serving_model_dir))
