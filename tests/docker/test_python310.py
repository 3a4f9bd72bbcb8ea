"""The code the image runs must work on Python 3.10, the TFX 1.16 image's Python."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import image_checks as ic

VERMIN = Path(sys.executable).parent / "vermin"
# The package, and the build check that runs inside the image.
IMAGE_CODE = [ic.REPO_ROOT / "pipeline", ic.DOCKER_DIR]


def _vermin(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VERMIN), "-t=3.10-", "--no-tips", "--violations", *map(str, paths)],
        capture_output=True, text=True, check=False,
    )


def _python310() -> str | None:
    """A working Python 3.10 interpreter (pyenv shims may name one they cannot run)."""
    candidates = [*sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python"))),
                  shutil.which("python3.10")]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 10)":
            return candidate
    return None


def test_image_code_needs_nothing_newer_than_python_310():
    result = _vermin(*IMAGE_CODE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Target versions not met" not in result.stdout


def test_vermin_flags_code_that_needs_python_311(tmp_path):
    (tmp_path / "newer.py").write_text("import tomllib\n")
    result = _vermin(tmp_path)
    assert result.returncode != 0 and "3.11" in result.stdout, result.stdout


def test_image_code_compiles_under_python_310():
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter here (python3.10 on PATH, ~/.pyenv/versions/3.10*);"
                    " vermin still checks 3.10 compatibility")
    files = [str(f) for root in IMAGE_CODE for f in sorted(root.rglob("*.py"))]
    script = ("import sys\nassert sys.version_info[:2] == (3, 10), sys.version\n"
              "for name in sys.argv[1:]:\n"
              "    compile(open(name, encoding='utf-8').read(), name, 'exec')\n"
              "print(len(sys.argv) - 1)\n")
    result = subprocess.run([python, "-c", script, *files], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(files) > 0
