"""``tfxkfp submit``, ``tfxkfp schedule`` and ``tfxkfp runs``: runs of a compiled spec on KFP or
Vertex AI, and what a KFP run did."""

from __future__ import annotations

import argparse
import sys

from pipeline import exit_codes, targets
from pipeline.cli import flags
from pipeline.config import (
    DEFAULT_EXPERIMENT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RUN_TIMEOUT_SECONDS,
)
from pipeline.errors import InputError

# Flags only a KFP run honours; given with --target vertex they are refused.
_KFP_ONLY = (("--experiment", "experiment"), ("--run-name", "run_name"), ("--timeout", "timeout"))


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=flags.env("KFP_HOST"),
                        help="KFP API or UI address, e.g. http://localhost:8080 [TFXKFP_KFP_HOST]")
    parser.add_argument("--namespace", default=flags.env("KFP_NAMESPACE"),
                        help="KFP namespace (multi-user installs) [TFXKFP_KFP_NAMESPACE]")
    parser.add_argument("--token", default=flags.env("KFP_TOKEN"),
                        help="bearer token; default: the kfp client's own credentials "
                        "(in-cluster service account) [TFXKFP_KFP_TOKEN]")


def _add_run_settings(parser: argparse.ArgumentParser) -> None:
    # No argparse default: `submit` must tell a flag the user gave from the default.
    parser.add_argument("--experiment",
                        help=f"KFP only (default: {DEFAULT_EXPERIMENT}) [TFXKFP_EXPERIMENT]")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="pipeline parameter, repeatable")


def add_parsers(commands) -> None:
    submit = commands.add_parser("submit", help="start a run of a compiled spec")
    submit.set_defaults(handler=submit_command)
    submit.add_argument("spec", help="pipeline.yaml (kfp) or pipeline.json (vertex)")
    submit.add_argument("--target", choices=targets.COMPILED,
                        default=flags.env("TARGET", targets.KFP.name),
                        help="(default: %(default)s) [TFXKFP_TARGET]")
    _add_connection(submit)
    _add_run_settings(submit)
    submit.add_argument("--run-name", help="KFP only (default: the pipeline name and time)")
    submit.add_argument("--wait", action="store_true",
                        help="follow the run; exit 1 unless it succeeds")
    submit.add_argument("--timeout", type=float,
                        help="KFP only: with --wait, seconds before giving up "
                        f"(default: {DEFAULT_RUN_TIMEOUT_SECONDS})")
    vertex = submit.add_argument_group("vertex")
    vertex.add_argument("--project", default=flags.env("VERTEX_PROJECT"),
                        help="[TFXKFP_VERTEX_PROJECT]")
    vertex.add_argument("--region", default=flags.env("VERTEX_REGION"),
                        help="[TFXKFP_VERTEX_REGION]")
    vertex.add_argument("--service-account", default=flags.env("VERTEX_SERVICE_ACCOUNT"),
                        help="[TFXKFP_VERTEX_SERVICE_ACCOUNT]")

    schedule = commands.add_parser(
        "schedule", help="recurring runs for continuous training"
    ).add_subparsers(dest="schedule_command", required=True)
    create = schedule.add_parser("create", help="run a compiled spec on a cron schedule")
    create.set_defaults(handler=schedule_command)
    create.add_argument("spec")
    create.add_argument("--cron", required=True,
                        help="KFP's 6-field cron: second minute hour day month weekday, "
                        "e.g. '0 0 3 * * *' for 03:00 daily")
    create.add_argument("--name", required=True)
    create.add_argument("--max-concurrency", type=int,
                        default=DEFAULT_MAX_CONCURRENCY,
                        help="runs of this schedule at once (default: %(default)s)")
    _add_connection(create)
    _add_run_settings(create)
    listing = schedule.add_parser("list", help="list recurring runs")
    listing.set_defaults(handler=schedule_command)
    _add_connection(listing)
    delete = schedule.add_parser("delete", help="delete a recurring run")
    delete.set_defaults(handler=schedule_command)
    delete.add_argument("schedule_id")
    _add_connection(delete)

    runs = commands.add_parser(
        "runs", help="what runs on KFP did: their tasks, verdicts and pushed versions"
    ).add_subparsers(dest="runs_command", required=True)
    list_runs = runs.add_parser("list", help="the newest runs")
    list_runs.set_defaults(handler=runs_command)
    list_runs.add_argument("--page-size", type=flags.at_least(1), default=20,
                           help="runs to list (default: %(default)s)")
    show = runs.add_parser(
        "show", help="a run's tasks, the Evaluator's verdict, the pushed version, and what "
        "failed (from the KFP API and ML Metadata)")
    show.set_defaults(handler=runs_command)
    show.add_argument("run_id")
    flags.required_with_env(show, "--metadata-grpc", "METADATA_GRPC",
                            "ML Metadata's gRPC service as host:port")
    for parser in (list_runs, show):
        _add_connection(parser)
        parser.add_argument("--output", choices=("text", "json"), default="text",
                            help="(default: %(default)s)")


