"""Behaviour of helm/monitoring that the generic chart harness cannot know.

The alert expressions and dashboard queries are parsed with a PromQL grammar (Lark, LALR)
and type-checked: every selector must name a metric that TF Serving, TensorFlow's SavedModel
loader, kube-state-metrics or the Kubeflow Pipelines API server really exports, with labels it
really carries. What the alerts do is tested by Prometheus' own rule engine (test_alert_rules.py).
The catalogue below records where each metric is defined upstream. The chart's scrape objects
are checked against what helm/tf-serving renders (Service labels, port names, metrics path),
and the helm test script runs against a fake Prometheus on loopback.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from lark import Lark, Token, Tree
from lark.exceptions import LarkError

from chart_rendering import CHARTS_DIR, render

CHART = CHARTS_DIR / "monitoring"
TF_SERVING_CHART = CHARTS_DIR / "tf-serving"
KFP_CHART = CHARTS_DIR / "kfp"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p
             for p in sorted((CHART / "ci").glob("*-values.yaml"))}
RELEASE = "monitoring"  # the release name the README installs with
# <fullname>-<target>; the fullname is the release name, which contains the chart name.
JOB = "monitoring-tf-serving"
KFP_JOB = "monitoring-kfp-api-server"
ALERTS = {"TFServingHighErrorRatio", "TFServingHighP99Latency", "TFServingModelLoadFailed",
          "TFServingHighBatchQueueingLatency", "TFServingNoAvailableModel", "TFServingPodNotReady",
          "TFServingContainerRestarting"}
# The pod-state alerts, on kube-state-metrics' series: absent on GKE (ci/gke-values.yaml).
POD_STATE_ALERTS = {"TFServingNoAvailableModel", "TFServingPodNotReady",
                    "TFServingContainerRestarting"}


# --- what the upstream projects export ----------------------------------------------------------

def tf_prometheus_name(internal: str) -> str:
    """TF Serving's exporter (util/prometheus_exporter.cc, GetPrometheusMetricName): every
    character outside [a-zA-Z0-9_] becomes ':' and a leading digit gets a '_' prefix."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", internal)
    return f"_{name}" if name[:1].isdigit() else name


@dataclass(frozen=True)
class Metric:
    kind: str  # counter | gauge | histogram
    labels: frozenset[str]
    source: str


def _tf(kind: str, labels: set[str], source: str) -> Metric:
    return Metric(kind, frozenset(labels), source)


# Internal TensorFlow monitoring names, as defined upstream (tensorflow/serving 2.16.1 and
# TensorFlow's loader it links). Samplers are exported as histograms, in microseconds.
_TF_METRICS = {
    "/tensorflow/serving/request_count": _tf(
        "counter", {"model_name", "status"}, "tensorflow_serving/servables/tensorflow/util.cc"),
    "/tensorflow/serving/request_latency": _tf(
        "histogram", {"model_name", "API", "entrypoint"},
        "tensorflow_serving/servables/tensorflow/util.cc"),
    "/tensorflow/serving/runtime_latency": _tf(
        "histogram", {"model_name", "API", "runtime"},
        "tensorflow_serving/servables/tensorflow/util.cc"),
    "/tensorflow/serving/batching_session/queuing_latency": _tf(
        "histogram", {"thread_pool_name"}, "tensorflow_serving/batching/batching_session.cc"),
    "/tensorflow/serving/batching_session/input_batch_size": _tf(
        "histogram", set(), "tensorflow_serving/batching/batching_util.h (task batching_session)"),
    "/tensorflow/serving/batching_session/processed_batch_size": _tf(
        "histogram", set(), "tensorflow_serving/batching/batching_util.h (task batching_session)"),
    "/tensorflow/serving/model_warmup_latency": _tf(
        "histogram", {"model_path", "status"},
        "tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc"),
    "/tensorflow/cc/saved_model/load_attempt_count": _tf(
        "counter", {"model_path", "status"}, "tensorflow/cc/saved_model/loader.cc"),
    "/tensorflow/cc/saved_model/load_latency": _tf(
        "counter", {"model_path"}, "tensorflow/cc/saved_model/loader.cc"),
}

_KFP_APISERVER = "kubeflow/pipelines backend/src/apiserver"
# Kubeflow Pipelines 2.x API server (names unchanged from 2.0.5 to 2.17; client_golang adds no
# _total suffix to these counters).
_RESOURCE_MANAGER = f"{_KFP_APISERVER}/resource/resource_manager.go"
_KFP_METRICS = {
    "resource_manager_workflow_runs_success": Metric(
        "gauge", frozenset({"profile", "workflow"}), _RESOURCE_MANAGER),
    "resource_manager_workflow_runs_failed": Metric(
        "gauge", frozenset({"profile", "workflow"}), _RESOURCE_MANAGER),
    "resource_manager_workflow_gc": Metric("counter", frozenset(), _RESOURCE_MANAGER),
    "job_server_job_count": Metric("gauge", frozenset(), f"{_KFP_APISERVER}/server/job_server.go"),
    "run_server_run_count": Metric("gauge", frozenset(), f"{_KFP_APISERVER}/server/run_server.go"),
    **{f"run_server_{verb}_requests": Metric("counter", frozenset(),
                                             f"{_KFP_APISERVER}/server/run_server.go")
       for verb in ("create", "get", "list", "delete", "archive", "unarchive",
                    "report_metrics", "read_artifact", "terminate", "retry")},
}

