"""The Dockerfiles under docker/, read without Docker: lint, pins, user, paths, build context."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import image_checks as ic
from pipeline import images

DOCKERFILES = ic.dockerfiles()
IDS = [path.relative_to(ic.REPO_ROOT).as_posix() for path in DOCKERFILES]
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((ic.REPO_ROOT / "pyproject.toml").read_text())
OCI_LABELS = ("title", "description", "version", "revision", "licenses", "base.name")


def _image(dockerfile: Path = ic.PIPELINE_DOCKERFILE) -> ic.Stage:
    return ic.stages(dockerfile)[-1]


def _image_env(dockerfile: Path = ic.PIPELINE_DOCKERFILE) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in _image(dockerfile).values("ENV"):
        env.update(ic.key_values(value))
    return env


def _added_pins() -> dict[str, str]:
    """``name -> version`` the image installs on top of its base (the package aside)."""
    pins = {}
    for run in _image().values("RUN"):
        for pip in ic.pip_commands(run):
            for requirement in pip.requirements:
                version = next(iter(requirement.specifier)).version
                pins[canonicalize_name(requirement.name)] = version
    return pins


def _hadolint(tmp_path: Path, *args: str) -> list[dict]:
    neutral = tmp_path / "hadolint.yaml"
    neutral.write_text("ignored: []\n")
    config = next((a for a in args if a.endswith(".hadolint.yaml")), None)
    files = [a for a in args if a != config]
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "-f", "json", "--config", config or str(neutral), *files],
        capture_output=True, text=True, cwd=ic.REPO_ROOT, check=False,
    )
    assert result.stdout.strip(), f"hadolint gave no report: {result.stderr}"
    return json.loads(result.stdout)


# --- lint --------------------------------------------------------------------------------------

def test_the_pipeline_dockerfile_is_discovered():
    assert ic.PIPELINE_DOCKERFILE in DOCKERFILES, IDS


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_finds_nothing(dockerfile, tmp_path):
    config = dockerfile.parent / ".hadolint.yaml"
    findings = _hadolint(tmp_path, *([str(config)] if config.exists() else []), str(dockerfile))
    assert findings == [], "\n".join(
        f"{dockerfile.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_reports_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    codes = {finding["code"] for finding in _hadolint(tmp_path, str(careless))}
    assert {"DL3007", "DL3013", "DL3042", "DL3002"} <= codes, codes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_lint_exceptions_are_explained(dockerfile):
    """No inline ignore pragmas; each rule a .hadolint.yaml ignores has a comment saying why."""
    pragmas = [line for line in dockerfile.read_text().splitlines()
               if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore", line)]
    assert pragmas == [], "put ignores in .hadolint.yaml next to the Dockerfile, with the reason"
    config = dockerfile.parent / ".hadolint.yaml"
    lines = config.read_text().splitlines() if config.exists() else []
    unexplained = [line for n, line in enumerate(lines)
                   if re.match(r"\s*-\s*(DL|SC)\d+", line)
                   and "#" not in line and not lines[n - 1].strip().startswith("#")]
    assert unexplained == [], f"{config}: ignored rules without a reason"


# --- base image, user, environment -------------------------------------------------------------

def _qualified(reference: str) -> str:
    """``reference`` with the registry Docker assumes when it names none (docker.io)."""
    first = reference.split("/")[0]
    if "/" in reference and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"docker.io/{reference}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_every_base_image_is_pinned(dockerfile):
    """Pinned as written, or by the default of a build argument that always has one."""
    args = ic.global_args(dockerfile)
    earlier_stages = set()
    for stage in ic.stages(dockerfile):
        if stage.base not in earlier_stages:
            used = re.findall(r"\$\{?(\w+)", stage.written_base)
            without_default = [name for name in used if not args.get(name)]
            assert without_default == [], (
                f"FROM {stage.written_base}: {without_default} without a default can unpin it")
            assert "$" not in stage.base, f"FROM {stage.written_base}: not resolved"
            assert images.is_pinned(stage.base), f"FROM {stage.base} is not pinned"
        if stage.name:
            earlier_stages.add(stage.name)


def test_pipeline_image_extends_the_tfx_release_the_package_pins():
    """By default; the wheel stage builds on the same base, so the wheel fits its Python."""
    base = _image().base
    tfx = ic.constraint_pins()["tfx"]
    assert _qualified(base.split("@")[0]) == f"docker.io/tensorflow/tfx:{tfx}", base
    assert {stage.written_base for stage in ic.stages(ic.PIPELINE_DOCKERFILE)} == {
        _image().written_base}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_runs_as_a_numeric_non_root_user(dockerfile):
    users = _image(dockerfile).values("USER")
    assert users, "no USER: the image would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]}: Kubernetes' runAsNonRoot can only verify a numeric user"
    assert int(match[1]) != 0 and (match[2] is None or int(match[2]) != 0), users[-1]


def test_pipeline_image_runs_as_1000_with_a_writable_home():
    """UID/GID 1000 as the kind shared volume and TF Serving use; HOME and cwd are its own."""
    image = _image()
    assert image.values("USER")[-1] == "1000:1000"
    env = _image_env()
    home = env["HOME"]
    assert any(re.search(rf"chown\s+1000:1000\s+{re.escape(home)}(\s|$)", run)
               for run in image.values("RUN")), f"nothing makes {home} the step user's"
    assert image.values("WORKDIR")[-1] == home
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_steps_set_their_command_and_the_beam_entrypoint_stays():
    """KFP/Vertex give every step a command (it replaces ENTRYPOINT); Dataflow needs boot."""
    from pipeline.runners.kubeflow import compiler

    image = _image()
    assert image.values("ENTRYPOINT") == [] and image.values("CMD") == []
    assert compiler.STEP_COMMAND[:2] == ("python", "-m")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_oci_labels(dockerfile):
    labels = DockerfileParser(path=str(dockerfile)).labels
    missing = [key for key in OCI_LABELS if f"org.opencontainers.image.{key}" not in labels]
    assert missing == []


def test_pipeline_image_labels_agree_with_the_project():
    labels = DockerfileParser(path=str(ic.PIPELINE_DOCKERFILE)).labels
    assert labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["org.opencontainers.image.base.name"] == _qualified(_image().base)


# --- what gets installed, and where ------------------------------------------------------------

def test_package_is_installed_where_compiled_specs_look():
    from pipeline.runners.kubeflow import compiler

    targets = [pip.options.get("--target", pip.options.get("-t"))
               for run in _image().values("RUN") for pip in ic.pip_commands(run)
               if {"--target", "-t"} & set(pip.options)]
    assert targets == [compiler.IMAGE_SOURCE_ROOT]
    assert _image_env()["PYTHONPATH"].split("$")[0] == compiler.IMAGE_SOURCE_ROOT
    assert _image_env()["PATH"].startswith(f"{compiler.IMAGE_SOURCE_ROOT}/bin:")
    assert compiler.IMAGE_SCHEMA_FILE.startswith(f"{compiler.IMAGE_SOURCE_ROOT}/")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_pip_never_resolves_dependencies(dockerfile):
    """Every pip install/wheel: --no-deps (or a constraints file), and exact pins only."""
    commands = [pip for stage in ic.stages(dockerfile) for run in stage.values("RUN")
                for pip in ic.pip_commands(run)]
    assert commands, "no pip command found: the parser or the Dockerfile changed"
    for pip in commands:
        line = " ".join(pip.words)
        constrained = bool({"-c", "--constraint"} & set(pip.options))
        assert "--no-deps" in pip.options or constrained, f"{line}: would resolve dependencies"
        assert not {"-r", "--requirement", "-e", "--editable", "-U", "--upgrade"} & set(pip.options)
        loose = [str(r) for r in pip.requirements if not ic.is_exact_pin(r)]
        assert loose == [], f"{line}: not pinned with =="


def test_added_packages_are_pinned_to_constraints():
    added = _added_pins()
    assert added, "the image adds no packages: the parser or the Dockerfile changed"
    pins = ic.constraint_pins()
    differ = {name: (version, pins.get(name)) for name, version in added.items()
              if pins.get(name) != version}
    assert differ == {}, "Dockerfile pin vs constraints.txt"


def test_added_packages_are_what_the_tfx_image_lacks():
    """What the package imports, minus what TFX (with its docker-image extra) brings, is added.

    Anything else the image installs must re-pin a distribution TFX already brings, never add
    a new one. TFX's dependency tree is read from this environment's installed metadata.
    """
    pins = ic.constraint_pins()
    from_tfx = ic.requirement_closure([f"tfx[docker-image]=={pins['tfx']}"])
    imported = ic.imported_distributions(ic.REPO_ROOT / "pipeline")
    lacking = set(imported) - from_tfx
    added = set(_added_pins())
    print(f"imported, not brought by TFX: {sorted(lacking)}; added: {sorted(added)}")
    assert lacking - added == set(), {name: sorted(imported[name]) for name in lacking - added}
    assert added - lacking <= from_tfx, "adds distributions TFX does not bring"


def test_added_pins_satisfy_each_other():
    added = _added_pins()
    for name, version in added.items():
        assert importlib.metadata.version(name) == version, f"{name}: metadata here is not the pin"
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            dependency = canonicalize_name(requirement.name)
            optional = requirement.marker is not None and "extra" in str(requirement.marker)
            if dependency in added and not optional:
                assert requirement.specifier.contains(added[dependency], prereleases=True), (
                    f"{name} {version} needs {requirement}; the image pins {added[dependency]}")


def test_build_verifies_every_added_distribution():
    """The image's last RUN checks the requirements of everything installed with --no-deps."""
    runs = [run for run in _image().values("RUN") if "verify_install.py" in run]
    assert len(runs) == 1
    words = ic.shell_commands(runs[0])[0]
    dists = {canonicalize_name(words[i + 1]) for i, word in enumerate(words) if word == "--dist"}
    expected = set(_added_pins()) | {canonicalize_name(PYPROJECT["project"]["name"])}
    assert dists == expected


