"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.proto.orchestration import pipeline_pb2

from pipeline import node_ids
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

# LocalDagRunner announces each node with these absl messages (tfx 1.16,
# orchestration/local/local_dag_runner.py); they are the only progress signal it gives.
_NODE_STARTED = "Component %s is running."
_NODE_FINISHED = "Component %s is finished."

ProgressCallback = Callable[[str, str, float], None]  # (node id, "started"|"finished", seconds)


class _NodeProgressHandler(logging.Handler):
    """Turns LocalDagRunner's per-node log lines into progress callbacks with timings."""

    def __init__(self, callback: ProgressCallback):
        super().__init__(level=logging.INFO)
        self._callback = callback
        self._started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg not in (_NODE_STARTED, _NODE_FINISHED) or not record.args:
            return
        node_id = str(record.args[0])
        if record.msg == _NODE_STARTED:
            self._started[node_id] = time.monotonic()
            self._callback(node_id, "started", 0.0)
        else:
            seconds = time.monotonic() - self._started.get(node_id, time.monotonic())
            self._callback(node_id, "finished", seconds)


@contextmanager
def _progress_reported(progress: ProgressCallback) -> Iterator[None]:
    handler = _NodeProgressHandler(progress)
    # Through absl's own verbosity, not Logger.setLevel: libraries that silence absl for a
    # moment restore absl's verbosity setting, which would otherwise drop INFO again.
    saved_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("absl").removeHandler(handler)
        absl_logging.set_verbosity(saved_verbosity)


def node_order(config: PipelineConfig) -> list[str]:
    """Node ids in execution (topological) order."""
    return [component.id for component in create_pipeline(config).components]


def metadata_path(output_dir: Path) -> Path:
    """The run's ML Metadata store: SQLite, next to everything else the run writes."""
    return output_dir / "metadata.sqlite"


def compile_local(config: PipelineConfig, output_dir: Path) -> pipeline_pb2.Pipeline:
    """The pipeline IR for LocalDagRunner, with the baseline step never cached.

    The baseline step reads the serving directory, which its cache key cannot see: cached,
    it would hand the Evaluator the version that was newest when it first ran, not the one
    served now (after a push or a rollback).
    """
    tfx_pipeline = create_pipeline(config)
    tfx_pipeline.metadata_connection_config = (
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(metadata_path(output_dir))
        )
    )
    ir = compiler.Compiler().compile(tfx_pipeline)
    for node in ir.nodes:
        if node.pipeline_node.node_info.id == node_ids.LATEST_SERVED_MODEL:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir


def run(config: PipelineConfig, output_dir: Path, progress: ProgressCallback) -> None:
    """Runs the whole pipeline; raises whatever the failing component raised."""
    output_dir.mkdir(parents=True, exist_ok=True)
    ir = compile_local(config, output_dir)
    with _progress_reported(progress):
        tfx.orchestration.LocalDagRunner().run_with_ir(ir)
