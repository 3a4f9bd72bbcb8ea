"""k8s/minikube/profile.sh: syntax, and what it asks minikube for (run against a stub minikube)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from k8s_manifests import MINIKUBE_PROFILE, NODE_STORE, REPO, profile_constants

STORE_DIRS = ("", "data", "data/social_network_ads", "serving", "serving/social_network_ads")


@pytest.fixture
def stub_minikube(tmp_path):
    """A `minikube` on PATH that records its arguments, one per line, in calls.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    stub = bin_dir / "minikube"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    stub.chmod(0o755)

    def run(*args: str, store=None, script=MINIKUBE_PROFILE
            ) -> tuple[subprocess.CompletedProcess, list[str]]:
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        env.pop("TFX_STORE_DIR", None)
        if store is not None:
            env["TFX_STORE_DIR"] = str(store)
        result = subprocess.run(["bash", str(script), *args], capture_output=True,
                                text=True, env=env, cwd=tmp_path, timeout=30, check=False)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    return run


def test_script_parses_and_is_strict():
    result = subprocess.run(["bash", "-n", str(MINIKUBE_PROFILE)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = MINIKUBE_PROFILE.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(MINIKUBE_PROFILE, os.X_OK), "profile.sh is not executable"


def test_up_starts_the_pinned_profile_with_the_store_mounted(stub_minikube, tmp_path):
    store = tmp_path / "store"
    result, calls = stub_minikube("up", "--driver=docker", store=store)
    assert result.returncode == 0, result.stderr
    constants = profile_constants()
    assert calls[0] == "start"
    flags = calls[1:-1]
    options = dict(zip(flags[::2], flags[1::2], strict=True))
    assert options == {
        "--profile": "tfx-kfp-gke",
        "--nodes": "1",
        "--kubernetes-version": constants["KUBERNETES_VERSION"],
        "--cpus": "4",
        "--memory": "12g",
        # Absolute host path (minikube needs one) onto the path the volumes use.
        "--mount-string": f"{store}:{NODE_STORE}",
        "--mount-uid": "1000",
        "--mount-gid": "1000",
    }
    # The caller's flags come last, so they override the defaults.
    assert calls[-1] == "--driver=docker"


def test_up_creates_the_store_layout_writable_by_the_pipeline_uid(stub_minikube, tmp_path):
    store = tmp_path / "nested" / "store"
    result, _ = stub_minikube("up", store=store)
    assert result.returncode == 0, result.stderr
    for sub in STORE_DIRS:
        mode = stat.S_IMODE((store / sub).stat().st_mode)
        # The docker and podman drivers bind-mount it unchanged; steps run as uid 1000.
        assert mode & 0o777 == 0o777, f"{store / sub}: mode {oct(mode)}"


def test_up_defaults_to_a_store_inside_the_repository(stub_minikube, tmp_path):
    # A copy of the script in a scratch repository, so the test writes nothing into this one.
    repo = tmp_path / "repo"
    script = repo / MINIKUBE_PROFILE.relative_to(REPO)
    script.parent.mkdir(parents=True)
    shutil.copy2(MINIKUBE_PROFILE, script)
    result, calls = stub_minikube("up", script=script)
    assert result.returncode == 0, result.stderr
    mount = calls[calls.index("--mount-string") + 1]
    host, node_path = mount.rsplit(":", 1)
    assert node_path == NODE_STORE
    assert host == str(repo / ".minikube" / "tfx")
    assert (repo / ".minikube" / "tfx" / "serving" / "social_network_ads").is_dir()


def test_down_deletes_the_profile(stub_minikube):
    result, calls = stub_minikube("down")
    assert result.returncode == 0, result.stderr
    assert calls == ["delete", "--profile", "tfx-kfp-gke"]


@pytest.mark.parametrize("args", [(), ("sideways",), ("down", "--purge")])
def test_bad_usage_exits_2_without_calling_minikube(stub_minikube, args):
    result, calls = stub_minikube(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert calls == []
