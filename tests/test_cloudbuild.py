""".ci/cloudbuild.yaml: pinned step images, existing paths, and tfxkfp commands the CLI takes.

Cloud Build cannot run here, so the file is checked for what would break it first: a step
image that moves, a path that is gone, a TFXKFP_* variable or flag the CLI does not know.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline import cli, images

REPO = Path(__file__).resolve().parents[1]
CLOUDBUILD = REPO / ".ci" / "cloudbuild.yaml"
SAMPLE = {"PROJECT_ID": "demo", "_REGION": "europe-west4", "_REPOSITORY": "tfx-kfp-gke",
          "_TAG": "abc1234", "_BUCKET": "demo-bucket", "_TARGET": "kfp",
          "_KFP_HOST": "https://kfp.example", "COMMIT_SHA": "0" * 40}


def _build() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text())


def _substitute(text: str) -> str:
    """Cloud Build's substitution, with sample values; $$ is a literal $ for the shell."""
    values = {**SAMPLE, "_IMAGE": _build()["substitutions"]["_IMAGE"]}
    for _ in range(2):  # _IMAGE refers to other substitutions
        text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    return text.replace("$$", "$")


def test_every_step_image_is_pinned_or_the_image_this_build_made():
    build = _build()
    assert images.is_pinned(_substitute(build["substitutions"]["_IMAGE"]))
    for step in build["steps"]:
        assert step["name"] == "${_IMAGE}" or images.is_pinned(step["name"]), step["id"]


def test_the_build_uses_the_pipeline_dockerfile_and_pushes_before_compiling():
    steps = {step["id"]: step for step in _build()["steps"]}
    dockerfile = next(a for a in steps["build"]["args"] if a.startswith("--file="))
    assert (REPO / dockerfile.removeprefix("--file=")).is_file()
    order = list(steps)
    assert order.index("push") < order.index("compile-and-submit")


def test_the_test_step_runs_existing_test_paths():
    [step] = [s for s in _build()["steps"] if s["id"] == "test"]
    script = step["args"][-1]
    assert "make setup" in script
    paths = [word for word in shlex.split(script) if word.startswith("tests/")]
    assert paths and all((REPO / path).exists() for path in paths)


def test_environment_names_are_variables_the_cli_reads():
    source = "".join(path.read_text() for path in (REPO / "pipeline" / "cli").glob("*.py"))
    read = set(re.findall(r'\benv\("(\w+)"', source))
    read |= set(re.findall(r'required_with_env\(\w+, "[-\w]+", "(\w+)"', source))
    for entry in _build()["options"]["env"]:
        name = entry.split("=", 1)[0]
        assert name.startswith("TFXKFP_") and name.removeprefix("TFXKFP_") in read, name


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_the_tfxkfp_commands_parse_with_the_build_environment(target, monkeypatch):
    build = _build()
    for entry in build["options"]["env"]:
        name, value = _substitute(entry).split("=", 1)
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TFXKFP_TARGET", target)
    [step] = [s for s in build["steps"] if s["id"] == "compile-and-submit"]
    script = _substitute(step["args"][-1])
    commands = [c.strip() for c in script.split("&&") if c.strip().startswith("tfxkfp ")]
    assert [c.split()[1] for c in commands] == ["compile", "submit"]
    for command in commands:
        argv = [word.replace("$spec", f"/tmp/pipeline.{target}") for word in shlex.split(command)]
        args = cli.parser().parse_args(argv[1:])  # SystemExit on an unknown or missing flag
        assert args.target == target
