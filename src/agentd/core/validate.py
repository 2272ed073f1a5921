"""Checks beyond the schema: conflict markers, duplicate ids, unknown dependencies, cycles, unknown statuses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agentd.core.model import walk
from agentd.core.workflow import Workflow

CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7}|\|{7})(?:\s|$)", re.MULTILINE)


@dataclass(frozen=True)
class Finding:
    """One problem found in a queue: an error stops writes, a warning does not."""

    severity: Literal["error", "warning"]
    path: str | None
    message: str
    code: str

    def line(self, source: str) -> str:
        """``FILE: $.json.path: message`` on one line."""
        where = f"{source}: {self.path}" if self.path else source
        return f"{where}: {self.message}"


def conflict_markers(text: str) -> list[Finding]:
    """Unresolved git conflict markers, each naming its line."""
    if "<<<<<<<" not in text and "=======" not in text and ">>>>>>>" not in text and "|||||||" not in text:
        return []  # the common case, at C speed: no regex over a large file
    found = []
    for match in CONFLICT_MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append(
            Finding("error", None, f"line {line}: unresolved git conflict marker {match.group(1)!r}", "conflict-marker")
        )
    return found


def find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """One dependency cycle as a closed list of ids (``[a, b, a]``), or None. Iterative, so deep chains are fine."""
    colour: dict[str, int] = {}  # 0/absent white, 1 grey (on the stack), 2 black
    for start in graph:
        if colour.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        colour[start] = 1
        while stack:
            node, position = stack[-1]
            children = graph.get(node, ())
            if position < len(children):
                stack[-1] = (node, position + 1)
                child = children[position]
                if child not in graph:
                    continue
                state = colour.get(child, 0)
                if state == 1:
                    ids = [entry for entry, _ in stack]
                    return [*ids[ids.index(child) :], child]
                if state == 0:
                    colour[child] = 1
                    stack.append((child, 0))
            else:
                colour[node] = 2
                stack.pop()
    return None


def check(data: Mapping[str, Any], workflow: Workflow | None = None) -> list[Finding]:
    """Semantic findings for a schema-valid queue document."""
    entries = list(walk(data.get("tasks", [])))
    return structural(entries) + status_warnings(entries, workflow)


def structural(entries: list[tuple[str, Any, str | None]]) -> list[Finding]:
    """Duplicate ids, unknown dependencies and cycles (they depend only on ids and dependencies)."""
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    graph: dict[str, tuple[str, ...]] = {}
    for path, task, _ in entries:
        task_id = task["id"]
        if task_id in seen:
            findings.append(
                Finding("error", f"{path}.id", f"duplicate task id {task_id!r} (first at {seen[task_id]})", "duplicate")
            )
        else:
            seen[task_id] = path
        graph[task_id] = tuple(task.get("dependencies") or ())
    for path, task, _ in entries:
        for position, dep in enumerate(task.get("dependencies") or ()):
            if dep not in seen:
                findings.append(
                    Finding("error", f"{path}.dependencies[{position}]", f"unknown dependency {dep!r}", "unknown-dep")
                )
            elif dep == task["id"]:
                findings.append(
                    Finding("error", f"{path}.dependencies[{position}]", "a task cannot depend on itself", "cycle")
                )
    cycle = find_cycle({k: tuple(d for d in v if d != k) for k, v in graph.items()})
    if cycle:
        findings.append(
            Finding("error", f"{seen[cycle[0]]}.dependencies", "dependency cycle: " + " -> ".join(cycle), "cycle")
        )
    return findings


def status_warnings(entries: list[tuple[str, Any, str | None]], workflow: Workflow | None) -> list[Finding]:
    """Statuses no role or rule knows (warnings: people and agents invent statuses)."""
    if workflow is None:
        return []
    known = workflow.known_statuses()
    return [
        Finding(
            "warning",
            f"{path}.status",
            f"status {task['status']!r} is not claimed, worked in or produced by any role or rule",
            "unknown-status",
        )
        for path, task, _ in entries
        if task["status"] not in known
    ]
