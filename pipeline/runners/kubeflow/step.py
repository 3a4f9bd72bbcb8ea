"""The command of every TFX step on open-source Kubeflow Pipelines 2.x.

TFX's KFP v2 entrypoint (``kubeflow_v2_run_executor``) was written for Vertex AI, whose
executor input differs from the one open-source KFP 2.16's driver builds. This entrypoint
closes the gap, then runs TFX's entrypoint unchanged:

1. Artifact types come from the component's own definitions, which the compiled step
   passes as ``--json_serialized_inputs_spec_args`` and ``--json_serialized_outputs_spec_args``.
   KFP's driver sends inputs from upstream tasks with an empty type schema
   (``GetOutputArtifactsByExecutionId`` does not recover it), adds an ``executor-logs``
   output of type ``system.Artifact`` to every task when it publishes logs, and maps some
   types onto ``system.*`` titles; TFX imports each artifact's class from its title, so any
   of these would crash the executor. Artifacts the component does not declare are not the
   executor's: the launcher writes and uploads the logs itself.
2. ``minio://`` and ``s3://`` artifact URIs point at the launcher's local copies: KFP's
   launcher downloads every input artifact to ``/minio/<key>`` (``/s3/<key>``) before the
   step and uploads every output from there afterwards (``LocalPathForURI``), and
   TensorFlow cannot open those schemes. ``gs://`` artifacts are left to TensorFlow, which
   reads GCS itself, and the Kubernetes InfraValidator needs their ``gs://`` URIs, which its
   serving pod reads.
3. ExampleGen's file-based driver runs first when asked (``--pre_cache_check``): Vertex runs
   it as the spec's ``lifecycle.preCacheCheck``, open-source KFP ignores that hook, and the
   driver resolves span, version and fingerprint of the input data, which go onto the
   Examples artifact as Vertex would put them.
4. The original URIs are written back into the executor output, because the launcher copies
   URIs from it into ML Metadata and uploads from the local path of the URI it ends with.
5. Once the outputs are written the process ends without interpreter teardown, where some
   TFX executors' native libraries crash ("pure virtual method called") and would turn a
   finished step into a failed task.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from absl import app, flags
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import (
    kubeflow_v2_entrypoint_utils,
    kubeflow_v2_run_executor,
)
from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver as example_gen_driver
from tfx.orchestration.portable import outputs_utils

from pipeline.components.kubernetes_errors import KubernetesServingError

# The object-store schemes KFP's launcher mirrors locally, and the directory it uses for each.
LAUNCHER_MIRRORS = {"minio://": "minio", "s3://": "s3"}
PRE_CACHE_CHECK_FLAG = "--pre_cache_check"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
OUTPUTS_SPEC_FLAG = "--json_serialized_outputs_spec_args"


def to_local(uri: str, mirror_root: str = "/") -> str:
    """The launcher's local path for an object-store URI; other URIs unchanged."""
    for scheme, directory in LAUNCHER_MIRRORS.items():
        if uri.startswith(scheme):
            return posixpath.join(mirror_root, directory, uri[len(scheme):])
    return uri


def to_remote(path: str, mirror_root: str = "/") -> str:
    """The object-store URI of a path under the launcher's mirror; other paths unchanged."""
    for scheme, directory in LAUNCHER_MIRRORS.items():
        prefix = posixpath.join(mirror_root, directory) + "/"
        if path.startswith(prefix):
            return scheme + path[len(prefix):]
    return path


def _map_uris(
    artifact_lists: Sequence[pipeline_spec_pb2.ArtifactList], convert: Callable[[str], str]
) -> None:
    for artifact_list in artifact_lists:
        for artifact in artifact_list.artifacts:
            artifact.uri = convert(artifact.uri)


def _conform(
    artifacts: MutableMapping[str, pipeline_spec_pb2.ArtifactList],
    declared: Mapping[str, Any],
) -> None:
    for name in list(artifacts):
        if name not in declared:
            del artifacts[name]
            continue
        for artifact in artifacts[name].artifacts:
            artifact.type.CopyFrom(declared[name].artifact_type)


def conform_to_component(
    executor_input: pipeline_spec_pb2.ExecutorInput,
    inputs_spec: pipeline_spec_pb2.ComponentInputsSpec,
    outputs_spec: pipeline_spec_pb2.ComponentOutputsSpec,
) -> None:
    """Types every artifact as the component declares it; drops those it does not declare."""
    _conform(executor_input.inputs.artifacts, inputs_spec.artifacts)
    _conform(executor_input.outputs.artifacts, outputs_spec.artifacts)


