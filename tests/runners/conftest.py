"""A small compiled KFP pipeline, and the fake KFP API server, for the submit, schedule and
Vertex tests.

They need a real PipelineSpec with typed parameters, not this project's spec: the tests
are about what is sent, and a two-step pipeline keeps the expected requests readable.
"""

from pathlib import Path

import kfp
import pytest
import yaml
from kfp import compiler, dsl

import fake_kfp
from fake_kfp import PIPELINE_ROOT


# Real annotations (no `from __future__ import annotations`): kfp reads a component's
# annotations as its parameter types.
@dsl.component
def _add(a: int, b: float) -> float:
    return a + b


@dsl.component
def _echo(msg: str, flag: bool, items: list, conf: dict) -> str:
    return msg




@dsl.pipeline(name="two-step", pipeline_root=PIPELINE_ROOT)
def _two_step(
    a: int = 1, b: float = 2.0, msg: str = "hi", flag: bool = False,
    items: list = [1], conf: dict = {},  # noqa: B006 (KFP pipeline defaults, never mutated)
):
    total = _add(a=a, b=b)
    _echo(msg=msg, flag=flag, items=items, conf=conf).after(total)


@pytest.fixture(scope="session")
def two_step_spec(tmp_path_factory) -> Path:
    """The two-step pipeline compiled by the kfp SDK to a PipelineSpec YAML."""
    path = tmp_path_factory.mktemp("spec") / "two-step.yaml"
    compiler.Compiler().compile(_two_step, str(path))
    return path


@pytest.fixture(scope="module")
def spec_path(two_step_spec) -> Path:
    return two_step_spec


@pytest.fixture(scope="module")
def spec(spec_path) -> dict:
    return yaml.safe_load(spec_path.read_text())


@pytest.fixture(autouse=True)
def _no_kfp_context(tmp_path, monkeypatch):
    # kfp.Client reads (and in a multi-user pod, writes) ~/.config/kfp/context.json; a
    # developer's saved namespace or cookie there would change the requests under test.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def kfp_server():
    with fake_kfp.serving() as fake:
        yield fake
