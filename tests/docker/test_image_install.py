"""The pipeline image's install, replayed without Docker and imported from where it lands.

The Dockerfile's COPY instructions and its pip commands that write into the image (the wheel
build, ``pip install --no-deps --target``) run here against a directory standing for the
image's filesystem; then the build's own check, docker/pipeline/verify_install.py, runs on
that tree with the image's PYTHONPATH, and setuptools' editable-install finder for this
checkout removed, so ``pipeline`` can only come from the installed wheel.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import image_checks as ic

VERIFY_SCRIPT = ic.DOCKER_DIR / "pipeline" / "verify_install.py"

# Runs a script with editable-install finders and path hooks of this checkout removed.
_BOOTSTRAP = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _in_image(replay: ic.Replay, image_path: str) -> Path:
    return replay.final / image_path.lstrip("/")


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> ic.Replay:
    replayed = ic.assemble(ic.PIPELINE_DOCKERFILE, tmp_path_factory.mktemp("image"))
    import setuptools

    print(f"replayed with setuptools {setuptools.__version__} (the image pins its own):")
    print("\n".join(replayed.commands))
    return replayed


@pytest.fixture(scope="module")
def wheel(replay) -> zipfile.ZipFile:
    wheels = sorted(replay.roots["wheel"].rglob("*.whl"))
    assert len(wheels) == 1, wheels
    return zipfile.ZipFile(wheels[0])


@pytest.fixture(scope="module")
def verification(replay) -> subprocess.CompletedProcess:
    """The Dockerfile's verify_install.py RUN, on the replayed tree, as the build runs it."""
    from pipeline.runners.kubeflow import compiler

    runs = [run for run in ic.stages(ic.PIPELINE_DOCKERFILE)[-1].values("RUN")
            if "verify_install.py" in run]
    python, script, *args = ic.shell_commands(runs[0])[0]
    assert python == "python"
    # The image's PYTHONPATH entries, moved into the replayed tree (no inherited PYTHONPATH).
    image_pythonpath = re.sub(r"\$\{PYTHONPATH:\+:\$\{PYTHONPATH\}\}", "", replay.env["PYTHONPATH"])
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(
        PYTHONPATH=os.pathsep.join(str(_in_image(replay, p)) for p in image_pythonpath.split(":")),
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(_in_image(replay, replay.env["HOME"])),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    command = [sys.executable, "-c", _BOOTSTRAP, str(_in_image(replay, script)), *args,
               "--source-root", str(_in_image(replay, compiler.IMAGE_SOURCE_ROOT))]
    result = subprocess.run(command, env=env, cwd=env["HOME"], capture_output=True, text=True,
                            timeout=600, check=False)
    print(result.stdout)
    print("\n".join(line for line in result.stderr.splitlines() if line.startswith("error:")))
    return result


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_wheel_holds_every_file_of_the_package(wheel):
    package = ic.REPO_ROOT / "pipeline"
    expected = {path.relative_to(ic.REPO_ROOT).as_posix() for path in package.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
                and path.suffix not in (".pyc", ".pyo")}
    names = set(wheel.namelist())
    assert "pipeline/data/schema/schema.pbtxt" in names
    assert sorted(expected - names) == []


def test_package_lands_at_the_image_source_root(replay):
    from pipeline.runners.kubeflow import compiler

    root = _in_image(replay, compiler.IMAGE_SOURCE_ROOT)
    assert (root / "pipeline" / "__init__.py").is_file()
    assert (root / "bin" / "tfxkfp").is_file(), "the console script the image puts on PATH"
    assert (_in_image(replay, "/usr/local/lib/tfx-kfp-gke/verify_install.py")).is_file()


def test_every_module_imports_from_the_installed_wheel(replay, wheel, verification):
    from pipeline.runners.kubeflow import compiler

    imported = re.search(r"imported (\d+) modules from (\S+)", verification.stdout)
    assert imported, verification.stderr[-4000:]
    root = _in_image(replay, compiler.IMAGE_SOURCE_ROOT)
    assert Path(imported[2]) == root / "pipeline"
    modules = [name for name in wheel.namelist()
               if name.startswith("pipeline/") and name.endswith(".py")]
    assert int(imported[1]) == len(modules), modules
    assert [e for e in _errors(verification) if "import" in e] == []


def test_schema_is_where_compiled_specs_read_it(verification):
    assert [e for e in _errors(verification) if "schema" in e] == []


def test_requirements_of_the_no_deps_installs_are_met(verification):
    assert [e for e in _errors(verification) if " needs " in e or "not installed" in e] == []


def test_verification_passes_as_the_build_runs_it(verification):
    assert verification.returncode == 0, _errors(verification) or verification.stderr[-4000:]
    assert "ok: the installed package is usable" in verification.stdout


# --- the build's check itself can fail ---------------------------------------------------------

def _verify_module():
    spec = importlib.util.spec_from_file_location("verify_install", VERIFY_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verification_reports_unmet_requirements(tmp_path, monkeypatch):
    info = tmp_path / "needy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: needy\nVersion: 1.0\nRequires-Python: >=3.99\n"
        "Requires-Dist: kfp==0.0.1\nRequires-Dist: no-such-distribution-here\n"
        'Requires-Dist: kfp==0.0.2; extra == "optional"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = _verify_module().unmet_requirements("needy")
    assert len(problems) == 3, problems
    assert "needs Python >=3.99" in problems[0]
    assert "kfp==0.0.1" in problems[1] and "not installed" in problems[2]


def test_verification_reports_a_package_away_from_the_source_root(tmp_path, monkeypatch):
    verify = _verify_module()
    monkeypatch.setattr(verify, "import_all", lambda package="pipeline": [package])
    problems = verify.check([], str(tmp_path))
    assert any("imported from" in p for p in problems), problems
    assert any("schema" in p for p in problems), problems