def localize(executor_input: pipeline_spec_pb2.ExecutorInput, mirror_root: str = "/") -> None:
    """Points every artifact at its local mirror and creates the output directories."""
    _map_uris(
        [*executor_input.inputs.artifacts.values(), *executor_input.outputs.artifacts.values()],
        lambda uri: to_local(uri, mirror_root),
    )
    outputs = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(
        executor_input.outputs.artifacts, {}
    )
    outputs_utils.make_output_dirs(outputs)


def restore_output_uris(output_file: str, mirror_root: str = "/") -> None:
    """Rewrites the executor output's artifact URIs from local mirrors to the object store."""
    if not fileio.exists(output_file):
        return
    with fileio.open(output_file, "rb") as file:
        executor_output = json_format.Parse(
            file.read(), pipeline_spec_pb2.ExecutorOutput(), ignore_unknown_fields=True
        )
    _map_uris(executor_output.artifacts.values(), lambda path: to_remote(path, mirror_root))
    with fileio.open(output_file, "wb") as file:
        file.write(json_format.MessageToJson(executor_output, sort_keys=True))


def apply_driver_output(executor_input: pipeline_spec_pb2.ExecutorInput) -> None:
    """Copies artifact metadata (span, fingerprint) from the driver's output onto the outputs.

    Vertex does this between ``preCacheCheck`` and the executor; TFX's entrypoint merges only
    the driver's parameters, so without it the Examples would carry no span.
    """
    with fileio.open(executor_input.outputs.output_file, "rb") as file:
        driver_output = json_format.Parse(
            file.read(), pipeline_spec_pb2.ExecutorOutput(), ignore_unknown_fields=True
        )
    for name, artifact_list in driver_output.artifacts.items():
        targets = executor_input.outputs.artifacts[name].artifacts
        # One artifact per output on both sides; a missing one stays as the launcher made it.
        for target, source in zip(targets, artifact_list.artifacts, strict=False):
            target.metadata.MergeFrom(source.metadata)


def run_step(argv: Sequence[str], mirror_root: str = "/") -> None:
    """Runs one TFX step: ``argv`` are TFX's entrypoint flags, plus ours (module docstring)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument(INPUTS_SPEC_FLAG, default="{}")
    parser.add_argument(OUTPUTS_SPEC_FLAG, required=True)
    parser.add_argument(PRE_CACHE_CHECK_FLAG, action="store_true")
    args, rest = parser.parse_known_args(argv)
    executor_input = json_format.Parse(
        args.json_serialized_invocation_args,
        pipeline_spec_pb2.ExecutorInput(),
        ignore_unknown_fields=True,
    )
    conform_to_component(
        executor_input,
        json_format.Parse(args.json_serialized_inputs_spec_args,
                          pipeline_spec_pb2.ComponentInputsSpec()),
        json_format.Parse(args.json_serialized_outputs_spec_args,
                          pipeline_spec_pb2.ComponentOutputsSpec()),
    )
    localize(executor_input, mirror_root)
    invocation = json_format.MessageToJson(executor_input)
    inputs_spec = [INPUTS_SPEC_FLAG, args.json_serialized_inputs_spec_args]
    if args.pre_cache_check:
        example_gen_driver.main(
            argparse.Namespace(
                json_serialized_invocation_args=invocation,
                json_serialized_inputs_spec_args=args.json_serialized_inputs_spec_args,
            )
        )
        apply_driver_output(executor_input)
        invocation = json_format.MessageToJson(executor_input)
    tfx_args, beam_args = kubeflow_v2_run_executor._parse_flags(  # noqa: SLF001 - TFX's parser
        ["--json_serialized_invocation_args", invocation, *inputs_spec, *rest]
    )
    kubeflow_v2_run_executor.main((tfx_args, beam_args))
    restore_output_uris(executor_input.outputs.output_file, mirror_root)


def main(argv: Sequence[str]) -> None:
    """absl entry point, as TFX's own: flags and logging set up the same way."""
    try:
        run_step(argv[1:])
    except KubernetesServingError as error:
        # A step that cannot reach or use the cluster (its service account, its namespace)
        # says so in one line; a traceback would only bury it.
        sys.exit(f"error: {error}")
    # The outputs and the executor output file are written and closed: skip the teardown
    # (module docstring, 5), after handing on what is buffered.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _parse_absl_flags(argv: list[str]) -> list[str]:
    # absl's app.run requires its FLAGS parsed; the step's own flags are TFX's, parsed by
    # run_step, so absl sees only the program name.
    flags.FLAGS(argv[:1])
    return argv


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_absl_flags)
