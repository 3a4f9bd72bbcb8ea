"""Shared fixtures: the real Social Network Ads CSV when ../shared has it, the node ids of the
default pipeline, the ``tfxkfp`` command, a closed port, fake and tiny real models."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import node_ids

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


@pytest.fixture(scope="session")
def default_pipeline_node_ids() -> frozenset[str]:
    """Every node of a default local run: tuned, validated against the previous span, and
    predicting for the eval split. The KFP and Vertex pipelines lack only the resolver of the
    previous span's statistics."""
    return frozenset({
        node_ids.EXAMPLE_GEN, node_ids.STATISTICS_GEN, node_ids.SCHEMA_GEN,
        node_ids.CURATED_SCHEMA, node_ids.PREVIOUS_SPAN_STATISTICS, node_ids.EXAMPLE_VALIDATOR,
        node_ids.ANOMALIES_GATE, node_ids.TRANSFORM, node_ids.TUNER, node_ids.TRAINER,
        node_ids.LATEST_SERVED_MODEL, node_ids.EVALUATOR, node_ids.INFRA_VALIDATOR,
        node_ids.PUSHER, node_ids.BULK_INFERRER, node_ids.PREDICTIONS_EXPORT,
    })


@pytest.fixture(scope="session")
def tfxkfp_script() -> str:
    """The ``tfxkfp`` console script installed beside this Python, as a user runs it."""
    return str(Path(sys.executable).with_name("tfxkfp"))


@pytest.fixture
def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens: a server that cannot be reached."""
    with socket.socket() as probe:  # the port is free again once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def fake_saved_model() -> Callable[..., Path]:
    """``fake_saved_model(path, tag, files=1)``: a SavedModel-shaped tree at ``path``.

    Not a loadable model: for what only moves, hashes or lists model directories (pushes,
    retention, rollback). ``tag`` makes its bytes, and so its digest, its own; ``files``
    sets how many variable shards it has, so that a copy of it has a middle to stop in.
    """

    def write(path: Path, tag: str, files: int = 1) -> Path:
        (path / "variables").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(f"graph {tag}".encode())
        for index in range(files):
            (path / "variables" / f"variables.data-{index:05d}-of-{files:05d}").write_bytes(
                f"{tag} {index}".encode() * 512
            )
        return path

    return write


@dataclass(frozen=True)
class TinyTransform:
    """A real Transform graph and the examples it transformed, from 120 synthetic rows."""

    raw_examples: list[bytes]  # serialized raw tf.Examples (features + label + user id)
    transform_dir: Path
    examples_dir: Path  # transformed examples: Split-train (90 rows) and Split-eval (30 rows)

    def files(self, split: str) -> list[str]:
        """The split's file pattern, as FnArgs carries it to run_fn and tuner_fn."""
        return [str(self.examples_dir / f"Split-{split}" / "*")]


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
def tiny_transform(tmp_path_factory) -> TinyTransform:
    """Runs TF Transform's Beam analysis on 120 synthetic rows, as the Transform component does.

    Writes ``transform_graph/`` and ``transformed_examples/Split-{train,eval}/`` side by side.
    """
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx.utils import io_utils

    from pipeline.config import CURATED_SCHEMA
    from pipeline.data.synthesize import synthesize
    from pipeline.models import preprocessing

    root = tmp_path_factory.mktemp("tiny")
    schema = io_utils.SchemaReader().read(str(CURATED_SCHEMA))
    records = synthesize(120, seed=5)
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
    return TinyTransform(
        raw_examples=[_raw_example(*record) for record in records],
        transform_dir=transform_dir,
        examples_dir=examples_dir,
    )


@pytest.fixture(scope="session")
def tiny_training(tiny_transform, tmp_path_factory) -> TinyTraining:
    """Runs the Trainer's run_fn on the transformed examples of ``tiny_transform``."""
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    from pipeline.models import model

    root = tmp_path_factory.mktemp("tiny_model")
    examples = standard_artifacts.Examples()
    examples.uri = str(tiny_transform.examples_dir)
    examples.split_names = '["train", "eval"]'
    fn_args = fn_args_utils.FnArgs(
        train_files=tiny_transform.files("train"),
        eval_files=tiny_transform.files("eval"),
        transform_graph_path=str(tiny_transform.transform_dir),
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
    return TinyTraining(tiny_transform.raw_examples, tiny_transform.transform_dir,
                        Path(fn_args.serving_model_dir))