# kube-state-metrics v2 (internal/store/pod.go): per container of every pod.
_KSM_POD = "kubernetes/kube-state-metrics internal/store/pod.go"
_KSM_METRICS = {
    "kube_pod_container_status_ready": Metric(
        "gauge", frozenset({"namespace", "pod", "uid", "container"}), _KSM_POD),
    "kube_pod_container_status_restarts_total": Metric(
        "counter", frozenset({"namespace", "pod", "uid", "container"}), _KSM_POD),
}

METRICS: dict[str, Metric] = {
    **{tf_prometheus_name(name): metric for name, metric in _TF_METRICS.items()},
    **_KFP_METRICS,
    **_KSM_METRICS,
    "up": Metric("gauge", frozenset(), "Prometheus, per scrape target"),
}

# Labels every scraped series gets from its target: ServiceMonitor/PodMonitor (namespace,
# service, pod, container, endpoint, job, instance) and PodMonitoring (namespace, job,
# instance, plus the pod and container the chart asks for in targetLabels.metadata).
TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "container", "service",
                           "endpoint"})


def series_labels(name: str) -> frozenset[str] | None:
    """Labels of a series name (histograms as _bucket/_sum/_count), None if not exported."""
    if name in METRICS and METRICS[name].kind != "histogram":
        return METRICS[name].labels | TARGET_LABELS | {"__name__"}
    for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and base in METRICS and METRICS[base].kind == "histogram":
            return METRICS[base].labels | TARGET_LABELS | extra | {"__name__"}
    return None


# --- PromQL -------------------------------------------------------------------------------------

PROMQL = Lark(r"""
    ?start: expr
    ?expr: or_expr
    ?or_expr: and_expr
        | or_expr OR matching? and_expr                       -> binary
    ?and_expr: cmp_expr
        | and_expr (AND | UNLESS) matching? cmp_expr          -> binary
    ?cmp_expr: add_expr
        | cmp_expr CMP BOOL? matching? add_expr               -> binary
    ?add_expr: mul_expr
        | add_expr SIGN matching? mul_expr                    -> binary
    ?mul_expr: unary_expr
        | mul_expr (MUL | ATAN2) matching? unary_expr         -> binary
    ?unary_expr: pow_expr
        | SIGN unary_expr                                     -> unary
    ?pow_expr: primary
        | primary POW matching? unary_expr                    -> binary
    ?primary: NUMBER                                          -> number
        | STRING                                              -> string
        | "(" expr ")"                                        -> paren
        | IDENT grouping? "(" [expr ("," expr)*] ")" grouping? -> call
        | IDENT matchers? range? offset?                      -> selector
        | matchers range? offset?                             -> selector
    matching: (ON | IGNORING) labels ((GROUP_LEFT | GROUP_RIGHT) labels?)?
    grouping: (BY | WITHOUT) labels
    labels: "(" [LABEL ("," LABEL)* ","?] ")"
    matchers: "{" [matcher ("," matcher)* ","?] "}"
    matcher: LABEL MATCH STRING
    range: "[" DURATION "]"
    offset: "offset" DURATION

    OR: "or"
    AND: "and"
    UNLESS: "unless"
    ATAN2: "atan2"
    BOOL: "bool"
    ON: "on"
    IGNORING: "ignoring"
    GROUP_LEFT: "group_left"
    GROUP_RIGHT: "group_right"
    BY: "by"
    WITHOUT: "without"
    CMP: "==" | "!=" | ">=" | "<=" | ">" | "<"
    MATCH: "=~" | "!~" | "!=" | "="
    SIGN: "+" | "-"
    MUL: "*" | "/" | "%"
    POW: "^"
    IDENT: /[a-zA-Z_:][a-zA-Z0-9_:]*/
    LABEL: /[a-zA-Z_][a-zA-Z0-9_]*/
    NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
    DURATION: /(\d+(ms|s|m|h|d|w|y))+/
    STRING: /"([^"\\]|\\.)*"/ | /'([^'\\]|\\.)*'/
    %ignore /\s+/
""", parser="lalr", lexer="contextual")

# Function signatures: argument types (a trailing "?" marks an optional one) and result type.
FUNCTIONS = {
    **{name: (("matrix",), "vector") for name in (
        "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "absent_over_time", "present_over_time")},
    "quantile_over_time": (("scalar", "matrix"), "vector"),
    "histogram_quantile": (("scalar", "vector"), "vector"),
    "absent": (("vector",), "vector"),
    "vector": (("scalar",), "vector"),
    "scalar": (("vector",), "scalar"),
    "time": ((), "scalar"),
    "timestamp": (("vector",), "vector"),
    "abs": (("vector",), "vector"),
    "ceil": (("vector",), "vector"),
    "floor": (("vector",), "vector"),
    "round": (("vector", "scalar?"), "vector"),
    "clamp_min": (("vector", "scalar"), "vector"),
    "clamp_max": (("vector", "scalar"), "vector"),
    "label_replace": (("vector", "string", "string", "string", "string"), "vector"),
}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "group", "topk",
                "bottomk", "quantile", "count_values"}
AGGREGATION_PARAMETER = {"topk": "scalar", "bottomk": "scalar", "quantile": "scalar",
                         "count_values": "string"}


class PromQLError(ValueError):
    """An expression that is not valid, type-correct PromQL or uses unknown metrics/labels."""


@dataclass
class Selector:
    name: str | None
    matchers: dict[str, tuple[str, str]]  # label -> (operator, value)


@dataclass
class _Value:
    type: str
    labels: frozenset[str] | None  # None: unknown (absent(), vector())


@dataclass
class Analysis:
    type: str
    selectors: list[Selector] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)


