"""``tfxkfp rollback``: serve an earlier model version again."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from pipeline import exit_codes
from pipeline.cli import flags
from pipeline.errors import InputError


def add_parsers(commands) -> None:
    rollback = commands.add_parser(
        "rollback", help="serve an earlier model version again (as the newest version)"
    )
    rollback.set_defaults(handler=rollback_command)
    rollback.add_argument("--to", type=int, required=True, metavar="VERSION",
                          help="the served version to restore")
    where = rollback.add_mutually_exclusive_group()
    flags.add_output(where, "output directory of local runs; its serving directory is changed "
                     "under the same lock as a run")
    where.add_argument(
        "--serving-dir",
        help="any TF Serving model base path instead (directory or gs:// URI); no run lock "
        "applies, so do not roll back while a pipeline pushes to it",
    )


def rollback_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline import locking, model_versions
    from pipeline.config import local_paths

    if args.serving_dir:
        serving_dir, lock = args.serving_dir, contextlib.nullcontext()
    else:
        output = args.output.resolve()
        if not output.is_dir():
            print(f"error: {output}: no such output directory", file=sys.stderr)
            return exit_codes.INPUT
        serving_dir = local_paths(output)["serving_model_dir"]
        lock = locking.exclusive(output, "tfxkfp rollback")
    try:
        with lock:
            result = model_versions.rollback(serving_dir, args.to)
    except InputError as error:  # no such version, or a run holds the lock
        return flags.input_error(error)
    except Exception as error:  # the filesystem or object store failed: one line, exit 1
        print(f"error: {serving_dir}: {type(error).__name__}: {error}", file=sys.stderr)
        return exit_codes.FAILED
    if result.published_as == result.restored:
        print(f"{serving_dir}: version {result.restored} is already the newest; nothing changed")
        return exit_codes.OK
    print(f"{serving_dir}: version {result.restored} is served again as version "
          f"{result.published_as}")
    if result.revoked:
        print(f"  revoked: the models of version(s) {', '.join(map(str, result.revoked))} "
              "will not be pushed again")
    return exit_codes.OK
