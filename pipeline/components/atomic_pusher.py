"""Pusher executor that makes a model version appear in the serving directory whole.

TFX's Pusher copies straight into ``<base>/<unix time>/``: TF Serving polling the directory
can see a half-copied version, and a crash mid-copy leaves a broken version that the next
push skips over. On a filesystem (the local run, a shared volume on kind) this executor
copies into a hidden ``.partial-<version>`` sibling (TF Serving only loads directories named
by an integer) and renames it into place, which is atomic. Object stores (``gs://``) have
no atomic rename; there the version is written with ``saved_model.pb`` last, the file TF
Serving needs before it loads a version. Leftovers of an interrupted push are removed
before the next one. Versions always increase, even when two pushes fall in the same
second, and a model identical to the newest served version is not pushed twice: the run
reports that version instead.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

PARTIAL_PREFIX = ".partial-"
SAVED_MODEL_FILE = "saved_model.pb"


def _is_object_store(path: str) -> bool:
    return "://" in path


def served_versions(base_directory: str) -> list[int]:
    """Version numbers TF Serving would consider, oldest first."""
    if not tf.io.gfile.isdir(base_directory):
        return []
    names = (entry.rstrip("/") for entry in tf.io.gfile.listdir(base_directory))
    return sorted(int(name) for name in names
                  if name.isdigit() and tf.io.gfile.isdir(os.path.join(base_directory, name)))


def directory_digest(path: str) -> str:
    """Content hash of a directory tree (relative paths and file bytes)."""
    digest = hashlib.sha256()
    for directory, _, files in sorted(tf.io.gfile.walk(path)):
        for name in sorted(files):
            file = os.path.join(directory, name)
            digest.update(os.path.relpath(file, path).encode())
            with tf.io.gfile.GFile(file, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _publish(model_path: str, base_directory: str, version: int) -> None:
    final = os.path.join(base_directory, str(version))
    if _is_object_store(base_directory):
        io_utils.copy_dir(model_path, final, deny_regex_patterns=[SAVED_MODEL_FILE])
        io_utils.copy_file(os.path.join(model_path, SAVED_MODEL_FILE),
                           os.path.join(final, SAVED_MODEL_FILE))
        return
    partial = os.path.join(base_directory, f"{PARTIAL_PREFIX}{version}")
    io_utils.copy_dir(model_path, partial)
    os.rename(partial, final)


def push_atomically(model_path: str, base_directory: str) -> tuple[int, bool]:
    """Publishes ``model_path`` as a new version; returns ``(version, newly_pushed)``."""
    tf.io.gfile.makedirs(base_directory)
    for entry in tf.io.gfile.listdir(base_directory):
        if entry.startswith(PARTIAL_PREFIX):
            leftover = os.path.join(base_directory, entry.rstrip("/"))
            logging.warning("Removing %s left by an interrupted push.", leftover)
            tf.io.gfile.rmtree(leftover)
    versions = served_versions(base_directory)
    if versions and directory_digest(
        os.path.join(base_directory, str(versions[-1]))
    ) == directory_digest(model_path):
        return versions[-1], False
    version = max(int(time.time()), versions[-1] + 1 if versions else 0)
    _publish(model_path, base_directory, version)
    return version, True


class AtomicPusherExecutor(tfx_pusher_executor.Executor):
    """TFX Pusher semantics (blessing checks, PushedModel artifact), whole-version pushes."""

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
        base_directory = destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict)
        version, newly_pushed = push_atomically(model_path, base_directory)
        logging.info(
            "Model %s version %d at %s.",
            "pushed as" if newly_pushed else "already served as", version, base_directory,
        )
        io_utils.copy_dir(model_path, model_push.uri)  # the artifact archives what was pushed
        self._MarkPushed(
            model_push,
            pushed_destination=os.path.join(base_directory, str(version)),
            pushed_version=str(version),
        )


class AtomicPusher(Pusher):
    """TFX's Pusher component with the whole-version executor."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)