def _unquote(token: str) -> str:
    return json.loads(token) if token.startswith('"') else token[1:-1]


def _labels_of(tree: Tree) -> list[str]:
    return [str(t) for t in tree.children if isinstance(t, Token)]


def analyse(expr: str) -> Analysis:
    """Parse and type-check one expression; every selector must name an exported series and
    every label it matches, groups by or joins on must exist on the series involved."""
    try:
        tree = PROMQL.parse(expr)
    except LarkError as error:
        raise PromQLError(f"syntax: {error}") from error
    result = Analysis(type="")
    result.type = _check(tree, result).type
    return result


def _need(value: _Value, wanted: str, where: str) -> None:
    if value.type != wanted:
        raise PromQLError(f"{where}: expected {wanted}, got {value.type}")


def _known(labels: set[str] | frozenset[str], available: frozenset[str] | None, where: str) -> None:
    if available is not None and not set(labels) <= available:
        raise PromQLError(f"{where}: labels {sorted(set(labels) - available)} do not exist there")


def _check(node: Tree | Token, out: Analysis) -> _Value:  # noqa: C901 - one case per node kind
    kind = node.data if isinstance(node, Tree) else "token"
    children = node.children if isinstance(node, Tree) else []
    if kind == "number":
        return _Value("scalar", frozenset())
    if kind == "string":
        return _Value("string", frozenset())
    if kind == "paren":
        return _check(children[0], out)
    if kind == "unary":
        value = _check(children[1], out)
        if value.type not in ("scalar", "vector"):
            raise PromQLError(f"unary {children[0]} on {value.type}")
        return value
    if kind == "selector":
        name = str(children[0]) if isinstance(children[0], Token) else None
        parts = [c for c in children if isinstance(c, Tree)]
        matchers = {}
        for tree in (p for p in parts if p.data == "matchers"):
            for matcher in tree.children:
                if matcher is not None:
                    label, op, value = matcher.children
                    matchers[str(label)] = (str(op), _unquote(str(value)))
        if name is None and "__name__" in matchers and matchers["__name__"][0] == "=":
            name = matchers["__name__"][1]
        if name is None:
            raise PromQLError(f"selector without a metric name: {matchers}")
        available = series_labels(name)
        if available is None:
            raise PromQLError(f"{name}: not a series TF Serving, TensorFlow, kube-state-metrics "
                              "or KFP exports")
        _known(matchers, available, name)
        out.selectors.append(Selector(name, matchers))
        is_range = any(p.data == "range" for p in parts)
        return _Value("matrix" if is_range else "vector", available - {"__name__"})
    if kind == "call" and str(children[0]) in AGGREGATIONS:
        return _aggregate(children, out)
    if kind == "call":
        name, args = str(children[0]), [c for c in children[1:] if c is not None]
        if any(isinstance(a, Tree) and a.data == "grouping" for a in args):
            raise PromQLError(f"{name}() is not an aggregation: no by/without")
        if name not in FUNCTIONS:
            raise PromQLError(f"unknown function {name}")
        wanted, result = FUNCTIONS[name]
        required = [w for w in wanted if not w.endswith("?")]
        if not len(required) <= len(args) <= len(wanted):
            raise PromQLError(f"{name}: {len(args)} arguments, expected {len(wanted)}")
        values = [_check(a, out) for a in args]
        for value, want in zip(values, wanted, strict=False):  # "?" arguments are optional
            _need(value, want.rstrip("?"), f"{name}()")
        out.functions.add(name)
        vectors = [v for v in values if v.type in ("vector", "matrix")]
        labels = vectors[0].labels if vectors else frozenset()
        if name == "histogram_quantile":
            if "le" not in (labels or {"le"}):
                raise PromQLError("histogram_quantile() over series without an le label")
            labels = labels - {"le"} if labels is not None else None
        if name in ("absent", "vector", "absent_over_time", "time"):
            labels = None if name != "time" else frozenset()
        return _Value(result, labels)
    if kind == "binary":
        left, op, *rest = children
        right = rest[-1]
        modifiers = rest[:-1]
        lhs, rhs = _check(left, out), _check(right, out)
        for side in (lhs, rhs):
            if side.type not in ("scalar", "vector"):
                raise PromQLError(f"'{op}' on a {side.type}")
        has_bool = any(isinstance(m, Token) and m.type == "BOOL" for m in modifiers)
        matching = [m for m in modifiers if isinstance(m, Tree) and m.data == "matching"]
        if str(op) in ("and", "or", "unless") and "scalar" in (lhs.type, rhs.type):
            raise PromQLError(f"set operator {op} needs vectors on both sides")
        if op.type == "CMP" and lhs.type == rhs.type == "scalar" and not has_bool:
            raise PromQLError("comparison of two scalars needs bool")
        if matching:
            if "scalar" in (lhs.type, rhs.type):
                raise PromQLError(f"vector matching in '{op}' with a scalar side")
            tokens = matching[0].children
            names = _labels_of(tokens[1])
            if str(tokens[0]) == "on":
                _known(names, lhs.labels, f"on() left of {op}")
                _known(names, rhs.labels, f"on() right of {op}")
        if lhs.type == rhs.type == "scalar":
            return _Value("scalar", frozenset())
        if str(op) == "or":
            labels = None if None in (lhs.labels, rhs.labels) else lhs.labels | rhs.labels
            return _Value("vector", labels)
        return _Value("vector", lhs.labels if lhs.type == "vector" else rhs.labels)
    raise PromQLError(f"unsupported expression node {kind}")


