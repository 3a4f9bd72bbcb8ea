"""A small compiled KFP pipeline for the submit and Vertex tests.

Both need a real PipelineSpec with typed parameters, not this project's spec: the tests
are about what is sent, and a two-step pipeline keeps the expected requests readable.
"""

from pathlib import Path

import pytest
from kfp import compiler, dsl


# Real annotations (no `from __future__ import annotations`): kfp reads a component's
# annotations as its parameter types.
@dsl.component
def _add(a: int, b: float) -> float:
    return a + b


@dsl.component
def _echo(msg: str, flag: bool, items: list, conf: dict) -> str:
    return msg


# Its own pipeline root, as every spec `tfxkfp compile` writes has.
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts/two-step"


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