# --- build context -----------------------------------------------------------------------------

def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_else():
    assert ic.DOCKERIGNORE.exists(), "without .dockerignore, docker build sends .venv/ (GBs)"
    files = ic.context_files()
    heavy = [f for f in files if f.startswith((".venv/", ".git/", "tests/", "output/", "build/"))
             or "__pycache__" in f or f.endswith((".pyc", ".pyo"))]
    assert heavy == []
    assert sum((ic.REPO_ROOT / f).stat().st_size for f in files) < 5_000_000
    for dockerfile in DOCKERFILES:
        for stage in ic.stages(dockerfile):
            for value in stage.values("COPY"):
                if "--from=" in value:
                    continue
                for source in [w for w in value.split() if not w.startswith("--")][:-1]:
                    prefix = source.rstrip("/")
                    assert any(f == prefix or f.startswith(prefix + "/") for f in files), (
                        f"{dockerfile.name}: COPY {value}: {source} is not in the build context")


def test_dockerignore_reading_follows_docker(tmp_path):
    """The context rules used above, on a small tree with known Docker behaviour."""
    for relative in ("keep/a.py", "keep/__pycache__/a.pyc", "keep/sub/b.txt", "drop/c.py",
                     "top.txt", "docs/keep.md", "docs/drop.md", ".venv/bin/python"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    (tmp_path / ".dockerignore").write_text(
        "*\n!keep/\n!top.txt\n!docs/keep.md\n**/__pycache__\n")
    assert ic.context_files(tmp_path) == ["docs/keep.md", "keep/a.py", "keep/sub/b.txt", "top.txt"]
