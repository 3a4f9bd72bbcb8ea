"""Fixtures shared by the chart tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chart_rendering import REPO

BUILD_SCRIPT = REPO / "k8s" / "local" / "build-binaries.sh"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus' promtool, built from its Go module at k8s/local/versions.env's
    PROMETHEUS_VERSION into the cache outside the clone; the first call on a machine builds it
    (minutes, with go's progress on stderr)."""
    built = subprocess.run([str(BUILD_SCRIPT), "--promtool"], capture_output=True, text=True)
    assert built.returncode == 0, f"building promtool failed:\n{built.stderr[-3000:]}"
    binary = Path(built.stdout.strip().splitlines()[-1]) / "promtool"
    assert binary.is_file(), binary
    return binary
