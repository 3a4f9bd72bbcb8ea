"""helm/monitoring's alerting rules, evaluated by Prometheus' own rule engine.

promtool (the `promtool` fixture, conftest.py) checks the rendered rules and runs the unit
tests in alert_tests/: one file per alert, in promtool's rule-testing format, each showing the
alert firing in the situation its name describes and staying quiet otherwise.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from chart_rendering import CHARTS_DIR, render

CHART = CHARTS_DIR / "monitoring"
RELEASE = "monitoring"  # the release name the README installs with (scrape job monitoring-...)
ALERT_TESTS = Path(__file__).parent / "alert_tests"


def _rule_groups(values: dict | None = None, scenario: str | None = None) -> list[dict]:
    files = [CHART / "ci" / f"{scenario}-values.yaml"] if scenario else []
    objects = render(CHART, files, values, release=RELEASE, include_tests=False)
    return [group for o in objects if o["kind"] in ("PrometheusRule", "Rules")
            for group in o["spec"]["groups"]]


def _alerts(groups: list[dict]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"]}


@pytest.mark.parametrize("scenario", [None, "kind", "minikube", "gke"])
def test_rendered_rules_pass_promtool_check(promtool, tmp_path, scenario):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule_groups(scenario=scenario)}, sort_keys=False))
    checked = subprocess.run([str(promtool), "check", "rules", str(rules)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout, checked.stdout


def test_gke_leaves_out_the_pod_state_group():
    # GKE's Rules see only series labelled with their namespace (ci/gke-values.yaml says why).
    assert {g["name"] for g in _rule_groups(scenario="gke")} == {"tf-serving"}
    assert {g["name"] for g in _rule_groups()} == {"tf-serving", "tf-serving-pods"}


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    tested = {}
    for test_file in sorted(ALERT_TESTS.glob("*.yaml")):
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                tested.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
                assert case["alertname"].lower() == test_file.stem, (test_file, case)
    assert set(tested) == _alerts(_rule_groups())
    for alert, outcomes in tested.items():
        assert outcomes == {True, False}, f"{alert}: only {'firing' if any(outcomes) else 'quiet'}"


@pytest.mark.parametrize("test_file", sorted(ALERT_TESTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_alert_fires_when_it_should_and_only_then(promtool_test, tmp_path, test_file):
    result = promtool_test(tmp_path, yaml.safe_load(test_file.read_text()), _rule_groups())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_the_unit_tests_fail_when_a_rule_changes(promtool_test, tmp_path):
    # A threshold above the tests' 50% failure share: the cases that expect the alert now fail.
    groups = _rule_groups({"rules": {"errorRatio": {"threshold": 0.6}}})
    test = yaml.safe_load((ALERT_TESTS / "tfservinghigherrorratio.yaml").read_text())
    result = promtool_test(tmp_path, test, groups)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout + result.stderr
    assert "successful probe GETs do not dilute the ratio" in result.stdout + result.stderr
