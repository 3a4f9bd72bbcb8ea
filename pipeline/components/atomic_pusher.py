"""Pusher executor that changes the serving directory only in whole versions.

TFX's Pusher copies straight into ``<base>/<unix time>/``: TF Serving polling the directory
can see a half-copied version, and a crash mid-copy leaves a broken version that the next
push skips over. This executor publishes through ``pipeline.model_versions`` (written under
a hidden name, then renamed into place; ``saved_model.pb`` last on object stores), removes
leftovers of an interrupted push first, and afterwards retires versions beyond the newest
``keep_versions`` (from the component's ``custom_config``; 0 keeps all).

A model identical to the newest served version is not pushed twice: the run reports that
version instead. A model a rollback revoked is not pushed again at all; the run reports
why, and the CLI exits as for an unblessed model.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from pipeline import artifact_properties, model_versions

KEEP_VERSIONS_KEY = "keep_versions"  # in the component's custom_config


class RevokedModelError(RuntimeError):
    """The model is one a rollback replaced; pushing it would undo the rollback."""


def push_atomically(
    model_path: str, base_directory: str, keep_versions: int = 0
) -> tuple[int, bool]:
    """Publishes ``model_path`` as a new version; returns ``(version, newly_pushed)``."""
    tf.io.gfile.makedirs(base_directory)
    model_versions.remove_leftovers(base_directory)
    versions = model_versions.served_versions(base_directory)
    digest = model_versions.directory_digest(model_path)
    if versions and model_versions.directory_digest(
        model_versions.version_path(base_directory, versions[-1])
    ) == digest:
        return versions[-1], False
    revoked = model_versions.revoked_models(base_directory).get(digest)
    if revoked:
        raise RevokedModelError(
            f"this model was version {revoked['version']}, rolled back to version "
            f"{revoked['restored']} at {revoked['at']}; not pushed again"
        )
    version = model_versions.publish(model_path, base_directory)
    retired = model_versions.retire_old(base_directory, keep_versions)
    if retired:
        logging.info("Retired versions %s (keeping the newest %d).", retired, keep_versions)
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
        custom_config = json_utils.loads(
            exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null"
        ) or {}
        try:
            version, newly_pushed = push_atomically(
                model_path, base_directory, int(custom_config.get(KEEP_VERSIONS_KEY, 0))
            )
        except RevokedModelError as error:
            logging.warning("Model not pushed: %s", error)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property(artifact_properties.NOT_PUSHED_REASON, str(error))
            return
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
