"""Checks beyond the schema: conflict markers, duplicate ids, unknown dependencies, cycles, unknown statuses."""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Mapping

from agentd.core.lazyre import LazyPattern
from agentd.core.model import walk
from agentd.core.record import Record, set_field
from agentd.core.workflow import Workflow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

CONFLICT_MARKER = LazyPattern(r"^(<{7}|={7}|>{7}|\|{7})(?:\s|$)", re.MULTILINE)


class Finding(Record):
    """One problem found in a queue: an error stops writes, a warning does not."""

    _fields = ("severity", "path", "message", "code", "task", "detail")

    severity: Literal["error", "warning"]
    path: str | None
    message: str
    code: str
    task: str | None = None  # the task it quarantines (see agentd.core.model.view_id); None: about the whole file
    detail: str = ""  # what tells it from another finding of the same code and task, wherever the task sits

    def __init__(
        self,
        severity: Literal["error", "warning"],
        path: str | None,
        message: str,
        code: str,
        task: str | None = None,
        detail: str = "",
    ) -> None:
        set_field(self, "severity", severity)
        set_field(self, "path", path)
        set_field(self, "message", message)
        set_field(self, "code", code)
        set_field(self, "task", task)
        set_field(self, "detail", detail)

    @property
    def text(self) -> str:
        """``$.json.path: message`` (the message alone when it has no path)."""
        return f"{self.path}: {self.message}" if self.path else self.message

    @property
    def key(self) -> tuple[str, str | None, str]:
        """What stays the same while the task moves in the file (its path and message may not)."""
        return (self.code, self.task, self.detail or (self.message if self.code not in STRUCTURAL else ""))

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


STRUCTURAL = frozenset({"duplicate", "unknown-dep", "cycle"})


def structural_phase(finding: Finding) -> int:
    """Where :func:`structural` lists a finding: duplicates first, then unknown and self dependencies (in queue
    order), then cycles."""
    if finding.code == "duplicate":
        return 0
    return 2 if finding.code == "cycle" and finding.detail == "cycle" else 1


def structural(entries: list[tuple[str, Any, str | None]], known: Container[str] = ()) -> list[Finding]:
    """Duplicate ids, unknown dependencies and cycles (they depend only on ids and dependencies): one finding per
    task it quarantines. Tasks without a string id, or whose dependencies are not a list, are skipped here (the schema
    check quarantines them). A dependency on a ``known`` id (a task outside ``entries``) is not unknown."""
    return structural_and_ids(entries, known)[0]


def structural_and_ids(
    entries: list[tuple[str, Any, str | None]], known: Container[str] = ()
) -> tuple[list[Finding], Collection[str]]:
    """:func:`structural`, and the string ids of ``entries`` (found on the way: a big queue's first read asks for
    both)."""
    findings: list[Finding] = []
    graph: dict[str, tuple[str, ...]] = {}  # each id's dependencies (its first task's)
    usable: list[tuple[str, str, tuple[str, ...]]] = []
    named = 0
    for path, task, _ in entries:
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(task_id, str):
            continue
        named += 1
        deps = task.get("dependencies")
        deps = tuple(d for d in deps if isinstance(d, str)) if deps and isinstance(deps, list) else ()
        if task_id not in graph:
            graph[task_id] = deps
        if deps:  # (a task without dependencies has none unknown)
            usable.append((path, task_id, deps))
    # Each id's paths, made only where an id repeats or a cycle is named (on a big queue: a list per task saved).
    paths = _paths(entries) if named != len(graph) else None
    if paths is not None:
        for task_id, where in paths.items():
            if len(where) > 1:
                message = f"duplicate task id {task_id!r} ({len(where)} tasks have it)"
                findings += [Finding("error", f"{path}.id", message, "duplicate", task_id) for path in where]
    for path, task_id, deps in usable:
        for position, dep in enumerate(deps):
            if dep not in graph and dep not in known:
                message = f"unknown dependency {dep!r}"
                findings.append(
                    Finding("error", f"{path}.dependencies[{position}]", message, "unknown-dep", task_id, dep)
                )
            elif dep == task_id:
                message = "a task cannot depend on itself"
                findings.append(Finding("error", f"{path}.dependencies[{position}]", message, "cycle", task_id, dep))
    # Only a task that depends on another can be in a cycle: on a big queue most depend on none, and are left out
    # (the cycles found, and their order, are the same: a task without dependencies ends a search where it is met).
    depending = {k: v if k not in v else tuple(d for d in v if d != k) for k, v in graph.items() if v}
    for members in cycles(depending):
        paths = paths if paths is not None else _paths(entries)
        inside = set(members)
        cycle = find_cycle({k: tuple(d for d in graph[k] if d in inside and d != k) for k in members}) or members
        message = "dependency cycle: " + " -> ".join(cycle)
        findings += [
            Finding("error", f"{paths[member][0]}.dependencies", message, "cycle", member, "cycle")
            for member in members
        ]
    return findings, graph.keys()


def _paths(entries: list[tuple[str, Any, str | None]]) -> dict[str, list[str]]:
    """Each string id of ``entries`` -> the paths of its tasks, in the order the ids first come."""
    paths: dict[str, list[str]] = {}
    for path, task, _ in entries:
        task_id = task.get("id") if isinstance(task, dict) else None
        if isinstance(task_id, str):
            paths.setdefault(task_id, []).append(path)
    return paths


def cycles(graph: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """Every dependency cycle's members: the strongly connected components of more than one task (Tarjan's
    algorithm, iterative; members in the graph's order). Self-dependencies are not looked for here."""
    order = {node: n for n, node in enumerate(graph)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work[-1]
            children = graph[node]
            if position < len(children):
                work[-1] = (node, position + 1)
                child = children[position]
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component, key=order.__getitem__))
    return found


def status_warnings(entries: list[tuple[str, Any, str | None]], workflow: Workflow | None) -> list[Finding]:
    """Statuses no role or rule knows (warnings: people and agents invent statuses); a status that is not a string
    is the schema's to report."""
    if workflow is None:
        return []
    known = workflow.known_statuses()
    try:  # (the common case, at the speed of a plain comprehension: every task a dict with a hashable status)
        unknown = [(path, task) for path, task, _ in entries if task["status"] not in known]
    except (TypeError, KeyError):
        unknown = [
            (path, task)
            for path, task, _ in entries
            if isinstance(task, dict) and isinstance(task.get("status"), str) and task["status"] not in known
        ]
    return [
        Finding(
            "warning",
            f"{path}.status",
            f"status {task['status']!r} is not claimed, worked in or produced by any role or rule",
            "unknown-status",
        )
        for path, task in unknown
        if isinstance(task.get("status"), str)
    ]
