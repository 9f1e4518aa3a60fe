"""The Grafana dashboard asks only for metrics the code registers (deploy/grafana)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

import agent.metrics
import apiserver.metrics
import syncer.metrics  # noqa: F401  (each module registers its metrics on import)

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "kubepedia-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
            "summary": ("_count", "_sum", "")}
PANELS = ("ingest rate", "commit latency", "sync lag", "relists", "api latency", "5xx", "open watches",
          "db pool", "change log retained")


def _registered() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        definition = node.get("definition")
        return found + ([definition] if isinstance(definition, str) else []) + \
            [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in _expressions(value)]
    return []


def test_every_expression_names_a_registered_metric() -> None:
    assert agent.metrics.RELISTS and apiserver.metrics.OPEN_WATCHES
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard)
    registered = _registered()
    used = {name for expr in expressions for name in re.findall(r"\bkubepedia_[a-z0-9_]+", expr)}
    assert used, "no expressions found"
    assert used <= registered, sorted(used - registered)
    for expr in expressions:  # every one asks for something of ours
        assert "kubepedia_" in expr, expr


def test_the_panels_an_operator_looks_for_are_there() -> None:
    titles = [p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"]]
    for wanted in PANELS:
        assert any(wanted in title for title in titles), (wanted, titles)
