"""The command of every TFX step on open-source Kubeflow Pipelines 2.x.

TFX's KFP v2 entrypoint (``kubeflow_v2_run_executor``) hands artifact URIs to the executors
as they are, and executors open them with ``tf.io.gfile``. That works for ``gs://``, but the
in-cluster object store of open-source KFP is addressed as ``minio://`` or ``s3://``, which
TensorFlow cannot open. KFP's launcher, which wraps every step, already mirrors those
artifacts on the step's local disk: it downloads each input artifact to ``/minio/<key>``
(``/s3/<key>``) before the step, and uploads each output artifact from there afterwards
(``LocalPathForURI`` in the launcher). So this entrypoint:

1. points input and output artifacts at their local mirrors and creates the output
   directories, as TFX's own launcher does before an executor runs;
2. runs the file-based ExampleGen driver first when asked (``--pre_cache_check``): Vertex
   runs it as the spec's ``lifecycle.preCacheCheck``, open-source KFP ignores that hook, and
   the driver resolves span, version and fingerprint of the input data, which go onto the
   Examples artifact as Vertex would put them;
3. runs TFX's entrypoint unchanged;
4. writes the original URIs back into the executor output, because the launcher copies
   URIs from it into ML Metadata and uploads from the local path of the URI it ends with.

Artifacts on ``gs://`` (GKE, Vertex) are left alone: TensorFlow reads GCS itself.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Callable, Sequence

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

from pipeline.components.kubernetes_infra_validator import KubernetesServingError

# The object-store schemes KFP's launcher mirrors locally, and the directory it uses for each.
LAUNCHER_MIRRORS = {"minio://": "minio", "s3://": "s3"}
PRE_CACHE_CHECK_FLAG = "--pre_cache_check"


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
        for target, source in zip(targets, artifact_list.artifacts):
            target.metadata.MergeFrom(source.metadata)


def run_step(argv: Sequence[str], mirror_root: str = "/") -> None:
    """Runs one TFX step: ``argv`` are TFX's entrypoint flags, plus ``--pre_cache_check``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args")
    parser.add_argument(PRE_CACHE_CHECK_FLAG, action="store_true")
    args, rest = parser.parse_known_args(argv)
    inputs_spec = (
        ["--json_serialized_inputs_spec_args", args.json_serialized_inputs_spec_args]
        if args.json_serialized_inputs_spec_args
        else []
    )
    executor_input = json_format.Parse(
        args.json_serialized_invocation_args,
        pipeline_spec_pb2.ExecutorInput(),
        ignore_unknown_fields=True,
    )
    localize(executor_input, mirror_root)
    invocation = json_format.MessageToJson(executor_input)
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


def _parse_absl_flags(argv: list[str]) -> list[str]:
    # absl's app.run requires its FLAGS parsed; the step's own flags are TFX's, parsed by
    # run_step, so absl sees only the program name.
    flags.FLAGS(argv[:1])
    return argv


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_absl_flags)