def _aggregate(children: list, out: Analysis) -> _Value:
    op = str(children[0])
    groupings = [c for c in children if isinstance(c, Tree) and c.data == "grouping"]
    args = [c for c in children[1:]
            if c is not None and not (isinstance(c, Tree) and c.data == "grouping")]
    values = [_check(a, out) for a in args]
    expected = ([AGGREGATION_PARAMETER[op]] if op in AGGREGATION_PARAMETER else []) + ["vector"]
    if len(values) != len(expected):
        raise PromQLError(f"{op}: {len(values)} arguments, expected {len(expected)}")
    for value, want in zip(values, expected, strict=True):
        _need(value, want, op)
    out.functions.add(op)
    labels = values[-1].labels
    for grouping in groupings:
        keyword, names = str(grouping.children[0]), _labels_of(grouping.children[1])
        _known(names, labels, f"{op} {keyword}")
        if keyword == "by":
            labels = frozenset(names)
        elif labels is not None:
            labels = labels - set(names)
    if not groupings:
        labels = frozenset()
    return _Value("vector", labels)


# --- rendering helpers --------------------------------------------------------------------------

def _render(values: Mapping[str, Any] | None = None, scenario: str | None = None,
            include_tests: bool = True) -> list[dict]:
    files = [SCENARIOS[scenario]] if scenario else []
    return render(CHART, files, values, include_tests=include_tests, release=RELEASE)


def _of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[dict], kind: str) -> dict:
    found = _of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def _rules(objects: list[dict]) -> Iterator[dict]:
    for obj in objects:
        if obj["kind"] in ("PrometheusRule", "Rules"):
            for group in obj["spec"]["groups"]:
                yield from group["rules"]


def _dashboards(objects: list[dict]) -> dict[str, dict]:
    return {key: json.loads(text) for cm in _of_kind(objects, "ConfigMap")
            for key, text in (cm.get("data") or {}).items() if key.endswith(".json")}


_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "3h", "$__interval": "1m",
                      "$namespace": "tfx-serving", "$model": "social_network_ads"}


def _grafana_to_promql(query: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"unknown Grafana variable in {query!r}"
    return query


def _panel_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            yield panel["title"], target["expr"]


# --- the PromQL checker itself ------------------------------------------------------------------

def test_exporter_name_rule_matches_tf_serving():
    # prometheus_exporter_test.cc expects "/test/path/total" to be exported as ":test:path:total".
    assert tf_prometheus_name("/test/path/total") == ":test:path:total"
    assert (tf_prometheus_name("/tensorflow/serving/request_count")
            == ":tensorflow:serving:request_count")


@pytest.mark.parametrize("expr, problem", [
    ("rate(:tensorflow:serving:request_count[5m]", "syntax"),
    ('up{job~"x"}', "syntax"),
    ("rate(:tensorflow:serving:request_count)", "expected matrix"),
    ("histogram_quantile(0.99, rate(:tensorflow:serving:request_count[5m]))", "le label"),
    ("sum by (model) (:tensorflow:serving:request_count)", "do not exist"),
    (':tensorflow:serving:request_count{model="x"}', "do not exist"),
    (":tensorflow:serving:request_latency", "not a series"),
    ("tensorflow_serving_request_count", "not a series"),
    ("1 > 0", "needs bool"),
    ("up and 1", "set operator"),
    ("sum(up) by (le)", "do not exist"),
    ("up == on (model_path) :tensorflow:cc:saved_model:load_attempt_count", "do not exist"),
    ("frobnicate(up)", "unknown function"),
])
def test_promql_checker_rejects(expr, problem):
    with pytest.raises(PromQLError, match=problem):
        analyse(expr)


def test_promql_checker_accepts_and_reports_selectors():
    result = analyse('absent((up{job="a"} == 1) and on (namespace, job, instance) '
                     '(:tensorflow:cc:saved_model:load_attempt_count{status="success"} > 0))')
    assert result.type == "vector"
    assert [s.name for s in result.selectors] == [
        "up", ":tensorflow:cc:saved_model:load_attempt_count"]
    assert result.selectors[1].matchers == {"status": ("=", "success")}


# --- alerting rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_alerts_are_valid_promql_on_exported_series(scenario):
    rules = list(_rules(_render(scenario=scenario)))
    expected = ALERTS - POD_STATE_ALERTS if scenario == "gke" else ALERTS
    assert {r["alert"] for r in rules} == expected
    for rule in rules:
        analysis = analyse(rule["expr"])
        assert analysis.type == "vector", f"{rule['alert']}: {analysis.type}"
        for selector in analysis.selectors:
            where = (rule["alert"], selector)
            assert selector.matchers.get("namespace") == ("=", "tfx-serving"), where
            if selector.name in _KSM_METRICS:
                # kube-state-metrics' job differs between installs; its container label does not.
                assert selector.matchers.get("container") == ("=", "tf-serving"), where
            else:
                assert selector.matchers.get("job") == ("=", JOB), where


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_alerts_are_documented_and_labelled(scenario):
    objects = _render(scenario=scenario)
    readme = (CHART / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[4:].strip().lower())
               for line in readme.splitlines() if line.startswith("### ")}
    for rule in _rules(objects):
        alert = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), alert
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert
        assert all(annotations[k].strip() for k in annotations), alert
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url == "helm/monitoring/README.md" and anchor == alert.lower(), annotations
        assert anchor in anchors, f"README.md has no runbook section for {alert}"
        # Event alerts (a counter that grew within a window) have no pending period.
        assert alert in ("TFServingModelLoadFailed", "TFServingContainerRestarting") or \
            re.fullmatch(r"(\d+(ms|s|m|h))+", rule["for"]), alert


