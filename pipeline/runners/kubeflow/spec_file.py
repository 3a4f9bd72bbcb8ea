"""Reads and checks a compiled pipeline spec, and types ``--param`` values for it.

Everything here runs before any request is sent, so a bad file or parameter is an input
error (``SpecError``, ``ParamError``) and nothing has been created on the server. Vertex
submission (``runners/vertex.py``) applies the same checks to its PipelineJob.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.runners.kubeflow.errors import ParamError, SpecError, one_line

_SPEC_SUFFIXES = (".yaml", ".yml")


def parse_params(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``--param`` flags; a value may itself contain '='."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamError(f"--param {item!r} is not key=value")
        if not key.strip():
            raise ParamError(f"--param {item!r} has an empty key")
        if key in params:
            raise ParamError(f"--param {key!r} is given more than once")
        params[key] = value
    return params


def typed_params(
    pipeline_spec: Mapping[str, Any], params: Mapping[str, str], spec_path: str | Path
) -> dict[str, Any]:
    """Converts string values to the types the pipeline declares for its parameters.

    The client sends parameter values as they are given, and the backend would receive
    ``"5"`` for an integer parameter; the UI converts by declared type, and so does this.
    Reads both ``parameterType`` (schema 2.1) and the older ``type`` (INT/DOUBLE/STRING).
    """
    declared = pipeline_spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    typed: dict[str, Any] = {}
    for name, text in params.items():
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            raise ParamError(
                f"{spec_path}: the pipeline has no parameter {name!r} (it takes: {takes})"
            )
        kind = declared[name].get("parameterType") or declared[name].get("type", "STRING")
        typed[name] = _typed_value(name, text, kind)
    return typed


def _typed_value(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "STRING":
            return text
        if kind in ("NUMBER_INTEGER", "INT"):
            return int(text)
        if kind in ("NUMBER_DOUBLE", "DOUBLE"):
            return float(text)
        if kind == "BOOLEAN" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in ("LIST", "STRUCT"):
            value = json.loads(text)
            if isinstance(value, list if kind == "LIST" else dict):
                return value
    except ValueError:
        pass
    expected = {
        "NUMBER_INTEGER": "an integer", "INT": "an integer", "NUMBER_DOUBLE": "a number",
        "DOUBLE": "a number", "BOOLEAN": "true or false", "LIST": "a JSON list",
        "STRUCT": "a JSON object",
    }.get(kind)
    if expected is None:
        raise ParamError(f"--param {name}: parameters of type {kind} cannot be set")
    raise ParamError(f"--param {name}={text!r}: {name} takes {expected}")


def load_pipeline_spec(spec_path: str | Path) -> dict[str, Any]:
    """Reads and checks a KFP pipeline spec YAML (``tfxkfp compile --target kfp``).

    Checked here, before the experiment is created, because the client only parses the
    file while creating the run. The first YAML document must be a PipelineSpec; any
    further ones are the platform spec the client merges in.
    """
    path = Path(spec_path)
    if path.suffix.lower() not in _SPEC_SUFFIXES:
        raise SpecError(
            f"{path}: KFP takes the YAML pipeline spec of `tfxkfp compile --target kfp` "
            f"(.yaml or .yml), not a {path.suffix or 'suffix-less'} file"
        )
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such pipeline spec file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the pipeline spec: {one_line(error)}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not YAML: {one_line(error)}") from None
    if not documents or not isinstance(documents[0], dict):
        raise SpecError(f"{path}: not a pipeline spec (expected a YAML mapping)")
    spec = documents[0]
    if "pipelineSpec" in spec:
        raise SpecError(
            f"{path}: this is a Vertex PipelineJob; compile with --target kfp for KFP"
        )
    check_pipeline_spec(spec, path)
    for platform in documents[1:]:
        try:
            json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
        except (json_format.ParseError, TypeError, AttributeError) as error:
            raise SpecError(f"{path}: not a platform spec: {one_line(error)}") from None
    return spec


def check_pipeline_spec(spec: Mapping[str, Any], spec_path: str | Path) -> None:
    """Refuses a mapping that is not a PipelineSpec with a name and a root DAG."""
    try:
        message = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    except (json_format.ParseError, TypeError, AttributeError) as error:
        raise SpecError(f"{spec_path}: not a pipeline spec: {one_line(error)}") from None
    if not message.pipeline_info.name or not message.HasField("root"):
        raise SpecError(f"{spec_path}: not a pipeline spec (no pipelineInfo.name or root)")
