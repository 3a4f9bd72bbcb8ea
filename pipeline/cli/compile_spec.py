"""``tfxkfp compile``: the pipeline spec for Kubeflow Pipelines 2.x or Vertex AI."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline import config as defaults
from pipeline import exit_codes, targets
from pipeline.cli import flags
from pipeline.errors import InputError

# Per step container: (flag, PipelineConfig field, default, unit).
_STEP_RESOURCES = (
    ("cpu-request", "step_cpu_request", defaults.STEP_CPU_REQUEST, "CPUs"),
    ("cpu-limit", "step_cpu_limit", defaults.STEP_CPU_LIMIT, "CPUs"),
    ("memory-request", "step_memory_request_gib", defaults.STEP_MEMORY_REQUEST_GIB, "GiB"),
    ("memory-limit", "step_memory_limit_gib", defaults.STEP_MEMORY_LIMIT_GIB, "GiB"),
)


def add_parsers(commands) -> None:
    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines 2.x or Vertex AI"
    )
    compile_.set_defaults(handler=compile_command)
    compile_.add_argument("--target", choices=targets.COMPILED,
                          default=flags.env("TARGET", targets.KFP.name),
                          help="(default: %(default)s) [TFXKFP_TARGET]")
    flags.required_with_env(compile_, "--image", "IMAGE",
                            "pipeline image with this package, pinned by tag or digest")
    flags.required_with_env(compile_, "--pipeline-root", "PIPELINE_ROOT",
                            "artifact root the steps write to: gs://... (GKE, Vertex), or "
                            "minio://... / s3://... (the in-cluster object store of KFP)")
    flags.required_with_env(compile_, "--data-root", "DATA_ROOT",
                            "directory holding the training CSV, with normalised header")
    flags.required_with_env(compile_, "--serving-dir", "SERVING_DIR",
                            "TF Serving model base path the Pusher publishes versions to")
    compile_.add_argument("--output", type=Path,
                          help="spec file (default: pipeline.yaml for kfp, pipeline.json "
                          "for vertex)")
    compile_.add_argument("--inference-data-root", default=flags.env("INFERENCE_DATA_ROOT"),
                          help="directory of an unlabelled CSV to predict for "
                          "[TFXKFP_INFERENCE_DATA_ROOT]")
    tuning = compile_.add_mutually_exclusive_group()
    tuning.add_argument("--no-tune", action="store_true")
    tuning.add_argument("--hparams-uri", default=flags.env("HPARAMS_URI"),
                        help="directory with best_hyperparameters.txt to import instead of "
                        "tuning [TFXKFP_HPARAMS_URI]")
    flags.add_training(compile_)
    compile_.add_argument("--tf-serving-image",
                          default=flags.env("TF_SERVING_IMAGE", defaults.TF_SERVING_IMAGE),
                          help="TF Serving image (without tag) for infra validation, for a "
                          "mirror of tensorflow/serving (default: %(default)s) "
                          "[TFXKFP_TF_SERVING_IMAGE]")
    compile_.add_argument("--tf-serving-tag",
                          default=flags.env("TF_SERVING_TAG", defaults.TF_SERVING_TAG),
                          help="tensorflow/serving image tag for infra validation "
                          "(default: %(default)s) [TFXKFP_TF_SERVING_TAG]")
    compile_.add_argument("--serving-service-account",
                          default=flags.env("SERVING_SERVICE_ACCOUNT", ""),
                          help="service account of the InfraValidator's TF Serving pod "
                          "[TFXKFP_SERVING_SERVICE_ACCOUNT]")
    for name, _, default, unit in _STEP_RESOURCES:
        env = "STEP_" + name.upper().replace("-", "_")
        compile_.add_argument(f"--step-{name}", type=float,
                              default=float(flags.env(env, default)),
                              help=f"per step container, {unit} (default: %(default)s) "
                              f"[TFXKFP_{env}]")
    compile_.add_argument("--beam-runner", choices=("direct", "dataflow"),
                          default=flags.env("BEAM_RUNNER", "direct"),
                          help="Beam inside the step pod, or on Dataflow (default: "
                          "%(default)s) [TFXKFP_BEAM_RUNNER]")
    compile_.add_argument("--dataflow-project", default=flags.env("DATAFLOW_PROJECT"))
    compile_.add_argument("--dataflow-region", default=flags.env("DATAFLOW_REGION"))
    compile_.add_argument("--dataflow-temp-location",
                          default=flags.env("DATAFLOW_TEMP_LOCATION"))
    compile_.add_argument("--volume-claim", default=flags.env("VOLUME_CLAIM", ""),
                          help="kfp: a PersistentVolumeClaim every step mounts, holding the "
                          "data and serving directories on kind/minikube [TFXKFP_VOLUME_CLAIM]")
    compile_.add_argument("--volume-mount-path",
                          default=flags.env("VOLUME_MOUNT_PATH", defaults.VOLUME_MOUNT_PATH),
                          help="where steps mount --volume-claim (default: %(default)s) "
                          "[TFXKFP_VOLUME_MOUNT_PATH]")
    compile_.add_argument("--no-cache", action="store_true", help="disable step caching")


def _beam_args(args: argparse.Namespace) -> tuple[str, ...]:
    if args.beam_runner == "direct":
        return defaults.IN_MEMORY_BEAM_ARGS
    return defaults.dataflow_beam_args(
        args.dataflow_project, args.dataflow_region, args.dataflow_temp_location, args.image
    )


def compile_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.runners.kubeflow import compiler

    try:
        config = defaults.PipelineConfig(
            pipeline_root=args.pipeline_root,
            data_root=args.data_root,
            serving_model_dir=args.serving_dir,
            inference_data_root=args.inference_data_root,
            hparams_uri=args.hparams_uri,
            schema_file=compiler.IMAGE_SCHEMA_FILE,
            target=args.target,
            tune=not args.no_tune,
            seed=args.seed,
            epochs=args.epochs,
            run_fn=args.run_fn,
            keep_versions=args.keep_versions,
            tf_serving_image=args.tf_serving_image,
            tf_serving_tag=args.tf_serving_tag,
            serving_service_account=args.serving_service_account,
            enable_cache=not args.no_cache,
            beam_args=_beam_args(args),
            volume_claim=args.volume_claim,
            volume_mount_path=args.volume_mount_path if args.volume_claim else "",
            **{field: getattr(args, f"step_{name.replace('-', '_')}")
               for name, field, _, _ in _STEP_RESOURCES},
        )
        spec_format = config.platform.spec_format
        output = args.output or Path(f"pipeline.{spec_format}")
        path = compiler.compile_pipeline(config, args.image, output)
    except InputError as error:  # a compiler bug is not one: it surfaces as a traceback
        return flags.input_error(error)
    print(f"wrote {args.target} pipeline spec to {path}")
    return exit_codes.OK