def test_alert_expressions_use_the_metrics_they_are_about():
    rules = {r["alert"]: analyse(r["expr"]) for r in _rules(_render())}

    def names(alert):
        return {s.name for s in rules[alert].selectors}

    def matchers(alert, name):
        return [s.matchers for s in rules[alert].selectors if s.name == name]

    assert names("TFServingHighErrorRatio") == {
        ":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_count"}
    for failed in matchers("TFServingHighErrorRatio", ":tensorflow:serving:request_count"):
        assert failed["status"] == ("!=", "OK")
        assert failed["model_name"] == ("=", "social_network_ads")
    # Successful model API calls only: status and metadata GETs carry API="".
    for succeeded in matchers("TFServingHighErrorRatio",
                              ":tensorflow:serving:request_latency_count"):
        assert succeeded["API"] == ("!=", "")
    assert names("TFServingHighP99Latency") == {":tensorflow:serving:request_latency_bucket"}
    assert matchers("TFServingHighP99Latency", ":tensorflow:serving:request_latency_bucket")[0][
        "API"] == ("!=", "")
    assert "histogram_quantile" in rules["TFServingHighP99Latency"].functions
    assert names("TFServingModelLoadFailed") == {":tensorflow:cc:saved_model:load_attempt_count"}
    assert "increase" in rules["TFServingModelLoadFailed"].functions
    assert names("TFServingHighBatchQueueingLatency") == {
        ":tensorflow:serving:batching_session:queuing_latency_bucket"}
    assert names("TFServingNoAvailableModel") == {"kube_pod_container_status_ready"}
    assert names("TFServingPodNotReady") == {"kube_pod_container_status_ready"}
    assert names("TFServingContainerRestarting") == {"kube_pod_container_status_restarts_total"}


def test_model_path_regex_matches_tf_serving_version_directories():
    rule = next(r for r in _rules(_render()) if r["alert"] == "TFServingModelLoadFailed")
    selector = next(s for s in analyse(rule["expr"]).selectors
                    if s.name.endswith("load_attempt_count"))
    op, pattern = selector.matchers["model_path"]
    assert op == "=~"
    # Prometheus anchors regex matchers; model_path is <base path>/<version> (loader.cc export_dir).
    for path in ("/models/social_network_ads/1700000000",
                 "gs://bucket/serving/social_network_ads/3/"):
        assert re.fullmatch(pattern, path), path
    for path in ("/models/social_network_ads", "/models/other_model/1",
                 "/models/social_network_ads_v2/1", "/models/social_network_ads/1/variables"):
        assert not re.fullmatch(pattern, path), path


def test_thresholds_and_windows_come_from_values():
    values = {"rules": {"rateWindow": "10m", "interval": "30s",
                        "errorRatio": {"threshold": 0.2, "for": "15m", "severity": "warning"},
                        "p99Latency": {"thresholdSeconds": 1.5},
                        "batchQueueingLatency": {"thresholdSeconds": 0.25}},
              "serving": {"modelName": "churn"}}
    objects = _render(values)
    rule = {r["alert"]: r for r in _rules(objects)}
    group = _one(objects, "PrometheusRule")["spec"]["groups"][0]
    assert group["interval"] == "30s"
    assert rule["TFServingHighErrorRatio"]["expr"].rstrip().endswith("> 0.2")
    assert rule["TFServingHighErrorRatio"]["for"] == "15m"
    assert rule["TFServingHighErrorRatio"]["labels"]["severity"] == "warning"
    assert "[10m]" in rule["TFServingHighErrorRatio"]["expr"]
    assert rule["TFServingHighP99Latency"]["expr"].rstrip().endswith("/ 1e6 > 1.5")
    assert rule["TFServingHighBatchQueueingLatency"]["expr"].rstrip().endswith("/ 1e6 > 0.25")
    assert "[15m]" in rule["TFServingModelLoadFailed"]["expr"]
    assert rule["TFServingContainerRestarting"]["expr"].rstrip().endswith(">= 2")
    for r in rule.values():
        for selector in analyse(r["expr"]).selectors:
            if "model_name" in selector.matchers:
                assert selector.matchers["model_name"] == ("=", "churn")
            if "model_path" in selector.matchers:
                assert re.fullmatch(selector.matchers["model_path"][1], "/models/churn/1")


# --- scrape objects -----------------------------------------------------------------------------

def _tf_serving_objects() -> list[dict]:
    return render(TF_SERVING_CHART, [TF_SERVING_CHART / "ci" / "kind-values.yaml"],
                  namespace="tfx-serving", release="tf-serving")


