"""The connection to a Kubeflow Pipelines 2.x API server, shared by runs and schedules.

Compiling (``compiler.py``) needs no cluster; runs and schedules do, and talk to it only
through the ``kfp`` SDK client (v2beta1 REST API), connected here: the host checked before
anything is sent, one health check, and the experiment runs are filed under.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator

import kfp
import kfp_server_api

from pipeline.errors import InputError
from pipeline.runners.kubeflow.errors import (
    KfpApiError,
    KfpUnreachableError,
    kfp_errors,
    one_line,
)

_HOST = re.compile(r"^https?://\S+$")


class _NotKfpServerError(Exception):
    """The health check got a 200 that was not the KFP API server's answer."""


class Client(kfp.Client):
    """``kfp.Client`` whose health check is a single request.

    ``kfp.Client()`` checks ``/apis/v2beta1/healthz`` while it is constructed (unless it
    already knows a namespace) and retries any HTTP error five times 5 s apart, logging a
    traceback each time, then raises ``TimeoutError``: a 401 from an auth proxy would take
    25 s and lose its status. One request keeps the real error. A 200 without ``multi_user``
    (which the API server always sends) is an auth proxy's login page or another service;
    the generated client would otherwise read it as an empty answer and carry on.
    """

    healthy = False

    def get_kfp_healthz(self, sleep_duration: int = 5) -> kfp_server_api.V2beta1GetHealthzResponse:
        response = self.healthzs.healthz_service_get_healthz()
        if response.multi_user is None:
            raise _NotKfpServerError
        self.healthy = True
        return response


def checked_host(host: str) -> str:
    """The host without a trailing slash; ``InputError`` unless it is an http(s) URL."""
    # kfp.Client would quietly prefix https:// to "localhost:8080", wrong for a port-forward.
    host = host.strip().rstrip("/")
    if not _HOST.match(host):
        raise InputError(f"KFP host {host!r} is not an http:// or https:// URL")
    return host


def connect(host: str, token: str | None, namespace: str | None) -> Client:
    """A client whose server has answered its health check like a KFP API server."""
    # A known namespace stops kfp.Client() from checking health itself, so check here.
    options = {"namespace": namespace} if namespace else {}
    with kfp_errors(host, "answer its health check"):
        try:
            with warnings.catch_warnings():
                # kfp warns on every Client() that it needs a 2.0.0-beta.2 or later server.
                warnings.simplefilter("ignore", FutureWarning)
                client = Client(host=host, existing_token=token, **options)
            if not client.healthy:
                client.get_kfp_healthz()
        except _NotKfpServerError:
            raise KfpUnreachableError(
                f"cannot reach KFP at {host}: /apis/v2beta1/healthz did not answer like a KFP "
                "API server (a login page, or another service?)"
            ) from None
    return client


def experiment_id(client: Client, host: str, name: str, namespace: str | None) -> str:
    """The id of the experiment called ``name``, created if missing."""
    with kfp_errors(host, f"find or create experiment {name!r}"), quiet():
        try:
            experiment = client.create_experiment(name=name, namespace=namespace)
        except ValueError as error:  # more than one experiment has the name
            raise KfpApiError(f"KFP at {host}: {one_line(error)}") from None
    return experiment.experiment_id


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallows what the client prints to stdout, where the CLI prints only its result."""
    # create_experiment and run_pipeline print "... details: <link>" to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        yield
