"""The overlays under k8s/overlays, built once per session with `kubectl kustomize`."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_manifests import K8S, OVERLAYS, build, kubectl


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict[str, Any]]]:
    """Overlay name -> its objects; skips (saying why) when kubectl is not installed."""
    if kubectl() is None:
        reason = "kubectl (with its built-in kustomize) is not on PATH: k8s/ overlays not built"
        print(f"note: {reason}")
        pytest.skip(reason)
    return {overlay: build(K8S / "overlays" / overlay) for overlay in OVERLAYS}
