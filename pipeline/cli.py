"""tfxkfp: the command line. Parses, calls one function per command, maps outcomes to exit codes.

Exit codes (DESIGN.md): 0 finished (model pushed, or nothing new to push), 2 usage or input
error, 3 data anomalies stopped the run before training, 4 the model was not blessed and not
pushed, 1 anything else. Every ``run`` writes ``<output>/run_summary.json``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

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

    data = commands.add_parser("data", help="data tools").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser("synth", help="write synthetic data with the real schema")
    synth.add_argument("--rows", type=int, default=DEFAULT_SYNTHETIC_ROWS)
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED)
    synth.add_argument("--out", type=Path, required=True)
    return parser


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
    from pipeline import run_log

    output: Path = args.output.resolve()
    with run_log.to_file(output) as terminal:
        return _run_logged(args, output, terminal)


def _run_logged(args: argparse.Namespace, output: Path, terminal: TextIO) -> int:
    from pipeline import run_log, run_summary
    from pipeline.config import PipelineConfig
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
        "blessed": {"evaluator": False, "infra_validator": False},
        "baseline_model": None, "pushed_model": None, "predictions": None,
    }
    try:
        training = staging.stage(Path(data), staged_dir / "examples")
        inference_dir = None
        if args.inference_data is not None:
            inference_dir = staging.stage(
                args.inference_data, staged_dir / "inference", labelled=False
            ).path.parent
        hparams_dir = None
        if args.hparams is not None:
            hparams_dir = hparams.stage(args.hparams, staged_dir / "hparams")
        config = PipelineConfig(
            output_dir=output,
            data_dir=training.path.parent,
            training_rows=training.rows,
            inference_data_dir=inference_dir,
            hparams_dir=hparams_dir,
            tune=not args.no_tune,
            seed=args.seed,
        )
    except staging.InputError as error:
        print(f"error: {error}", file=sys.stderr)
        summary["seconds"] = round(time.monotonic() - clock, 3)
        run_summary.write(output, summary)
        return EXIT_INPUT

    summary["pipeline_name"] = config.pipeline_name
    node_ids: list[str] = []
    error: BaseException | None = None
    try:
        node_ids = local.node_ids(config)
        local.run(config, _print_progress(len(node_ids), terminal))
    except Exception as failure:  # every failure still gets a summary and an exit code
        logging.exception("The pipeline run failed.")
        error = failure

    record = run_summary.read_newest_run(config.metadata_path, config.pipeline_name)
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
    summary.update(status=status, exit_code=code, seconds=round(time.monotonic() - clock, 3))
    _print_summary(summary, run_summary.write(output, summary), terminal)
    return code


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
    if args.command == "run":
        return _run(args)
    return _data_synth(args)


if __name__ == "__main__":
    sys.exit(main())
