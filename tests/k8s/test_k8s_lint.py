"""yamllint over k8s/ with the settings kept in k8s/.yamllint.yaml."""

from __future__ import annotations

import subprocess
import sys

from k8s_manifests import K8S


def test_k8s_yaml_is_yamllint_clean():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "--format", "parsable",
         "--config-file", str(K8S / ".yamllint.yaml"), str(K8S)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_sees_every_yaml_file_under_k8s():
    """The lint above covers the files it should (yamllint skips names it does not know)."""
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--list-files",
         "--config-file", str(K8S / ".yamllint.yaml"), str(K8S)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    expected = {str(p) for p in K8S.rglob("*.yaml")}
    assert expected and expected <= listed, sorted(expected - listed)