def test_servicemonitor_selects_the_tf_serving_service():
    monitor = _one(_render(scenario="kind"), "ServiceMonitor")
    serving = _tf_serving_objects()
    service = _one(serving, "Service")
    spec = monitor["spec"]
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert spec["namespaceSelector"] == {"matchNames": ["tfx-serving"]}
    assert service["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    tf_values = yaml.safe_load((TF_SERVING_CHART / "values.yaml").read_text())
    assert endpoint["path"] == tf_values["monitoring"]["path"] == "/monitoring/prometheus/metrics"
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": JOB}]


def test_tf_serving_metrics_port_is_the_rest_port():
    # The metrics share TF Serving's REST port: the Service port "http" must lead to it.
    service = _one(_tf_serving_objects(), "Service")
    deployment = _one(_tf_serving_objects(), "Deployment")
    container_ports = {p["name"]: p["containerPort"]
                       for c in deployment["spec"]["template"]["spec"]["containers"]
                       for p in c.get("ports") or []}
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert container_ports[http["targetPort"]] == 8501


def test_operator_objects_carry_the_label_kube_prometheus_stack_selects():
    # kube-prometheus-stack selects ServiceMonitors, PodMonitors and PrometheusRules labelled
    # release=<its release> (prometheus.yaml, *SelectorNilUsesHelmValues: true); it is a
    # dependency, so its release is ours.
    objects = _render(scenario="kind")
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert _one(objects, kind)["metadata"]["labels"]["release"] == RELEASE, kind
    external = _render({"prometheusOperator": {"selectorLabels": {"prometheus": "main"}}})
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        labels = _one(external, kind)["metadata"]["labels"]
        assert labels["prometheus"] == "main" and "release" not in labels, kind


KFP_API_SERVER_LABELS = {"app.kubernetes.io/name": "kfp",
                         "app.kubernetes.io/component": "api-server"}


def test_podmonitor_scrapes_the_kfp_api_server():
    monitor = _one(_render(scenario="kind"), "PodMonitor")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["kubeflow"]}
    assert spec["selector"] == {"matchLabels": KFP_API_SERVER_LABELS}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["relabelings"][0]["replacement"] == KFP_JOB
    # The API server serves /metrics on its REST port, 8888 (backend/src/apiserver/main.go).
    kfp = render(KFP_CHART, [KFP_CHART / "ci" / "kind-values.yaml"], namespace="kubeflow",
                 release="kfp")
    wanted = spec["selector"]["matchLabels"].items()
    selected = [o for o in kfp if o["kind"] == "Deployment"
                and wanted <= o["spec"]["template"]["metadata"]["labels"].items()]
    assert len(selected) == 1, [o["metadata"]["name"] for o in selected]
    ports = {p["name"]: p["containerPort"]
             for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert endpoint["path"] == "/metrics"
    assert ports[endpoint["port"]] == 8888


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


# Fields of monitoring.googleapis.com/v1 (GoogleCloudPlatform/prometheus-engine,
# pkg/operator/apis/monitoring/v1/pod_types.go and rules_types.go).
_PODMONITORING_SPEC = {"selector", "endpoints", "targetLabels", "limits", "filterRunning"}
_SCRAPE_ENDPOINT = {"port", "scheme", "path", "params", "interval", "timeout", "metricRelabeling",
                    "authorization", "basicAuth", "oauth2", "tls", "proxyUrl"}
_TARGET_METADATA = {"container", "node", "pod", "top_level_controller_name",
                    "top_level_controller_type"}
_PROTECTED_RULE_LABELS = {"project_id", "location", "cluster", "namespace"}


def test_gke_uses_podmonitoring_and_rules_beside_their_targets():
    objects = _render(scenario="gke")
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}, kinds
    monitors = {o["metadata"]["namespace"]: o for o in _of_kind(objects, "PodMonitoring")}
    assert set(monitors) == {"tfx-serving", "kubeflow"}
    expected = (("tfx-serving", JOB, {"app.kubernetes.io/name": "tf-serving"}, "http"),
                ("kubeflow", KFP_JOB, KFP_API_SERVER_LABELS, "http"))
    for namespace, job, labels, port in expected:
        monitor = monitors[namespace]
        assert monitor["apiVersion"] == "monitoring.googleapis.com/v1"
        # Managed collection names the job after the PodMonitoring; the alerts select it.
        assert monitor["metadata"]["name"] == job
        spec = monitor["spec"]
        assert set(spec) <= _PODMONITORING_SPEC, set(spec) - _PODMONITORING_SPEC
        assert spec["selector"] == {"matchLabels": labels}
        assert 1 <= len(spec["endpoints"]) <= 10
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= _SCRAPE_ENDPOINT, set(endpoint) - _SCRAPE_ENDPOINT
            assert endpoint["port"] == port
            assert _seconds(endpoint["timeout"]) <= _seconds(endpoint["interval"])
        assert set(spec["targetLabels"]["metadata"]) <= _TARGET_METADATA
        assert "pod" in spec["targetLabels"]["metadata"]  # the dashboards' tables group by pod
    rules = _one(objects, "Rules")
    assert rules["apiVersion"] == "monitoring.googleapis.com/v1"
    assert rules["metadata"]["namespace"] == "tfx-serving"  # Rules only query their namespace
    for group in rules["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert ("alert" in rule) != ("record" in rule)
            # The managed rule evaluator rejects rules that set its scoping labels.
            assert not set(rule.get("labels") or {}) & _PROTECTED_RULE_LABELS, rule["alert"]


def test_gke_and_kind_alert_on_the_same_expressions():
    kind = {r["alert"]: r["expr"] for r in _rules(_render(scenario="kind"))}
    gke = {r["alert"]: r["expr"] for r in _rules(_render(scenario="gke"))}
    assert set(kind) - set(gke) == POD_STATE_ALERTS
    assert {alert: kind[alert] for alert in gke} == gke


# --- dashboards ---------------------------------------------------------------------------------

def test_dashboards_are_valid_json_with_sidecar_label():
    objects = _render(scenario="kind")
    maps = _of_kind(objects, "ConfigMap")
    assert len(maps) == 2
    for cm in maps:
        # kube-prometheus-stack's Grafana sidecar watches grafana_dashboard: "1" (its values.yaml).
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key,) = cm["data"]
        json.loads(cm["data"][key])
    dashboards = _dashboards(objects)
    assert set(dashboards) == {"tf-serving.json", "kfp-pipeline-runs.json"}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dashboard["panels"]:
            box = panel["gridPos"]
            assert box["x"] + box["w"] <= 24, (name, panel["title"])
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert panel["targets"], (name, panel["title"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_files_are_shipped_unchanged():
    dashboards = _dashboards(_render())
    for path in (CHART / "dashboards").glob("*.json"):
        assert dashboards[path.name] == json.loads(path.read_text()), path.name


@pytest.mark.parametrize("name", ["tf-serving.json", "kfp-pipeline-runs.json"])
def test_dashboard_queries_are_valid_promql_on_exported_series(name):
    dashboard = _dashboards(_render())[name]
    used = set()
    queries = list(_panel_queries(dashboard))
    assert queries
    for title, expr in queries:
        try:
            analysis = analyse(_grafana_to_promql(expr))
        except PromQLError as error:
            raise AssertionError(f"{name} panel {title!r}: {error}\n{expr}") from error
        assert analysis.type in ("vector", "scalar"), (title, analysis.type)
        used |= {s.name for s in analysis.selectors}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), *([a-zA-Z_]\w*)\)", variable["query"]["query"])
        assert match, variable["query"]
        selector, label = match.groups()
        analysis = analyse(_grafana_to_promql(selector))
        assert label in series_labels(analysis.selectors[0].name), (variable["name"], label)
    if name == "tf-serving.json":
        assert {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket",
                ":tensorflow:cc:saved_model:load_attempt_count"} <= used
    else:
        assert {"resource_manager_workflow_runs_success", "resource_manager_workflow_runs_failed",
                "run_server_create_requests"} <= used


