"""Pusher executor that makes a model version appear in the serving directory atomically.

TFX's Pusher copies straight into ``<base>/<unix time>/``: TF Serving polling the directory
can see a half-copied version, and a crash mid-copy leaves a broken version that the next
push skips over. This executor copies into a hidden ``.partial-<version>`` sibling (TF
Serving only loads directories named by an integer) and renames it into place, which is
atomic on a POSIX filesystem (the local run, a shared volume on kind). Leftovers from an
interrupted push are removed before the next one. Versions always increase, even when two
pushes fall in the same second, and a model identical to the newest served version is not
pushed twice: the run reports that version instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

PARTIAL_PREFIX = ".partial-"


def served_versions(base_directory: Path) -> list[int]:
    """Version numbers TF Serving would consider, oldest first."""
    if not base_directory.is_dir():
        return []
    return sorted(int(entry.name) for entry in base_directory.iterdir()
                  if entry.is_dir() and entry.name.isdigit())


def directory_digest(path: Path) -> str:
    """Content hash of a directory tree (relative paths and file bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def push_atomically(model_path: Path, base_directory: Path) -> tuple[int, bool]:
    """Publishes ``model_path`` as a new version; returns ``(version, newly_pushed)``."""
    base_directory.mkdir(parents=True, exist_ok=True)
    for leftover in base_directory.glob(PARTIAL_PREFIX + "*"):
        logging.warning("Removing %s left by an interrupted push.", leftover)
        shutil.rmtree(leftover)
    versions = served_versions(base_directory)
    if versions and directory_digest(base_directory / str(versions[-1])) == directory_digest(
        model_path
    ):
        return versions[-1], False
    version = max(int(time.time()), versions[-1] + 1 if versions else 0)
    partial = base_directory / f"{PARTIAL_PREFIX}{version}"
    shutil.copytree(model_path, partial)
    os.rename(partial, base_directory / str(version))
    return version, True


class AtomicPusherExecutor(tfx_pusher_executor.Executor):
    """TFX Pusher semantics (blessing checks, PushedModel artifact), atomic filesystem push."""

    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        base_directory = Path(destination.filesystem.base_directory)
        model_path = self.GetModelPath(input_dict)
        version, newly_pushed = push_atomically(Path(model_path), base_directory)
        logging.info(
            "Model %s version %d at %s.",
            "pushed as" if newly_pushed else "already served as", version, base_directory,
        )
        io_utils.copy_dir(model_path, model_push.uri)  # the artifact archives what was pushed
        self._MarkPushed(
            model_push,
            pushed_destination=str(base_directory / str(version)),
            pushed_version=str(version),
        )


class AtomicPusher(Pusher):
    """TFX's Pusher component with the atomic filesystem executor."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)
