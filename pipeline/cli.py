"""tfxkfp: the command line. Parses, calls one function per command, maps outcomes to exit codes.

Exit codes (DESIGN.md): 0 finished (model pushed, or nothing new to push), 2 usage or input
error, 3 data anomalies stopped the run before training, 4 the model was not blessed and not
pushed, 1 anything else. Every ``run`` writes ``<output>/run_summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import (
    DEFAULT_KEEP_VERSIONS,
    DEFAULT_RUN_FN,
    IN_MEMORY_BEAM_ARGS,
    TF_SERVING_TAG,
    local_beam_args,
)
from pipeline.models import constants

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_ANOMALIES, EXIT_NOT_BLESSED = 0, 1, 2, 3, 4
DEFAULT_OUTPUT = Path("output")
DEFAULT_SYNTHETIC_ROWS = 400
DEFAULT_SEED = 0


def _env(name: str, default: str | None = None) -> str | None:
    """Flags default to ``TFXKFP_<NAME>`` environment variables."""
    return os.environ.get(f"TFXKFP_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfxkfp", description="Social Network Ads TFX pipeline: run, and tools for its data."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="run the whole pipeline on this machine (LocalDagRunner)"
    )
    run.add_argument(
        "--data", type=Path, default=_env("DATA"),
        help="training CSV (User ID,Gender,Age,EstimatedSalary,Purchased); "
        "default: synthetic data [TFXKFP_DATA]",
    )
    run.add_argument(
        "--output", type=Path, default=Path(_env("OUTPUT", str(DEFAULT_OUTPUT))),
        help="output directory: artifacts, metadata, serving models, summary "
        "(default: %(default)s) [TFXKFP_OUTPUT]",
    )
    run.add_argument(
        "--inference-data", type=Path, default=_env("INFERENCE_DATA"),
        help="unlabelled CSV to predict for; default: the eval split [TFXKFP_INFERENCE_DATA]",
    )
    tuning = run.add_mutually_exclusive_group()
    tuning.add_argument("--no-tune", action="store_true", help="train with default hyperparameters")
    tuning.add_argument(
        "--hparams", type=Path,
        help="best_hyperparameters.txt from an earlier Tuner run (or a JSON object of values); "
        "imported instead of tuning",
    )
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="training and tuning seed")
    run.add_argument(
        "--epochs", type=_at_least(1), default=_env("EPOCHS", str(constants.EPOCHS)),
        help="at most this many passes over the train split per trained network; large "
        "data gets fewer, in larger batches (default: %(default)s) [TFXKFP_EPOCHS]",
    )
    run.add_argument(
        "--beam-arg", action="append", default=[], metavar="OPTION",
        help="a Beam pipeline option for the steps that run on Beam, repeatable, e.g. "
        "--beam-arg=--direct_num_workers=2; any replace the default: the DirectRunner, one "
        "in-memory worker, or a worker process per core from 300,000 rows",
    )
    run.add_argument(
        "--run-fn", default=_env("RUN_FN", DEFAULT_RUN_FN),
        help="the Trainer's run_fn as MODULE.FUNCTION, to put another model through the same "
        "gates (default: %(default)s) [TFXKFP_RUN_FN]",
    )
    run.add_argument(
        "--keep-versions", type=_at_least(0),
        default=_env("KEEP_VERSIONS", str(DEFAULT_KEEP_VERSIONS)),
        help="served versions to keep after a push, newest first; 0 keeps all "
        "(default: %(default)s) [TFXKFP_KEEP_VERSIONS]",
    )

    _add_rollback_parser(commands)
    _add_compile_parser(commands)
    _add_submit_parsers(commands)

    data = commands.add_parser("data", help="data tools").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser("synth", help="write synthetic data with the real schema")
    synth.add_argument("--rows", type=int, default=DEFAULT_SYNTHETIC_ROWS)
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED)
    synth.add_argument("--out", type=Path, required=True)
    stage = data.add_parser(
        "stage", help="check a CSV and write it with normalised columns where cluster steps "
        "read it (DIR/data.csv; copy DIR to gs:// for GKE)")
    stage.add_argument("source", type=Path)
    stage.add_argument("--out", type=Path, required=True, metavar="DIR")
    return parser


def _at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum`` (else exit 2)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its error message
    return parse


def _add_rollback_parser(commands) -> None:
    rollback = commands.add_parser(
        "rollback", help="serve an earlier model version again (as the newest version)"
    )
    rollback.add_argument("--to", type=int, required=True, metavar="VERSION",
                          help="the served version to restore")
    where = rollback.add_mutually_exclusive_group()
    where.add_argument(
        "--output", type=Path, default=Path(_env("OUTPUT", str(DEFAULT_OUTPUT))),
        help="output directory of local runs; its serving directory is changed under the "
        "same lock as a run (default: %(default)s) [TFXKFP_OUTPUT]",
    )
    where.add_argument(
        "--serving-dir",
        help="any TF Serving model base path instead (directory or gs:// URI); no run lock "
        "applies, so do not roll back while a pipeline pushes to it",
    )


def _required_with_env(parser: argparse.ArgumentParser, flag: str, name: str, text: str) -> None:
    """A required flag that a ``TFXKFP_<NAME>`` environment variable can supply."""
    default = _env(name)
    parser.add_argument(flag, default=default, required=default is None,
                        help=f"{text} [TFXKFP_{name}]")


def _add_compile_parser(commands) -> None:
    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines 2.x or Vertex AI"
    )
    compile_.add_argument("--target", choices=("kfp", "vertex"),
                          default=_env("TARGET", "kfp"), help="(default: %(default)s)")
    _required_with_env(compile_, "--image", "IMAGE",
                       "pipeline image with this package, pinned by tag or digest")
    _required_with_env(compile_, "--pipeline-root", "PIPELINE_ROOT",
                       "artifact root the steps write to: gs://... (GKE, Vertex), or "
                       "minio://... / s3://... (the in-cluster object store of KFP)")
    _required_with_env(compile_, "--data-root", "DATA_ROOT",
                       "directory holding the training CSV, with normalised header")
    _required_with_env(compile_, "--serving-dir", "SERVING_DIR",
                       "TF Serving model base path the Pusher publishes versions to")
    compile_.add_argument("--output", type=Path,
                          help="spec file (default: pipeline.yaml for kfp, pipeline.json "
                          "for vertex)")
    compile_.add_argument("--inference-data-root", default=_env("INFERENCE_DATA_ROOT"),
                          help="directory of an unlabelled CSV to predict for "
                          "[TFXKFP_INFERENCE_DATA_ROOT]")
    tuning = compile_.add_mutually_exclusive_group()
    tuning.add_argument("--no-tune", action="store_true")
    tuning.add_argument("--hparams-uri", default=_env("HPARAMS_URI"),
                        help="directory with best_hyperparameters.txt to import instead of "
                        "tuning [TFXKFP_HPARAMS_URI]")
    compile_.add_argument("--tf-serving-tag", default=_env("TF_SERVING_TAG", TF_SERVING_TAG),
                          help="tensorflow/serving image tag for infra validation "
                          "(default: %(default)s) [TFXKFP_TF_SERVING_TAG]")
    compile_.add_argument("--serving-service-account",
                          default=_env("SERVING_SERVICE_ACCOUNT", ""),
                          help="service account of the InfraValidator's TF Serving pod "
                          "[TFXKFP_SERVING_SERVICE_ACCOUNT]")
    for name, default, unit in (("cpu-request", 0.5, "CPUs"), ("cpu-limit", 2.0, "CPUs"),
                                ("memory-request", 2.0, "GiB"), ("memory-limit", 4.0, "GiB")):
        env = "STEP_" + name.upper().replace("-", "_")
        compile_.add_argument(f"--step-{name}", type=float, default=float(_env(env, default)),
                              help=f"per step container, {unit} (default: %(default)s) "
                              f"[TFXKFP_{env}]")
    compile_.add_argument("--beam-runner", choices=("direct", "dataflow"),
                          default=_env("BEAM_RUNNER", "direct"),
                          help="Beam inside the step pod, or on Dataflow (default: "
                          "%(default)s) [TFXKFP_BEAM_RUNNER]")
    compile_.add_argument("--dataflow-project", default=_env("DATAFLOW_PROJECT"))
    compile_.add_argument("--dataflow-region", default=_env("DATAFLOW_REGION"))
    compile_.add_argument("--dataflow-temp-location", default=_env("DATAFLOW_TEMP_LOCATION"))
    compile_.add_argument("--volume-claim", default=_env("VOLUME_CLAIM", ""),
                          help="kfp: a PersistentVolumeClaim every step mounts, holding the "
                          "data and serving directories on kind/minikube [TFXKFP_VOLUME_CLAIM]")
    compile_.add_argument("--volume-mount-path", default=_env("VOLUME_MOUNT_PATH", "/tfx"),
                          help="where steps mount --volume-claim (default: %(default)s) "
                          "[TFXKFP_VOLUME_MOUNT_PATH]")
    compile_.add_argument("--no-cache", action="store_true", help="disable step caching")
    compile_.add_argument("--seed", type=int, default=DEFAULT_SEED)


def _add_kfp_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=_env("KFP_HOST"),
                        help="KFP API or UI address, e.g. http://localhost:8080 [TFXKFP_KFP_HOST]")
    parser.add_argument("--namespace", default=_env("KFP_NAMESPACE"),
                        help="KFP namespace (multi-user installs) [TFXKFP_KFP_NAMESPACE]")
    parser.add_argument("--token", default=_env("KFP_TOKEN"),
                        help="bearer token; default: the kfp client's own credentials "
                        "(in-cluster service account) [TFXKFP_KFP_TOKEN]")


def _add_run_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default=_env("EXPERIMENT", "social-network-ads"),
                        help="(default: %(default)s) [TFXKFP_EXPERIMENT]")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="pipeline parameter, repeatable")


def _add_submit_parsers(commands) -> None:
    submit = commands.add_parser("submit", help="start a run of a compiled spec")
    submit.add_argument("spec", help="pipeline.yaml (kfp) or pipeline.json (vertex)")
    submit.add_argument("--target", choices=("kfp", "vertex"), default=_env("TARGET", "kfp"))
    _add_kfp_connection(submit)
    _add_run_settings(submit)
    submit.add_argument("--run-name")
    submit.add_argument("--wait", action="store_true",
                        help="follow the run; exit 1 unless it succeeds")
    submit.add_argument("--timeout", type=float, default=6 * 3600,
                        help="with --wait, seconds before giving up (default: %(default)s)")
    vertex = submit.add_argument_group("vertex")
    vertex.add_argument("--project", default=_env("VERTEX_PROJECT"),
                        help="[TFXKFP_VERTEX_PROJECT]")
    vertex.add_argument("--region", default=_env("VERTEX_REGION"),
                        help="[TFXKFP_VERTEX_REGION]")
    vertex.add_argument("--service-account", default=_env("VERTEX_SERVICE_ACCOUNT"),
                        help="[TFXKFP_VERTEX_SERVICE_ACCOUNT]")

    schedule = commands.add_parser(
        "schedule", help="recurring runs for continuous training"
    ).add_subparsers(dest="schedule_command", required=True)
    create = schedule.add_parser("create", help="run a compiled spec on a cron schedule")
    create.add_argument("spec")
    create.add_argument("--cron", required=True,
                        help="KFP's 6-field cron: second minute hour day month weekday, "
                        "e.g. '0 0 3 * * *' for 03:00 daily")
    create.add_argument("--name", required=True)
    create.add_argument("--max-concurrency", type=int, default=1)
    _add_kfp_connection(create)
    _add_run_settings(create)
    listing = schedule.add_parser("list", help="list recurring runs")
    _add_kfp_connection(listing)
    delete = schedule.add_parser("delete", help="delete a recurring run")
    delete.add_argument("schedule_id")
    _add_kfp_connection(delete)


def _submit(args: argparse.Namespace) -> int:
    from pipeline.runners import kubeflow_api, vertex

    try:
        params = kubeflow_api.parse_params(args.param)
        if args.target == "vertex":
            missing = [f for f, v in (("--project", args.project), ("--region", args.region))
                       if not v]
            if missing:
                raise kubeflow_api.InputError(f"--target vertex needs {', '.join(missing)}")
            url = vertex.submit_vertex(
                args.spec, project=args.project, region=args.region, params=params,
                service_account=args.service_account, wait=args.wait,
            )
            print(url)
            return EXIT_OK
        if not args.host:
            raise kubeflow_api.InputError("--host (or TFXKFP_KFP_HOST) is required")
        run = kubeflow_api.submit(
            args.spec, args.host, namespace=args.namespace, experiment=args.experiment,
            run_name=args.run_name, params=params, token=args.token, wait=args.wait,
            timeout_seconds=args.timeout, progress=lambda line: print(line, file=sys.stderr),
        )
    except kubeflow_api.KfpError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(run.run_url)
    return EXIT_OK


def _schedule(args: argparse.Namespace) -> int:
    from pipeline.runners import kubeflow_api

    try:
        if not args.host:
            raise kubeflow_api.InputError("--host (or TFXKFP_KFP_HOST) is required")
        connection = {"namespace": args.namespace, "token": args.token}
        if args.schedule_command == "create":
            schedule_id = kubeflow_api.create_schedule(
                args.spec, args.host, cron=args.cron, name=args.name,
                experiment=args.experiment, params=kubeflow_api.parse_params(args.param),
                max_concurrency=args.max_concurrency, **connection,
            )
            print(schedule_id)
        elif args.schedule_command == "list":
            for item in kubeflow_api.list_schedules(args.host, **connection):
                print(f"{item['id']}\t{item['name']}\t{item['cron'] or '-'}\t{item['status']}")
        else:
            kubeflow_api.delete_schedule(args.host, args.schedule_id, token=args.token)
            print(f"deleted {args.schedule_id}")
    except kubeflow_api.KfpError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return EXIT_OK


def _beam_args(args: argparse.Namespace) -> tuple[str, ...]:
    if args.beam_runner == "direct":
        return IN_MEMORY_BEAM_ARGS
    missing = [flag for flag, value in (("--dataflow-project", args.dataflow_project),
                                        ("--dataflow-region", args.dataflow_region),
                                        ("--dataflow-temp-location", args.dataflow_temp_location))
               if not value]
    if missing:
        raise ValueError(f"--beam-runner dataflow needs {', '.join(missing)}")
    # Dataflow workers run the pipeline image too: preprocessing_fn lives in this package.
    return (
        "--runner=DataflowRunner",
        f"--project={args.dataflow_project}",
        f"--region={args.dataflow_region}",
        f"--temp_location={args.dataflow_temp_location}",
        f"--sdk_container_image={args.image}",
        "--experiments=use_runner_v2",
    )


def _compile(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.config import PipelineConfig
    from pipeline.runners import kubeflow

    try:
        config = PipelineConfig(
            pipeline_root=args.pipeline_root,
            data_root=args.data_root,
            serving_model_dir=args.serving_dir,
            inference_data_root=args.inference_data_root,
            hparams_uri=args.hparams_uri,
            schema_file=kubeflow.IMAGE_SCHEMA_FILE,
            target=args.target,
            tune=not args.no_tune,
            seed=args.seed,
            tf_serving_tag=args.tf_serving_tag,
            serving_service_account=args.serving_service_account,
            step_cpu_request=args.step_cpu_request,
            step_cpu_limit=args.step_cpu_limit,
            step_memory_request_gib=args.step_memory_request,
            step_memory_limit_gib=args.step_memory_limit,
            enable_cache=not args.no_cache,
            beam_args=_beam_args(args),
            volume_claim=args.volume_claim,
            volume_mount_path=args.volume_mount_path if args.volume_claim else "",
        )
        output = args.output or Path("pipeline.yaml" if args.target == "kfp" else "pipeline.json")
        path = kubeflow.compile_pipeline(config, args.image, output)
    except ValueError as error:  # CompileError and bad settings
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    print(f"wrote {args.target} pipeline spec to {path}")
    return EXIT_OK


def _print_progress(total: int, terminal: TextIO):
    index = {"n": 0}

    def callback(node_id: str, event: str, seconds: float) -> None:
        if event == "started":
            index["n"] += 1
            print(f"[{index['n']:2d}/{total}] {node_id} ...", file=terminal, flush=True)
        else:
            print(f"        {node_id} done in {seconds:.1f}s", file=terminal, flush=True)

    return callback


def _print_summary(summary: dict[str, Any], summary_path: Path, terminal: TextIO) -> None:
    def say(line: str) -> None:
        print(line, file=terminal)

    overall = summary["metrics"]["overall"]
    say(f"\n{summary['status']} in {summary['seconds']:.1f}s")
    if overall:
        say(
            f"  eval: AUC {overall.get('auc', float('nan')):.3f}, binary accuracy "
            f"{overall.get('binary_accuracy', float('nan')):.3f}, "
            f"{overall.get('example_count', 0)} examples"
        )
    if summary["status"] != "anomalies":
        blessed = summary["blessed"]
        say(f"  blessed: evaluator={blessed['evaluator']}, "
            f"infra_validator={blessed['infra_validator']}")
        say(f"  baseline: {summary['baseline_model'] or 'none (first blessed model)'}")
    if summary["pushed_model"]:
        pushed = summary["pushed_model"]
        say(f"  pushed: version {pushed['version']} at {pushed['path']}")
    if summary["predictions"]:
        say(f"  predictions: {summary['predictions']}")
    cached = [c["id"] for c in summary["components"] if c["status"] == "cached"]
    if cached:
        say(f"  from cache: {', '.join(cached)}")
    say(f"  summary: {summary_path}")


def _run(args: argparse.Namespace) -> int:
    # Quiet TensorFlow's C++ logging before anything imports TensorFlow: at level 2 it still
    # prints spurious CUDA plugin registration errors on CPU-only machines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline import locking, run_log

    output: Path = args.output.resolve()
    try:
        with locking.exclusive(output, "tfxkfp run"), run_log.to_file(output) as terminal:
            return _run_logged(args, output, terminal)
    except locking.LockedError as error:
        # Like an input error, nothing ran and nothing changed: the fix is in how the
        # command was started (wait, or another --output). Its summary is not written:
        # run_summary.json belongs to the run in progress.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT


def _run_logged(args: argparse.Namespace, output: Path, terminal: TextIO) -> int:
    from pipeline import run_log, run_summary
    from pipeline.config import PipelineConfig, local_paths
    from pipeline.data import hparams, staging, synthesize
    from pipeline.runners import local

    started_at = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    staged_dir = output / "staged"
    data = args.data
    if data is None:
        data = synthesize.write_csv(
            staged_dir / "synthetic" / "social_network_ads.csv", DEFAULT_SYNTHETIC_ROWS, args.seed
        )
    summary: dict[str, Any] = {
        "pipeline_name": None, "status": "input_error", "exit_code": EXIT_INPUT,
        "data": str(data), "started_at": started_at.isoformat(), "seconds": 0.0,
        "components": [], "anomalies": [], "metrics": run_summary.no_metrics(),
        "blessed": {"evaluator": False, "infra_validator": False}, "gate_failures": [],
        "baseline_model": None, "pushed_model": None, "predictions": None,
    }
    try:
        training = staging.stage(Path(data), staged_dir / "examples")
        inference_root = None
        if args.inference_data is not None:
            inference_root = str(staging.stage(
                args.inference_data, staged_dir / "inference", labelled=False
            ).path.parent)
        hparams_uri = None
        if args.hparams is not None:
            hparams_uri = str(hparams.stage(args.hparams, staged_dir / "hparams"))
        config = PipelineConfig(
            **local_paths(output),
            data_root=str(training.path.parent),
            inference_data_root=inference_root,
            hparams_uri=hparams_uri,
            tune=not args.no_tune,
            seed=args.seed,
            epochs=args.epochs,
            run_fn=args.run_fn,
            keep_versions=args.keep_versions,
            beam_args=tuple(args.beam_arg) or local_beam_args(training.rows),
        )
    except staging.InputError as error:
        print(f"error: {error}", file=sys.stderr)
        summary["anomalies"] = [{"feature": feature, "description": str(error)}
                                for feature in error.features]
        summary["seconds"] = round(time.monotonic() - clock, 3)
        run_summary.write(output, summary)
        return EXIT_INPUT

    summary["pipeline_name"] = config.pipeline_name
    node_ids: list[str] = []
    error: BaseException | None = None
    try:
        node_ids = local.node_ids(config)
        local.run(config, output, _print_progress(len(node_ids), terminal))
    except Exception as failure:  # every failure still gets a summary and an exit code
        logging.exception("The pipeline run failed.")
        error = failure

    record = run_summary.read_newest_run(local.metadata_path(output), config.pipeline_name)
    summary.update(run_summary.describe(record, node_ids))
    if error is not None and record.state("AnomaliesGate") == "failed":
        status, code = "anomalies", EXIT_ANOMALIES
        print(f"error: {args.data or data}: data anomalies, run stopped before training:",
              file=sys.stderr)
        for anomaly in summary["anomalies"]:
            print(f"  {anomaly['feature']}: {anomaly['description']}", file=sys.stderr)
    elif error is not None:
        status, code = "failed", EXIT_FAILED
        message = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        print(f"error: {type(error).__name__}: {message} (details: {output / run_log.LOG_FILE})",
              file=sys.stderr)
    elif summary["pushed_model"] is not None:
        status, code = "pushed", EXIT_OK
    else:
        status, code = "not_blessed", EXIT_NOT_BLESSED
        print("error: the model was not pushed:", file=sys.stderr)
        for failure in summary["gate_failures"]:
            print(f"  {failure['gate']}: {failure['reason']}", file=sys.stderr)
    summary.update(status=status, exit_code=code, seconds=round(time.monotonic() - clock, 3))
    _print_summary(summary, run_summary.write(output, summary), terminal)
    return code


def _data(args: argparse.Namespace) -> int:
    return {"synth": _data_synth, "stage": _data_stage}[args.data_command](args)


def _data_stage(args: argparse.Namespace) -> int:
    from pipeline.data import staging

    try:
        staged = staging.stage(args.source, args.out)
    except staging.InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    print(f"wrote {staged.rows} rows to {staged.path}")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline import locking, model_versions
    from pipeline.config import local_paths

    if args.serving_dir:
        serving_dir, lock = args.serving_dir, contextlib.nullcontext()
    else:
        output = args.output.resolve()
        if not output.is_dir():
            print(f"error: {output}: no such output directory", file=sys.stderr)
            return EXIT_INPUT
        serving_dir = local_paths(output)["serving_model_dir"]
        lock = locking.exclusive(output, "tfxkfp rollback")
    try:
        with lock:
            result = model_versions.rollback(serving_dir, args.to)
    except (locking.LockedError, model_versions.VersionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:  # the filesystem or object store failed: one line, exit 1
        print(f"error: {serving_dir}: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if result.published_as == result.restored:
        print(f"{serving_dir}: version {result.restored} is already the newest; nothing changed")
        return EXIT_OK
    print(f"{serving_dir}: version {result.restored} is served again as version "
          f"{result.published_as}")
    if result.revoked:
        print(f"  revoked: the models of version(s) {', '.join(map(str, result.revoked))} "
              "will not be pushed again")
    return EXIT_OK


def _data_synth(args: argparse.Namespace) -> int:
    from pipeline.data import synthesize

    if args.rows < 1:
        print(f"error: --rows must be at least 1, got {args.rows}", file=sys.stderr)
        return EXIT_INPUT
    path = synthesize.write_csv(args.out, args.rows, args.seed)
    print(f"wrote {args.rows} rows to {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"run": _run, "rollback": _rollback, "compile": _compile, "submit": _submit,
                "schedule": _schedule, "data": _data}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