def test_serving_dashboard_shows_qps_errors_percentiles_and_versions():
    dashboard = _dashboards(_render())["tf-serving.json"]
    exprs = " ".join(expr for _, expr in _panel_queries(dashboard))
    assert "rate(:tensorflow:serving:request_count" in exprs
    assert 'status!="OK"' in exprs
    for quantile in ("0.5", "0.9", "0.99"):
        assert (f"histogram_quantile({quantile}, sum by (model_name, le) "
                "(rate(:tensorflow:serving:request_latency_bucket") in exprs
    assert 'load_attempt_count{namespace="$namespace", status="success"' in exprs
    # Latency is of model API calls only: TF Serving labels status and metadata GETs API="".
    assert "request_latency_bucket{" in exprs
    assert all('API!=""' in expr for _, expr in _panel_queries(dashboard)
               if "request_latency_bucket" in expr)


def test_serving_dashboard_counts_model_api_calls_not_probes(promtool_test, tmp_path):
    # Prometheus evaluates the panels on what TF Serving exports under probe traffic: 5/s
    # successful readiness and status GETs (API=""), 0.1/s successful and 0.1/s failed
    # predictions. The traffic and error panels must see 0.2/s and one half, not 5.2/s and 2%.
    panels = dict(_panel_queries(_dashboards(_render())["tf-serving.json"]))
    target = 'namespace="tfx-serving", job="monitoring-tf-serving", instance="10.244.0.7:8501", ' \
             'model_name="social_network_ads"'
    series = [(f":tensorflow:serving:request_count{{{target}, status=\"OK\"}}", "0+153x40"),
              (f":tensorflow:serving:request_count{{{target}, status=\"INTERNAL\"}}", "0+3x40"),
              (f':tensorflow:serving:request_latency_count{{{target}, API="", entrypoint="REST"}}',
               "0+150x40"),
              (f':tensorflow:serving:request_latency_count{{{target}, API="Predict", '
               'entrypoint="GRPC"}', "0+3x40")]
    expected = {"Model API requests per second": 0.2, "Error ratio": 0.5}
    result = promtool_test(tmp_path, {"tests": [{
        "interval": "30s",
        "input_series": [{"series": name, "values": values} for name, values in series],
        "promql_expr_test": [
            {"expr": _grafana_to_promql(panels[title]), "eval_time": "10m",
             "exp_samples": [{"labels": "{}", "value": value}]}
            for title, value in expected.items()],
    }]})
    assert result.returncode == 0, result.stdout + result.stderr


# --- toggles ------------------------------------------------------------------------------------

def _kinds(objects: list[dict]) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


