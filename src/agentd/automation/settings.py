"""The ``[[schedule]]``, ``[[rules]]`` and ``[[hooks]]`` tables of agentd.toml, checked (pure: no I/O).

Each table is checked by its own core (:mod:`.schedule`, :mod:`.rules`, :mod:`.hooks`); a problem becomes one
:class:`~agentd.errors.ConfigInvalid` naming the file and the key path (``$.schedule[0].cron``). The task a table
adds is checked too: its status must be one some role knows, and a sample of it must be a valid task.

Hooks are checked here with every ``${NAME}`` taken as set: only the automation process expands them, from its own
environment (a role daemon that lacks a webhook's secret must still start).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentd import schema
from agentd.automation.hooks import Hook, HookInvalid
from agentd.automation.rules import Rule, RuleInvalid
from agentd.automation.schedule import Schedule, ScheduleInvalid
from agentd.core.workflow import Workflow
from agentd.errors import ConfigInvalid

_SAMPLE_TIME = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Automation:
    """What ``agentd automation`` runs: schedules, rules, and hook tables (expanded only where they run)."""

    schedules: tuple[Schedule, ...] = ()
    rules: tuple[Rule, ...] = ()
    hooks: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return bool(self.schedules or self.rules or self.hooks)

    def names(self) -> list[str]:
        """Every schedule, rule and hook name (what ``agentd automation enable/disable NAME`` takes)."""
        return [s.name for s in self.schedules] + [r.name for r in self.rules] + hook_names(self.hooks)

    def expand_hooks(self, environ: Mapping[str, str]) -> list[Hook]:
        """The hooks with their ``${NAME}`` settings expanded from ``environ``; HookInvalid when one is unset."""
        return [Hook.from_config(spec, position, environ) for position, spec in enumerate(self.hooks, 1)]


def hook_names(hooks: tuple[Mapping[str, Any], ...]) -> list[str]:
    return [str(spec["name"]) if isinstance(spec.get("name"), str) else f"#{n}" for n, spec in enumerate(hooks, 1)]


class _Anything(Mapping[str, str]):
    """An environment where every variable is set (to check hook tables without their secrets)."""

    def __getitem__(self, key: str) -> str:
        return "set"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _task_problem(task: dict[str, Any], workflow: Workflow) -> tuple[str, str] | None:
    """(key path inside the template, reason) when the task a firing adds could not go into the queue."""
    status = task.get("status")
    if not isinstance(status, str) or status not in workflow.known_statuses():
        known = ", ".join(sorted(workflow.known_statuses()))
        return ".status", f"{status!r} is not a status any role claims, works in or moves to (known: {known})"
    problem = schema.task_error(task)
    if problem is not None:
        return problem[0].removeprefix("$"), problem[1]
    return None


def parse(data: Mapping[str, Any], path: Path, workflow: Workflow) -> Automation:
    """The automation tables of agentd.toml (already schema-checked); ConfigInvalid names the first bad key."""
    schedules: list[Schedule] = []
    seen: dict[str, str] = {}

    def unique(name: str, where: str) -> None:
        if name in seen:
            raise ConfigInvalid(path, f"{where}.name", f"{name!r} is already the name of {seen[name]}")
        seen[name] = where

    for n, spec in enumerate(data.get("schedule", [])):
        where = f"$.schedule[{n}]"
        try:
            made = Schedule.from_config(spec)
        except ScheduleInvalid as exc:
            raise ConfigInvalid(path, f"{where}.{exc.key}", exc.reason) from None
        unique(made.name, where)
        problem = _task_problem(made.make_task(_SAMPLE_TIME, _SAMPLE_TIME), workflow)
        if problem is not None:
            raise ConfigInvalid(path, f"{where}.task{problem[0]}", problem[1])
        schedules.append(made)
    rules: list[Rule] = []
    for n, spec in enumerate(data.get("rules", [])):
        where = f"$.rules[{n}]"
        try:
            rule = Rule.from_config(spec)
        except RuleInvalid as exc:
            raise ConfigInvalid(path, f"{where}.{exc.key}", exc.reason) from None
        unique(rule.name, where)
        sample = {"event": rule.topic or "finished", "time": "2026-01-01T09:00:00Z"}
        made_task = rule.make_task(_SAMPLE_TIME, changed=["src/a.py"], event=sample if rule.on == "event" else None)
        problem = _task_problem(made_task, workflow)
        if problem is not None:
            raise ConfigInvalid(path, f"{where}.task{problem[0]}", problem[1])
        rules.append(rule)
    hooks = tuple(dict(spec) for spec in data.get("hooks", []))
    for n, spec in enumerate(hooks):
        try:
            hook = Hook.from_config(spec, n + 1, _Anything())
        except HookInvalid as exc:
            raise ConfigInvalid(path, f"$.hooks[{n}].{exc.key}", exc.reason) from None
        unique(hook.name, f"$.hooks[{n}]")
    return Automation(tuple(schedules), tuple(rules), hooks)
