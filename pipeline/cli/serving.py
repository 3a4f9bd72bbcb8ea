"""``tfxkfp serving check``: does TF Serving serve a pushed version as the model predicts?"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline import exit_codes
from pipeline.cli import flags
from pipeline.config import MODEL_NAME
from pipeline.errors import InputError


def add_parsers(commands) -> None:
    serving = commands.add_parser("serving", help="the served model").add_subparsers(
        dest="serving_command", required=True)
    check = serving.add_parser(
        "check", help="predict through TF Serving's REST and gRPC APIs and compare with the "
        "pushed SavedModel run here; exit 1 on any difference")
    check.set_defaults(handler=check_command)
    check.add_argument("serving_dir", help="TF Serving's model base path, as this machine sees it")
    check.add_argument("--version", type=flags.at_least(1),
                       help="the version to check (default: the newest served)")
    flags.required_with_env(check, "--rest", "SERVING_URL",
                            "TF Serving's REST address, e.g. http://127.0.0.1:30501")
    flags.required_with_env(check, "--grpc", "SERVING_GRPC",
                            "TF Serving's gRPC address, e.g. 127.0.0.1:30500")
    check.add_argument("--model-name", default=MODEL_NAME, help="(default: %(default)s)")
    check.add_argument("--wait", type=float, default=120.0,
                       help="seconds to wait for the version to become AVAILABLE "
                       "(default: %(default)s)")


def check_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline import serving_check

    try:
        result = serving_check.check(args.serving_dir, args.rest, args.grpc, args.model_name,
                                     args.version, args.wait)
    except InputError as error:
        return flags.input_error(error)
    except serving_check.ServingCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    print(f"version {result.version}: REST and gRPC predictions equal the SavedModel's for "
          f"{len(result.expected)} users (within {serving_check.TOLERANCE:g})")
    return exit_codes.OK