@pytest.mark.parametrize("values, gone, kept", [
    ({"serving": {"enabled": False}},
     {"ServiceMonitor", "PrometheusRule", "Pod", "ConfigMap/monitoring-dashboard-tf-serving"},
     {"PodMonitor", "ConfigMap/monitoring-dashboard-kfp-pipeline-runs"}),
    ({"kfp": {"enabled": False}},
     {"PodMonitor", "ConfigMap/monitoring-dashboard-kfp-pipeline-runs"},
     {"ServiceMonitor", "PrometheusRule", "ConfigMap/monitoring-dashboard-tf-serving"}),
    ({"rules": {"enabled": False}}, {"PrometheusRule"}, {"ServiceMonitor", "Pod"}),
    ({"dashboards": {"enabled": False}}, {"ConfigMap"}, {"ServiceMonitor"}),
    ({"tests": {"enabled": False}}, {"Pod"}, {"ServiceMonitor", "PrometheusRule"}),
    ({"backend": "gke-managed-prometheus"},
     {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Pod"}, {"PodMonitoring", "Rules"}),
    ({"backend": "gke-managed-prometheus", "tests": {"prometheusUrl": "http://frontend.gmp:9090"}},
     {"ServiceMonitor"}, {"Pod", "PodMonitoring"}),
])
def test_toggles(values, gone, kept):
    rendered = _kinds(_render(values))
    baseline = _kinds(_render())

    def present(names, item):
        return any(n == item or n.startswith(f"{item}/") for n in names)

    for item in gone:
        assert present(baseline, item) or values.get("backend"), f"{item} not in the default render"
        assert not present(rendered, item), f"{item} still rendered with {values}"
    for item in kept:
        assert present(rendered, item), f"{item} missing with {values}"


def test_kube_prometheus_stack_is_a_pinned_optional_dependency():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = chart["dependencies"]
    assert dep["name"] == "kube-prometheus-stack"
    assert re.fullmatch(r"\d+\.\d+\.\d+", dep["version"]), dep["version"]
    assert dep["repository"] == "https://prometheus-community.github.io/helm-charts"
    assert dep["condition"] == "kube-prometheus-stack.enabled"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kube-prometheus-stack"]["enabled"] is True
    sidecar = values["kube-prometheus-stack"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == (values["dashboards"]["label"],
                                                         values["dashboards"]["labelValue"])
    for name, path in SCENARIOS.items():
        # Offline CI cannot download it; each scenario says so and disables it.
        assert yaml.safe_load(path.read_text())["kube-prometheus-stack"]["enabled"] is False, name


# --- helm test ----------------------------------------------------------------------------------

def _test_pod(values: Mapping[str, Any] | None = None) -> dict:
    pods = [o for o in _render(values) if o["kind"] == "Pod"]
    assert len(pods) == 1
    return pods[0]


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_helm_test_asks_the_bundled_prometheus_for_the_rendered_alerts():
    pod = _test_pod()
    env = _env(pod)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # kube-prometheus-stack names its Service <fullname, cut to 26 characters>-prometheus.
    assert (env["PROMETHEUS_URL"]
            == "http://monitoring-kube-prometheus-prometheus.monitoring.svc:9090")
    assert set(env["EXPECTED_ALERTS"].split(",")) == ALERTS
    assert (env["SERVING_NAMESPACE"], env["SERVING_JOB"]) == ("tfx-serving", JOB)
    assert _env(_test_pod({"rules": {"enabled": False}}))["EXPECTED_ALERTS"] == ""
    overridden = _env(_test_pod({"tests": {"prometheusUrl": "http://prom.example:9090/"}}))
    assert overridden["PROMETHEUS_URL"] == "http://prom.example:9090"


class _FakePrometheus(http.server.BaseHTTPRequestHandler):
    up_value = "1"
    loaded_alerts: list[str] = []
    queries: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        from urllib.parse import parse_qs, urlparse
        url = urlparse(self.path)
        params = parse_qs(url.query)
        if url.path == "/api/v1/query":
            type(self).queries.append(params["query"][0])
            data = {"resultType": "vector",
                    "result": [{"metric": {}, "value": [0, type(self).up_value]}]}
        elif url.path == "/api/v1/rules":
            data = {"groups": [{"name": "tf-serving", "rules": [
                {"name": a, "type": "alerting"} for a in type(self).loaded_alerts]}]}
        else:
            self.send_error(404)
            return
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prometheus():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakePrometheus.queries = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("up, loaded, ok", [
    ("1", sorted(ALERTS), True),
    ("0", sorted(ALERTS), False),
    ("1", sorted(ALERTS - {"TFServingNoAvailableModel"}), False),
])
def test_helm_test_script_against_fake_prometheus(fake_prometheus, up, loaded, ok):
    pod = _test_pod()
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python3", "-c"]
    _FakePrometheus.up_value, _FakePrometheus.loaded_alerts = up, loaded
    env = {**_env(pod), "TIMEOUT_SECONDS": "0",
           "PROMETHEUS_URL": f"http://127.0.0.1:{fake_prometheus.server_port}"}
    completed = subprocess.run([sys.executable, "-c", command[2]], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=60, check=False)
    assert (completed.returncode == 0) is ok, completed.stdout + completed.stderr
    assert _FakePrometheus.queries == [f'up{{namespace="tfx-serving", job="{JOB}"}}']
    if not ok:
        assert "no target is up" in completed.stderr or "not loaded" in completed.stderr


def test_rendered_manifests_hold_no_double_braces_outside_rules_and_dashboards():
    # checkov skips any file containing "{{" as an unrendered template; the Prometheus
    # templates in alert annotations and Grafana legends are the only intended ones.
    for obj in _render(scenario="kind"):
        if obj["kind"] in ("PrometheusRule", "ConfigMap"):
            continue
        assert "{{" not in yaml.safe_dump(obj), obj["kind"]
