"""The Grafana dashboard and the alert rules only use metrics and labels the code defines, and
every expression parses as PromQL (promql-parser, the Rust parser of GreptimeDB, if installed;
otherwise a selector scan)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from monitoring.metrics import METRICS, exposed_series, series_labels

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint"}   # added by Prometheus
FUNCTIONS_AND_KEYWORDS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "avg", "time", "by",
                          "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset",
                          "le", "stage", "status", "direction", "op"}


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    return exprs


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _for_prometheus(expr: str) -> str:
    """Grafana variables replaced the way Grafana does before sending the query."""
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "30s")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names it matches on or groups by) for every selector in ``expr``."""
    try:
        import promql_parser
    except ImportError:                    # fallback: a scan of metric names and {label=...} matchers
        found = []
        for match in re.finditer(r"\b(talkfarm_[a-z_]+)(\{([^}]*)\})?", expr):
            labels = set(re.findall(r"(\w+)\s*[=!~]", match.group(3) or ""))
            found.append((match.group(1), labels))
        return found

    found: list[tuple[str, set[str]]] = []

    def walk(node, grouping: set[str]) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            labels = {m.name for m in node.matchers.matchers} | {m.name for ms in node.matchers.or_matchers for m in ms}
            found.append((node.name, labels | grouping))
            return
        if kind == "MatrixSelector":
            walk(node.vector_selector, grouping)
            return
        if kind == "AggregateExpr":
            modifier = node.modifier
            names = set(getattr(modifier, "labels", None) or []) if modifier is not None else set()
            walk(node.expr, grouping | names)
            if node.param is not None:
                walk(node.param, grouping)
            return
        for attr in ("expr", "lhs", "rhs"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child, grouping)
        for arg in getattr(node, "args", None) or []:
            walk(arg, grouping)

    walk(promql_parser.parse(expr), set())
    return found


ALL_EXPRS = [(f"dashboard: {title}", expr) for title, expr in _dashboard_exprs()] + \
            [(f"alert: {rule['alert']}", rule["expr"]) for rule in _alert_rules()]


@pytest.mark.parametrize("where,expr", ALL_EXPRS, ids=[where for where, _ in ALL_EXPRS])
def test_queries_name_only_defined_metrics_and_labels(where, expr):
    found = selectors(_for_prometheus(expr))
    assert found, f"{where}: no metric selector in {expr!r}"
    allowed = series_labels()
    for name, labels in found:
        assert name in exposed_series(), f"{where}: {name} is not a metric talkfarm defines"
        unknown = labels - allowed[name] - TARGET_LABELS
        if name.endswith("_bucket"):
            unknown -= {"le"}
        assert not unknown, f"{where}: {name} has no label(s) {unknown}"


def test_dashboard_covers_the_required_views():
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert all(target["refId"] and target["expr"] for target in panel["targets"])
    text = json.dumps(dashboard).lower()
    for view in ("throughput", "latency", "failure", "queue depth", "gpu pool busy"):
        assert view in text, view
    used = {name for _, expr in _dashboard_exprs() for name, _ in selectors(_for_prometheus(expr))}
    defined = {metric.name for metric in METRICS}
    missing = {m for m in defined if not any(series == m or series.startswith(m + "_") for series in used)}
    assert not missing, f"metrics on no dashboard panel: {missing}"


def test_alert_rules_parse_and_are_complete():
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    assert set(doc) == {"groups"}
    names = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert re.fullmatch(r"(\d+[smhd])+", rule["for"])
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            names.add(rule["alert"])
    assert {"TalkfarmJobStalled", "TalkfarmFailureRatioHigh", "TalkfarmDeadLettersGrowing",
            "TalkfarmStagePoolSaturated"} <= names


def test_promql_parser_rejects_garbage():
    promql_parser = pytest.importorskip("promql_parser")
    with pytest.raises(Exception):
        promql_parser.parse("sum by (stage (rate(talkfarm_renders_total[5m])")
