"""What several commands share: environment defaults, argument types, common flags."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline import exit_codes
from pipeline.config import DEFAULT_KEEP_VERSIONS, DEFAULT_RUN_FN, DEFAULT_SEED
from pipeline.errors import InputError
from pipeline.models import constants

DEFAULT_OUTPUT = Path("output")


def env(name: str, default: str | None = None) -> str | None:
    """Flags default to ``TFXKFP_<NAME>`` environment variables."""
    return os.environ.get(f"TFXKFP_{name}", default)


def at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum`` (else exit 2)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its error message
    return parse


def required_with_env(parser: argparse.ArgumentParser, flag: str, name: str, text: str) -> None:
    """A required flag that a ``TFXKFP_<NAME>`` environment variable can supply."""
    default = env(name)
    parser.add_argument(flag, default=default, required=default is None,
                        help=f"{text} [TFXKFP_{name}]")


def add_output(parser, text: str) -> None:
    parser.add_argument(
        "--output", type=Path, default=Path(env("OUTPUT", str(DEFAULT_OUTPUT))),
        help=f"{text} (default: %(default)s) [TFXKFP_OUTPUT]",
    )


def add_training(parser: argparse.ArgumentParser) -> None:
    """How the model is trained and kept: the same flags for ``run`` and ``compile``."""
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="training and tuning seed (default: %(default)s)")
    parser.add_argument(
        "--epochs", type=at_least(1), default=env("EPOCHS", str(constants.EPOCHS)),
        help="at most this many passes over the train split per trained network; large "
        "data gets fewer, in larger batches (default: %(default)s) [TFXKFP_EPOCHS]",
    )
    parser.add_argument(
        "--run-fn", default=env("RUN_FN", DEFAULT_RUN_FN),
        help="the Trainer's run_fn as MODULE.FUNCTION, to put another model through the same "
        "gates (default: %(default)s) [TFXKFP_RUN_FN]",
    )
    parser.add_argument(
        "--keep-versions", type=at_least(0),
        default=env("KEEP_VERSIONS", str(DEFAULT_KEEP_VERSIONS)),
        help="served versions to keep after a push, newest first; 0 keeps all "
        "(default: %(default)s) [TFXKFP_KEEP_VERSIONS]",
    )


def input_error(error: InputError) -> int:
    """Prints the one-line message of bad input; returns the input exit code."""
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.INPUT
