"""``tfxkfp data``: synthetic data, and staging a user's CSV where cluster steps read it."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import exit_codes
from pipeline.cli import flags
from pipeline.config import DEFAULT_SEED
from pipeline.data import synthesize
from pipeline.errors import InputError


def add_parsers(commands) -> None:
    data = commands.add_parser("data", help="data tools").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser("synth", help="write synthetic data with the real schema")
    synth.set_defaults(handler=synth_command)
    synth.add_argument("--rows", type=int, default=synthesize.DEFAULT_ROWS,
                       help="(default: %(default)s)")
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED)
    synth.add_argument("--out", type=Path, required=True)
    stage = data.add_parser(
        "stage", help="check a CSV and write it with normalised columns where cluster steps "
        "read it (DIR/data.csv; copy DIR to gs:// for GKE)")
    stage.set_defaults(handler=stage_command)
    stage.add_argument("source", type=Path)
    stage.add_argument("--out", type=Path, required=True, metavar="DIR")


def stage_command(args: argparse.Namespace) -> int:
    from pipeline.data import staging

    try:
        staged = staging.stage(args.source, args.out)
    except InputError as error:
        return flags.input_error(error)
    print(f"wrote {staged.rows} rows to {staged.path}")
    return exit_codes.OK


def synth_command(args: argparse.Namespace) -> int:
    if args.rows < 1:
        return flags.input_error(InputError(f"--rows must be at least 1, got {args.rows}"))
    path = synthesize.write_csv(args.out, args.rows, args.seed)
    print(f"wrote {args.rows} rows to {path}")
    return exit_codes.OK
