"""Fixtures shared by the chart tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from chart_rendering import REPO

BUILD_SCRIPT = REPO / "k8s" / "local" / "build-binaries.sh"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus' promtool, built from its Go module at k8s/local/versions.env's
    PROMETHEUS_VERSION into the cache outside the clone. `make test` builds it first, where its
    progress shows; a bare pytest run builds it here, silently, when it is missing."""
    built = subprocess.run([str(BUILD_SCRIPT), "--promtool"], capture_output=True, text=True)
    assert built.returncode == 0, f"building promtool failed:\n{built.stderr[-3000:]}"
    binary = Path(built.stdout.strip().splitlines()[-1]) / "promtool"
    assert binary.is_file(), binary
    return binary


@pytest.fixture(scope="session")
def promtool_test(promtool):
    """Runs `promtool test rules` on one test document (promtool's unit-test format) in
    workdir, beside the rule groups it names as rules.yaml."""

    def run(workdir: Path, test: dict, groups: list[dict] | None = None):
        if groups is not None:
            (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": groups},
                                                               sort_keys=False))
        (workdir / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
        return subprocess.run([str(promtool), "test", "rules", "test.yaml"], cwd=workdir,
                              capture_output=True, text=True)

    return run
