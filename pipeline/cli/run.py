"""``tfxkfp run``: the whole pipeline on this machine, its progress, and its summary."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pipeline.cli import flags
from pipeline.errors import InputError


def add_parsers(commands) -> None:
    run = commands.add_parser(
        "run", help="run the whole pipeline on this machine (LocalDagRunner)"
    )
    run.set_defaults(handler=run_command)
    run.add_argument(
        "--data", type=Path, default=flags.env("DATA"),
        help="training CSV (User ID,Gender,Age,EstimatedSalary,Purchased); "
        "default: synthetic data [TFXKFP_DATA]",
    )
    flags.add_output(run, "output directory: artifacts, metadata, serving models, summary")
    run.add_argument(
        "--inference-data", type=Path, default=flags.env("INFERENCE_DATA"),
        help="unlabelled CSV to predict for; default: the eval split [TFXKFP_INFERENCE_DATA]",
    )
    tuning = run.add_mutually_exclusive_group()
    tuning.add_argument("--no-tune", action="store_true", help="train with default hyperparameters")
    tuning.add_argument(
        "--hparams", type=Path,
        help="best_hyperparameters.txt from an earlier Tuner run (or a JSON object of values); "
        "imported instead of tuning",
    )
    flags.add_training(run)
    run.add_argument(
        "--beam-arg", action="append", default=[], metavar="OPTION",
        help="a Beam pipeline option for the steps that run on Beam, repeatable, e.g. "
        "--beam-arg=--direct_num_workers=2; any replace the default: the DirectRunner, one "
        "in-memory worker, or a worker process per core from 300,000 rows",
    )


def run_command(args: argparse.Namespace) -> int:
    # Quiet TensorFlow's C++ logging before anything imports TensorFlow: at level 2 it still
    # prints spurious CUDA plugin registration errors on CPU-only machines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline import locking, run_log

    output: Path = args.output.resolve()
    try:
        with locking.exclusive(output, "tfxkfp run"), run_log.to_file(output) as terminal:
            return _run_logged(args, output, terminal)
    except locking.LockedError as error:
        # Nothing ran and nothing changed: the fix is in how the command was started (wait,
        # or another --output). Its summary is not written: run_summary.json belongs to the
        # run in progress.
        return flags.input_error(error)


def _config(args: argparse.Namespace, data: Path, staged_dir: Path, output: Path):
    """Stages the inputs and builds the run's PipelineConfig; raises InputError."""
    from pipeline.config import PipelineConfig, local_beam_args, local_paths
    from pipeline.data import hparams, staging

    training = staging.stage(data, staged_dir / "examples")
    inference_root = None
    if args.inference_data is not None:
        inference_root = str(staging.stage(
            args.inference_data, staged_dir / "inference", labelled=False
        ).path.parent)
    hparams_uri = None
    if args.hparams is not None:
        hparams_uri = str(hparams.stage(args.hparams, staged_dir / "hparams"))
    return PipelineConfig(
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


def _run_logged(args: argparse.Namespace, output: Path, terminal: TextIO) -> int:
    from pipeline import run_log, run_summary
    from pipeline.data import synthesize
    from pipeline.runners import local

    started_at = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    staged_dir = output / "staged"
    data = args.data
    if data is None:
        data = synthesize.write_csv(
            staged_dir / "synthetic" / "social_network_ads.csv", synthesize.DEFAULT_ROWS,
            args.seed,
        )
    summary = run_summary.start(str(data), started_at)
    try:
        config = _config(args, Path(data), staged_dir, output)
    except InputError as error:
        run_summary.input_error(summary, error, round(time.monotonic() - clock, 3))
        run_summary.write(output, summary)
        return flags.input_error(error)

    summary["pipeline_name"] = config.pipeline_name
    node_order: list[str] = []
    error: BaseException | None = None
    try:
        node_order = local.node_order(config)
        local.run(config, output, _print_progress(len(node_order), terminal))
    except Exception as failure:  # every failure still gets a summary and an exit code
        logging.exception("The pipeline run failed.")
        error = failure

    record = run_summary.read_newest_run(local.metadata_path(output), config.pipeline_name)
    run_summary.conclude(summary, record, node_order, error, round(time.monotonic() - clock, 3))
    _explain_failure(summary, error, data, output / run_log.LOG_FILE)
    _print_summary(summary, run_summary.write(output, summary), terminal)
    return summary["exit_code"]


def _explain_failure(
    summary: dict[str, Any], error: BaseException | None, data: Path, log_file: Path
) -> None:
    """Why a run did not push, on stderr: anomalies, the error, or the gates that said no."""
    from pipeline import run_summary

    status = summary["status"]
    if status == run_summary.ANOMALIES:
        print(f"error: {data}: data anomalies, run stopped before training:", file=sys.stderr)
        for anomaly in summary["anomalies"]:
            print(f"  {anomaly['feature']}: {anomaly['description']}", file=sys.stderr)
    elif status == run_summary.FAILED:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        print(f"error: {type(error).__name__}: {message} (details: {log_file})",
              file=sys.stderr)
    elif status == run_summary.NOT_BLESSED:
        print("error: the model was not pushed:", file=sys.stderr)
        for failure in summary["gate_failures"]:
            print(f"  {failure['gate']}: {failure['reason']}", file=sys.stderr)


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
    from pipeline import run_summary

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
    if summary["status"] != run_summary.ANOMALIES:
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
