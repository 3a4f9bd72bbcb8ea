"""Offline validation of every chart under helm/ in every ci/*-values.yaml scenario.

Charts and scenarios are discovered, so a new chart or scenario is checked without editing
this file. Per chart, the data the harness needs lives beside it: checkov-skips.yaml (check id
-> reason) and an entry in tests/helm/bad_values.yaml (values its schema must reject).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from chart_checks import (
    KUBE_VERSIONS,
    absent_dependencies,
    external_pods_reason,
    label_failures,
    lint_failures,
    load_checkov_skips,
    port_failures,
    run_checkov,
    schema_rejection,
    selector_failures,
    unskipped,
    workload_failures,
)
from chart_rendering import chart_namespace, charts, render, scenarios, validate_objects

BAD_VALUES = Path(__file__).with_name("bad_values.yaml")

CHARTS = charts()
CASES = [(chart, scenario) for chart in CHARTS for scenario in scenarios(chart)]
CASE_IDS = [f"{chart.name}-{scenario.name.removesuffix('-values.yaml')}"
            for chart, scenario in CASES]


def _bad_values() -> dict:
    return yaml.safe_load(BAD_VALUES.read_text()) or {}


BAD_CASES = [(chart, case) for chart in CHARTS for case in _bad_values().get(chart.name) or []]


class _Renders:
    """Each scenario rendered once per session (helm test hooks included)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Path, Path], str | Exception] = {}

    def get(self, chart: Path, scenario: Path) -> list[dict]:
        key = (chart, scenario)
        if key not in self._cache:
            try:
                self._cache[key] = json.dumps(render(chart, [scenario], include_tests=True))
            except Exception as error:  # noqa: BLE001 - kept and re-raised per test
                self._cache[key] = error
        cached = self._cache[key]
        if isinstance(cached, Exception):
            raise cached
        return json.loads(cached)


@pytest.fixture(scope="session")
def renders() -> _Renders:
    return _Renders()


@pytest.fixture(scope="session")
def checkov_results(renders, tmp_path_factory):
    """One checkov run over every renderable scenario: {(chart, scenario): failures}."""
    root = tmp_path_factory.mktemp("checkov")
    written = {}
    for chart, scenario in CASES:
        try:
            objects = renders.get(chart, scenario)
        except Exception:  # noqa: BLE001 - test_render reports it for this scenario
            continue
        path = root / chart.name / f"{scenario.stem}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        # checkov skips any file containing "{{" as an unrendered template, but rendered
        # objects legitimately carry Prometheus and Grafana templates ("{{ $value }}").
        text = yaml.safe_dump_all(objects, sort_keys=False).replace("{{", "{ {")
        path.write_text(text)
        written[(chart, scenario)] = path.relative_to(root).as_posix()
    failures = run_checkov(root) if written else {}
    return {key: failures.get(rel, []) for key, rel in written.items()}


def test_charts_are_discovered():
    names = [chart.name for chart in CHARTS]
    assert "tf-serving" in names, names
    assert all((chart / "Chart.yaml").is_file() for chart in CHARTS)


@pytest.mark.parametrize("chart", CHARTS, ids=[c.name for c in CHARTS])
def test_chart_has_scenarios_schema_and_bad_values(chart):
    assert scenarios(chart), f"{chart.name}: no ci/*-values.yaml scenario"
    assert (chart / "values.schema.json").is_file(), f"{chart.name}: no values.schema.json"
    assert _bad_values().get(chart.name), (
        f"{chart.name}: add at least one case to {BAD_VALUES.name}")


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_lint_strict(chart, scenario):
    failures, notes = lint_failures(chart, [scenario], namespace=chart_namespace(chart))
    for note in notes:
        print(f"{chart.name}/{scenario.name}: {note}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_undownloadable_dependencies_are_disabled(chart, scenario, record_property):
    disabled, enabled = absent_dependencies(chart, [scenario])
    for dep in disabled:
        reason = (f"{chart.name}/{scenario.name}: dependency {dep.name} {dep.version} "
                  f"({dep.repository}) is disabled: it is not vendored under charts/ and "
                  "cannot be downloaded offline")
        print(reason)
        record_property(f"disabled_dependency_{dep.name}", reason)
        warnings.warn(reason, UserWarning, stacklevel=1)
    assert not enabled, (
        f"{chart.name}/{scenario.name}: enabled dependencies absent from charts/ "
        f"(cannot be downloaded offline): {[d.name for d in enabled]}; disable them in this "
        "scenario via their condition")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_render_validates(chart, scenario, kube_version, renders, record_property):
    objects = renders.get(chart, scenario)
    assert objects, f"{chart.name}/{scenario.name} rendered nothing"
    report = validate_objects(objects, kube_version)
    for item in report.unvalidated:
        message = f"{chart.name}/{scenario.name}: NOT VALIDATED {item}"
        print(message)
        record_property("unvalidated", message)
        warnings.warn(message, UserWarning, stacklevel=1)
    assert report.validated, "no object was validated"
    assert not report.failures, "\n".join(report.failures)


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_workloads_are_restricted_and_operable(chart, scenario, renders):
    objects = renders.get(chart, scenario)
    failures = workload_failures(objects) + label_failures(objects)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_selectors_and_ports_resolve(chart, scenario, renders):
    objects = renders.get(chart, scenario)
    for obj in objects:
        if external_pods_reason(obj):
            print(f"{chart.name}/{scenario.name}: {obj['kind']}/{obj['metadata']['name']} "
                  f"selects pods created by: {external_pods_reason(obj)}")
    failures = selector_failures(objects) + port_failures(objects)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_scenario_satisfies_schema(chart, scenario):
    assert schema_rejection(chart, yaml.safe_load(scenario.read_text()) or {}) is None


@pytest.mark.parametrize(("chart", "case"), BAD_CASES,
                         ids=[f"{c.name}-{case['case']}" for c, case in BAD_CASES])
def test_schema_rejects_bad_values(chart, case):
    error = schema_rejection(chart, case["values"])
    assert error is not None, f"{chart.name}: schema accepted {case['values']}"
    # The rejection must concern the section the case breaks, not something incidental.
    assert any(f"/{key}" in error or f"'{key}'" in error for key in case["values"]), error


@pytest.mark.parametrize(("chart", "scenario"), CASES, ids=CASE_IDS)
def test_checkov(chart, scenario, renders, checkov_results):
    renders.get(chart, scenario)  # a render error is reported here rather than as a KeyError
    skips, problems = load_checkov_skips(chart)
    assert not problems, "\n".join(problems)
    left, used = unskipped(checkov_results[(chart, scenario)], skips)
    for check_id in sorted(used):
        print(f"{chart.name}/{scenario.name}: checkov {check_id} skipped: "
              f"{' '.join(skips[check_id]['reason'].split())}")
    assert not left, "\n".join(map(str, left))


@pytest.mark.parametrize("chart", CHARTS, ids=[c.name for c in CHARTS])
def test_checkov_skips_are_needed(chart, checkov_results):
    skips, problems = load_checkov_skips(chart)
    assert not problems, "\n".join(problems)
    used: set[str] = set()
    for (owner, _), failures in checkov_results.items():
        if owner == chart:
            used |= unskipped(failures, skips)[1]
    stale = sorted(set(skips) - used)
    assert not stale, f"{chart.name}: checkov skips that suppress nothing, remove them: {stale}"
