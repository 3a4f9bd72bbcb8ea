"""The errors of talking to Kubeflow Pipelines, each one line naming the host or the file.

Two kinds, told apart by type (the CLI maps them to DESIGN.md's exit codes): bad input,
found before any request is sent, is a ``pipeline.errors.InputError`` (``SpecError``,
``ParamError``, ``ScheduleError``); what the server or the network did is a ``KfpError``.
``kfp_errors`` turns the ``kfp`` client's exceptions into the latter.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import kfp_server_api
import urllib3

from pipeline.errors import InputError

_URLLIB3_POOL_LOG = logging.getLogger("urllib3.connectionpool")


class SpecError(InputError):
    """The pipeline spec file is missing, unreadable, or not a pipeline spec."""


class ParamError(InputError):
    """A ``--param`` that is malformed or that the pipeline does not take."""


class ScheduleError(InputError):
    """A schedule the API server would refuse or misread (cron, concurrency, name)."""


class KfpError(Exception):
    """A pipeline-service failure (not bad input), reported as one line."""


class KfpUnreachableError(KfpError):
    """No KFP API server answered at the host."""


class KfpAuthError(KfpError):
    """The server (or the auth proxy in front of it) refused the credentials."""


class KfpApiError(KfpError):
    """The API server answered, but refused the request."""


class RunFailedError(KfpError):
    """A followed run ended in, or was still in, a state other than SUCCEEDED."""

    def __init__(self, message: str, *, run_id: str, state: str, run_url: str):
        super().__init__(message)
        self.run_id = run_id
        self.state = state
        self.run_url = run_url


@contextlib.contextmanager
def kfp_errors(host: str, action: str) -> Iterator[None]:
    """Turns the client's exceptions into one-line ``KfpError``s; ``action`` says what failed.

    kfp 2.13 lets network failures through as urllib3 errors (``MaxRetryError`` wrapping
    ``NewConnectionError`` or ``NameResolutionError``; read timeouts bare) and raises
    ``kfp_server_api.ApiException`` for HTTP errors (status 0 for TLS failures).
    """
    _URLLIB3_POOL_LOG.addFilter(_not_a_retry_warning)
    try:
        yield
    except kfp_server_api.ApiException as error:
        if error.status in (401, 403):
            raise KfpAuthError(
                f"KFP at {host} refused the credentials (HTTP {error.status})"
            ) from None
        if not error.status:
            raise KfpUnreachableError(
                f"cannot reach KFP at {host}: {one_line(error.reason)}"
            ) from None
        raise KfpApiError(
            f"KFP at {host} could not {action}: HTTP {error.status} {_server_message(error)}"
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise KfpUnreachableError(f"cannot reach KFP at {host}: {_network_reason(error)}") from None
    finally:
        _URLLIB3_POOL_LOG.removeFilter(_not_a_retry_warning)


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters: error messages stay one line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _not_a_retry_warning(record: logging.LogRecord) -> bool:
    # urllib3 logs a warning for each of its three quick retries of a failed connection;
    # without a logging setup they reach stderr ahead of the one-line error.
    return not record.getMessage().startswith("Retrying")


def _network_reason(error: urllib3.exceptions.HTTPError) -> str:
    cause = getattr(error, "reason", None) or error
    # Checked in this order: urllib3 2 derives both from ConnectTimeoutError.
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        # "...: Failed to establish a new connection: [Errno 111] Connection refused"
        return one_line(str(cause).rsplit("] ", 1)[-1]).lower()
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return "timed out"
    return one_line(cause)


def _server_message(error: kfp_server_api.ApiException) -> str:
    """The API server's error text (grpc-gateway's ``{"error", "code", "message"}`` body)."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return one_line(message or error.reason or "")