def _experiment(args: argparse.Namespace) -> str:
    return args.experiment or flags.env("EXPERIMENT") or DEFAULT_EXPERIMENT


def _required_host(args: argparse.Namespace) -> str:
    if not args.host:
        raise InputError("--host (or TFXKFP_KFP_HOST) is required")
    return args.host


def _submit_to_vertex(args: argparse.Namespace, params: dict[str, str]) -> str:
    from pipeline.runners import vertex

    ignored = [flag for flag, name in _KFP_ONLY if getattr(args, name) is not None]
    if ignored:
        raise InputError(f"--target vertex does not take {', '.join(ignored)}")
    missing = [f for f, v in (("--project", args.project), ("--region", args.region)) if not v]
    if missing:
        raise InputError(f"--target vertex needs {', '.join(missing)}")
    return vertex.submit_vertex(
        args.spec, project=args.project, region=args.region, params=params,
        service_account=args.service_account, wait=args.wait,
    )


def submit_command(args: argparse.Namespace) -> int:
    from pipeline.runners.kubeflow import runs, spec_file
    from pipeline.runners.kubeflow.errors import KfpError, RunFailedError

    try:
        params = spec_file.parse_params(args.param)
        if args.target == targets.VERTEX.name:
            print(_submit_to_vertex(args, params))
            return exit_codes.OK
        run = runs.submit(
            args.spec, _required_host(args), namespace=args.namespace,
            experiment=_experiment(args), run_name=args.run_name, params=params,
            token=args.token, wait=args.wait,
            timeout_seconds=DEFAULT_RUN_TIMEOUT_SECONDS if args.timeout is None else args.timeout,
            progress=lambda line: print(line, file=sys.stderr),
        )
    except InputError as error:
        return flags.input_error(error)
    except RunFailedError as error:
        # The run exists: its address is the result, as when it succeeds, for what reads it.
        print(error.run_url)
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    except KfpError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    print(run.run_url)
    return exit_codes.OK


def schedule_command(args: argparse.Namespace) -> int:
    from pipeline.runners.kubeflow import schedules, spec_file
    from pipeline.runners.kubeflow.errors import KfpError

    try:
        host = _required_host(args)
        connection = {"namespace": args.namespace, "token": args.token}
        if args.schedule_command == "create":
            schedule_id = schedules.create_schedule(
                args.spec, host, cron=args.cron, name=args.name,
                experiment=_experiment(args), params=spec_file.parse_params(args.param),
                max_concurrency=args.max_concurrency, **connection,
            )
            print(schedule_id)
        elif args.schedule_command == "list":
            for item in schedules.list_schedules(host, **connection):
                print(f"{item['id']}\t{item['name']}\t{item['cron'] or '-'}\t{item['status']}")
        else:
            schedules.delete_schedule(host, args.schedule_id, token=args.token)
            print(f"deleted {args.schedule_id}")
    except InputError as error:
        return flags.input_error(error)
    except KfpError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK


def runs_command(args: argparse.Namespace) -> int:
    from pipeline.runners.kubeflow import run_report
    from pipeline.runners.kubeflow.errors import KfpError

    try:
        host = _required_host(args)
        connection = {"namespace": args.namespace, "token": args.token}
        if args.runs_command == "list":
            found = run_report.list_runs(host, page_size=args.page_size, **connection)
            text = run_report.format_runs(found)
        else:
            store = run_report.metadata_store_at(args.metadata_grpc)
            found = run_report.read_run(host, args.run_id, store, **connection)
            text = run_report.format_run(found)
    except InputError as error:
        return flags.input_error(error)
    except KfpError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    print(run_report.dumps(found) if args.output == "json" else text)
    return exit_codes.OK
