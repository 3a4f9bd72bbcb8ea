"""helm test: does Prometheus scrape TF Serving, and has it loaded this chart's alerts?

Asks the Prometheus HTTP API (standard library only, the image has nothing else) until both
hold or TIMEOUT_SECONDS pass: some series up{namespace, job} equals 1 (the ServiceMonitor or
PodMonitoring found the Service/pods and the metrics path answers), and every alert named in
EXPECTED_ALERTS is loaded (the PrometheusRule passed the operator's ruleSelector and parsed).
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

BASE_URL = os.environ["PROMETHEUS_URL"].rstrip("/")
NAMESPACE = os.environ["SERVING_NAMESPACE"]
JOB = os.environ["SERVING_JOB"]
EXPECTED_ALERTS = sorted(a for a in os.environ.get("EXPECTED_ALERTS", "").split(",") if a)
DEADLINE = time.monotonic() + int(os.environ["TIMEOUT_SECONDS"])


def _get(path, **params):
    url = f"{BASE_URL}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise ValueError(f"{path}: {body.get('error', body)}")
    return body["data"]


def _problems():
    found = []
    # Built without f-string braces: rendered manifests must not contain double braces,
    # which checkov takes for an unrendered template and skips.
    query = "up{" + f'namespace="{NAMESPACE}", job="{JOB}"' + "}"
    series = _get("/api/v1/query", query=query)["result"]
    if not any(s["value"][1] == "1" for s in series):
        found.append(f"no target is up for {query} ({len(series)} series)")
    if EXPECTED_ALERTS:
        groups = _get("/api/v1/rules", type="alert")["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        missing = [name for name in EXPECTED_ALERTS if name not in loaded]
        if missing:
            found.append("alerting rules not loaded: " + ", ".join(missing))
    return found


def main():
    while True:
        try:
            found = _problems()
        except (OSError, ValueError, KeyError) as error:  # URLError and timeouts are OSError
            found = [f"Prometheus at {BASE_URL} did not answer: {error}"]
        if not found:
            print(f"ok: {JOB} in {NAMESPACE} is scraped; alerts loaded: {EXPECTED_ALERTS}")
            return 0
        if time.monotonic() > DEADLINE:
            print("\n".join(found), file=sys.stderr)
            return 1
        time.sleep(5)


sys.exit(main())
