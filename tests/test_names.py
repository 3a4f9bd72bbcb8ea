"""Node ids and artifact property names are spelled once, in their own modules.

A reader and a writer that spell a name differently agree on nothing, silently: a renamed
node would empty run_summary.json without any error. So no module of the package may write
one as a string literal; it must use the constant.
"""

import ast
from pathlib import Path

from pipeline import artifact_properties, node_ids

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
# Property names distinctive enough to find by value ("blessed", "pushed" and "reason" are
# also ordinary words of run_summary.json; their uses are found by the calls below).
DISTINCT_PROPERTIES = {
    artifact_properties.BASELINE_FOUND, artifact_properties.SOURCE_VERSION_DIR,
    artifact_properties.NOT_PUSHED_REASON, artifact_properties.PUSHED_DESTINATION,
    artifact_properties.PUSHED_VERSION,
}
PROPERTY_CALLS = {"set_int_custom_property", "set_string_custom_property",
                  "set_json_value_custom_property", "get_int_custom_property",
                  "get_string_custom_property", "has_custom_property",
                  "_int_property", "_string_property"}


def _constants(module: str) -> set[str]:
    return {value for name, value in vars(module).items() if name.isupper()}


def _literals(path: Path):
    """(line, string) for every string literal that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.lineno, node.value


def _sources(excluded: str):
    return [path for path in sorted(PACKAGE.rglob("*.py")) if path.name != excluded]


def test_no_module_spells_a_node_id():
    ids = _constants(node_ids)
    assert len(ids) >= 19
    found = [f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
             for path in _sources("node_ids.py")
             for line, value in _literals(path) if value in ids]
    assert found == []


def test_no_module_spells_an_artifact_property():
    assert _constants(artifact_properties) >= DISTINCT_PROPERTIES
    found = []
    for path in _sources("artifact_properties.py"):
        found += [f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
                  for line, value in _literals(path) if value in DISTINCT_PROPERTIES]
        for call in ast.walk(ast.parse(path.read_text())):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", getattr(
                    call.func, "id", None)) in PROPERTY_CALLS:
                found += [f"{path.relative_to(PACKAGE)}:{arg.lineno}: {arg.value!r}"
                          for arg in call.args
                          if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    assert found == []
