"""Typing and parsing ``--param`` values, without a server.

How a bad spec file or parameter is refused before any request is sent is tested through
``submit`` in test_kubeflow_runs.py.
"""

import re

import pytest

from pipeline.errors import InputError
from pipeline.runners.kubeflow import spec_file
from pipeline.runners.kubeflow.errors import ParamError


def test_legacy_parameter_types_are_converted_too():
    spec = {"root": {"inputDefinitions": {"parameters": {
        "steps": {"type": "INT"}, "rate": {"type": "DOUBLE"}, "name": {"type": "STRING"},
    }}}}

    assert spec_file.typed_params(spec, {"steps": "7", "rate": "0.5", "name": "n"}, "p.yaml") \
        == {"steps": 7, "rate": 0.5, "name": "n"}


def test_parse_params():
    assert spec_file.parse_params(["a=1", "url=http://x/?q=1", "empty="]) == {
        "a": "1", "url": "http://x/?q=1", "empty": ""
    }
    for items, message in [
        (["novalue"], "--param 'novalue' is not key=value"),
        (["=1"], "--param '=1' has an empty key"),
        (["a=1", "a=2"], "--param 'a' is given more than once"),
    ]:
        with pytest.raises(ParamError, match=re.escape(message)) as caught:
            spec_file.parse_params(items)
        assert isinstance(caught.value, InputError)

