"""tfxkfp: the command line. Each command group lives in its own module of this package.

Exit codes (DESIGN.md; pipeline.exit_codes): 0 finished (model pushed, or nothing new to
push), 2 usage or input error, 3 data anomalies stopped the run before training, 4 the model
was not blessed and not pushed, 1 anything else. Every ``run`` writes
``<output>/run_summary.json``.
"""

from __future__ import annotations

import argparse

from pipeline.cli import compile_spec, data, kfp, rollback, run, serving


def parser() -> argparse.ArgumentParser:
    """Every command's parser; each sets ``handler``, the function that runs it."""
    root = argparse.ArgumentParser(
        prog="tfxkfp", description="Social Network Ads TFX pipeline: run, and tools for its data."
    )
    commands = root.add_subparsers(dest="command", required=True)
    for module in (run, rollback, compile_spec, kfp, data, serving):
        module.add_parsers(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)
