"""A fake KFP v2beta1 API server on 127.0.0.1, for the fast run and schedule tests.

A small HTTP server answers the way the real one does (request and response shapes of
backend/api/v2beta1: JSON with proto field names, grpc-gateway's {"error", "code", "message"}
error bodies, the hand-written healthz answer) and records every request. The tests drive the
real kfp 2.13 client through pipeline.runners.kubeflow and assert the exact requests it sends.
Runs put into ``runs`` are answered as recorded from KFP 2.16.1 on the local cluster
(kfp_runs/, capture_kfp_run.py), where the cluster tier runs the real server.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
# The two-step spec's own root (conftest.py compiles it with this), as every spec `tfxkfp
# compile` writes has one; every run and schedule must carry it.
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts/two-step"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class FakeKfp:
    """State and knobs of the fake API server; ``requests`` records what arrived."""

    requests: list[Request] = field(default_factory=list)
    experiments: list[dict] = field(default_factory=list)
    recurring_runs: list[dict] = field(default_factory=list)
    run_states: list[str] = field(default_factory=lambda: ["SUCCEEDED"])
    runs: dict[str, dict] = field(default_factory=dict)  # run id -> the server's answer
    deny: int | None = None  # answer every API call but healthz with this status
    deny_healthz: bool = False  # ... and healthz too, like an auth proxy in front
    healthz_html: bool = False  # healthz answered by a login page
    url: str = ""

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.requests]


def _error(code: int, message: str) -> dict:
    return {"error": message, "code": code, "message": message, "details": []}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: FakeKfp = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake.requests.append(Request(
            method=self.command,
            path=url.path,
            query={k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            body=json.loads(raw) if raw else None,
            authorization=self.headers.get("Authorization"),
        ))
        status, answer = self._answer(fake, url.path, fake.requests[-1])
        payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/html" if isinstance(answer, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, fake: FakeKfp, path: str, request: Request) -> tuple[int, Any]:
        if path == f"{API}/healthz":
            if fake.deny and fake.deny_healthz:
                return fake.deny, _error(16, "Unauthenticated")
            if fake.healthz_html:
                return 200, "<html><body>Sign in</body></html>"
            # The real server writes this one by hand, multi_user always present.
            return 200, {"commit_sha": "fake", "tag_name": "2.4.0", "multi_user": False}
        if fake.deny:
            return fake.deny, _error(16 if fake.deny == 401 else 7, "request denied")
        method = self.command
        if (method, path) == ("GET", f"{API}/experiments"):
            predicate = json.loads(request.query["filter"])["predicates"][0]
            found = [e for e in fake.experiments
                     if e["display_name"] == predicate["stringValue"]
                     and e["namespace"] == request.query.get("namespace", "")]
            # Proto JSON leaves out empty lists, so "none found" is an empty object.
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", f"{API}/experiments"):
            experiment = {**request.body, "experiment_id": f"exp-{len(fake.experiments) + 1}",
                          "created_at": "2025-01-01T00:00:00Z", "storage_state": "AVAILABLE"}
            fake.experiments.append(experiment)
            return 200, experiment
        if (method, path) == ("POST", f"{API}/runs"):
            return 200, {**request.body, "run_id": "run-1", "state": "PENDING",
                         "created_at": "2025-01-01T00:00:00Z"}
        if (method, path) == ("GET", f"{API}/runs"):
            newest = sorted(fake.runs.values(), key=lambda run: run["created_at"], reverse=True)
            return 200, {"runs": newest, "total_size": len(newest)} if newest else {}
        if (match := re.fullmatch(f"{API}/runs/([^/]+)", path)) and match[1] in fake.runs:
            return 200, fake.runs[match[1]]
        if match := re.fullmatch(f"{API}/runs/([^/]+)", path):
            state = fake.run_states.pop(0) if len(fake.run_states) > 1 else fake.run_states[0]
            return 200, {"run_id": match[1], "display_name": "run", "state": state}
        if (method, path) == ("POST", f"{API}/recurringruns"):
            recurring_run = {
                **request.body,
                "recurring_run_id": f"rr-{len(fake.recurring_runs) + 1}",
                "status": "ENABLED" if request.body["mode"] == "ENABLE" else "DISABLED",
            }
            fake.recurring_runs.append(recurring_run)
            return 200, recurring_run
        if (method, path) == ("GET", f"{API}/recurringruns"):
            start = int(request.query.get("page_token") or 0)
            end = start + int(request.query["page_size"])
            page: dict[str, Any] = {"recurringRuns": fake.recurring_runs[start:end],
                                    "total_size": len(fake.recurring_runs)}
            if end < len(fake.recurring_runs):
                page["next_page_token"] = str(end)
            return 200, page
        if method == "DELETE" and (match := re.fullmatch(f"{API}/recurringruns/([^/]+)", path)):
            kept = [r for r in fake.recurring_runs if r["recurring_run_id"] != match[1]]
            if len(kept) == len(fake.recurring_runs):
                return 404, _error(5, f"Job {match[1]} not found")
            fake.recurring_runs[:] = kept
            return 200, {}
        return 404, _error(5, "Not Found")


@contextlib.contextmanager
def serving() -> Iterator[FakeKfp]:
    """A fake API server answering at ``FakeKfp.url`` until the block ends."""
    fake = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
