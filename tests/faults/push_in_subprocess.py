"""Runs the Pusher's executor once, as the Pusher step does, in a process of its own.

``python push_in_subprocess.py MODEL_URI SERVING_DIR PUSHED_URI [SECONDS_PER_FILE]`` pushes
the blessed Model artifact at MODEL_URI (its SavedModel under ``Format-Serving``) to
SERVING_DIR. A local disk copies a model in milliseconds; SECONDS_PER_FILE makes every file
copy that slow, as on network storage, so a test can kill the process mid-copy.
"""

from __future__ import annotations

import json
import sys
import time

from google.protobuf import json_format
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs

from pipeline.components.atomic_pusher import KEEP_VERSIONS_KEY, AtomicPusherExecutor


def main(model_uri: str, serving_dir: str, pushed_uri: str) -> None:
    model = standard_artifacts.Model()
    model.uri = model_uri
    blessings = []
    for blessing in (standard_artifacts.ModelBlessing(), standard_artifacts.InfraBlessing()):
        blessing.set_int_custom_property("blessed", 1)
        blessings.append(blessing)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = pushed_uri
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)
    )
    AtomicPusherExecutor().Do(
        {
            standard_component_specs.MODEL_KEY: [model],
            standard_component_specs.MODEL_BLESSING_KEY: [blessings[0]],
            standard_component_specs.INFRA_BLESSING_KEY: [blessings[1]],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {
            standard_component_specs.PUSH_DESTINATION_KEY: json_format.MessageToJson(destination),
            standard_component_specs.CUSTOM_CONFIG_KEY: json.dumps({KEEP_VERSIONS_KEY: 5}),
        },
    )
    print(json.dumps({"pushed_version": pushed.get_string_custom_property("pushed_version")}))


def _slow_copies(seconds_per_file: float) -> None:
    copy = fileio.copy

    def slow_copy(*args, **kwargs):
        time.sleep(seconds_per_file)
        return copy(*args, **kwargs)

    fileio.copy = slow_copy


if __name__ == "__main__":
    if len(sys.argv) > 4:
        _slow_copies(float(sys.argv[4]))
    main(*sys.argv[1:4])
