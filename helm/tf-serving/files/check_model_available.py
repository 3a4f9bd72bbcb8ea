"""helm test: pass once TF Serving reports an AVAILABLE version of the model (and of each label).

GET /v1/models/<name> answers 200 whatever the versions' states, so the JSON is read: a
version LOADING, UNAVAILABLE or failed (status.error_code other than OK) does not count.
Standard library only: runs in a plain python image as a non-root user.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def available_versions(url: str) -> list[str]:
    """Versions whose state is AVAILABLE with status OK in a model status response."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    return [
        str(status.get("version"))
        for status in body.get("model_version_status", [])
        if status.get("state") == "AVAILABLE"
        and status.get("status", {}).get("error_code", "OK") == "OK"
    ]


def problems(base_url: str, model: str, labels: list[str]) -> list[str]:
    """What is not served yet; empty when the model and every label are AVAILABLE."""
    found = []
    targets = [("model", f"{base_url}/v1/models/{model}")]
    targets += [(f"label {label}", f"{base_url}/v1/models/{model}/labels/{label}")
                for label in labels]
    for what, url in targets:
        try:
            versions = available_versions(url)
        except (urllib.error.URLError, OSError, ValueError) as error:
            found.append(f"{what}: {url}: {error}")
            continue
        if not versions:
            found.append(f"{what}: no AVAILABLE version at {url}")
        else:
            print(f"{what}: AVAILABLE version(s) {', '.join(versions)}")
    return found


def main() -> int:
    base_url = os.environ["TF_SERVING_URL"].rstrip("/")
    model = os.environ["MODEL_NAME"]
    labels = [label for label in os.environ.get("VERSION_LABELS", "").split(",") if label]
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "120"))
    while True:
        found = problems(base_url, model, labels)
        if not found:
            print(f"model {model} is served at {base_url}")
            return 0
        if time.monotonic() >= deadline:
            print("\n".join(found), file=sys.stderr)
            return 1
        time.sleep(float(os.environ.get("RETRY_SECONDS", "5")))


if __name__ == "__main__":
    sys.exit(main())
