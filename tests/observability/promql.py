"""The metric names a PromQL expression reads, for the gate that every name the rules and the
dashboard use is one the services export (or a recording rule records).

A small reader rather than a full parser: string literals, label matchers, range and subquery
brackets, grouping clauses (`by (...)`, `on (...)`, ...) and `offset` durations are removed;
every identifier left that is not followed by `(` (a function or an aggregation) and is not a
keyword is a metric name. `{__name__="..."}` selectors count too. Grafana's `$variables` are
removed first. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right",
     "offset", "inf", "nan", "atan2"}
)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects."""
    names = set(NAME_MATCHER.findall(expr))
    text = re.sub(r"\$\{?\w+\}?", "1", expr)
    text = re.sub(r"#[^\n]*", " ", STRING.sub('""', text))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+-?[\w.]+", " ", text)
    for match in IDENTIFIER.finditer(text):
        name = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def dashboard_exprs(path: Path) -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every query of every panel of a Grafana dashboard,
    rows' nested panels included."""

    def panels(items: list[dict[str, object]]) -> Iterator[dict[str, object]]:
        for panel in items:
            yield panel
            nested = panel.get("panels")
            if isinstance(nested, list):
                yield from panels(nested)

    dashboard = json.loads(path.read_text())
    for panel in panels(dashboard["panels"]):
        targets = panel.get("targets")
        if not isinstance(targets, list):
            continue
        for target in targets:
            if isinstance(target, dict) and isinstance(target.get("expr"), str):
                yield str(panel.get("title", "?")), str(target["expr"])
