"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

LOG_FILE = "run.log"
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
def _logging_to(log_path: Path, progress: ProgressCallback) -> Iterator[None]:
    """Everything TFX, Beam and TensorFlow log goes to ``log_path``; the terminal gets progress."""
    root = logging.getLogger()
    absl_logger = logging.getLogger("absl")
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    progress_handler = _NodeProgressHandler(progress)
    saved_levels = (root.level, absl_logger.level)
    root.addHandler(file_handler)
    absl_logger.addHandler(progress_handler)
    root.setLevel(logging.INFO)
    absl_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        absl_logger.removeHandler(progress_handler)
        root.setLevel(saved_levels[0])
        absl_logger.setLevel(saved_levels[1])
        file_handler.close()


def node_ids(config: PipelineConfig) -> list[str]:
    """Node ids in execution (topological) order."""
    return [component.id for component in create_pipeline(config).components]


def run(config: PipelineConfig, progress: ProgressCallback) -> None:
    """Runs the whole pipeline; raises whatever the failing component raised."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    tfx_pipeline = create_pipeline(config)
    tfx_pipeline.metadata_connection_config = (
        tfx.orchestration.metadata.sqlite_metadata_connection_config(str(config.metadata_path))
    )
    with _logging_to(config.output_dir / LOG_FILE, progress):
        tfx.orchestration.LocalDagRunner().run(tfx_pipeline)
