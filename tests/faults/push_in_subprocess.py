"""Runs the Pusher's executor once, as the Pusher step does, in a process of its own.

``python push_in_subprocess.py MODEL_URI SERVING_DIR PUSHED_URI [--step]`` pushes the blessed
Model artifact at MODEL_URI (its SavedModel under ``Format-Serving``) to SERVING_DIR. With
``--step`` the push copies files in lock step with whoever started it: after each file it
prints ``COPIED <path>`` and waits for a line on stdin before the next, so a test can look at
the serving directory between any two files and kill the process at a point of its choosing.
"""

from __future__ import annotations

import json
import sys

from google.protobuf import json_format
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs

from pipeline.components.atomic_pusher import KEEP_VERSIONS_KEY, AtomicPusherExecutor

STEP_FLAG = "--step"
COPIED = "COPIED"


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


def _copy_in_steps() -> None:
    copy = fileio.copy

    def stepped_copy(source, destination, *args, **kwargs):
        result = copy(source, destination, *args, **kwargs)
        print(COPIED, destination, flush=True)
        sys.stdin.readline()  # the go-ahead; at end of input, no more waiting
        return result

    fileio.copy = stepped_copy


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if STEP_FLAG in arguments:
        arguments.remove(STEP_FLAG)
        _copy_in_steps()
    main(*arguments)
