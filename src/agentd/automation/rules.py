"""Rules: trigger -> condition -> task (pure: time, file changes and events are passed in).

A file rule fires once its watched paths have settled: every change restarts its ``debounce`` timer, and when the
timer runs out the rule adds one task naming the changed paths. An event rule fires on journal events of a ``topic``
(``finished``, ``question-asked``, a custom topic from ``agentd emit``) whose fields match its ``filter``. Either way a
rule keeps at most one open task (``coalesce``, the default): while its last task is not final, a new trigger is folded
into it instead of adding another.

Task ids are deterministic where the trigger is: an event rule's id comes from the event itself, so an event fires a
rule once, whichever automation process sees it and however often; a file rule's from the moment its changes settled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pathspec

from agentd.core.clock import format_timestamp
from agentd.core.duration import parse_duration
from agentd.core.model import valid_task_id

# Never watched: agentd's own files (its writes would trigger it forever) and git's.
ALWAYS_IGNORED = (".git/**", ".agentd/**", ".leases/**", "**/*.agentd-tmp", "**/*.lock")
DEFAULT_IGNORE = ("**/__pycache__/**", "**/*.pyc", "**/*.swp", "**/*~", "**/.#*")
KEYS = ("name", "on", "paths", "ignore", "debounce", "topic", "filter", "coalesce", "task")
SHOWN_PATHS = 5


class RuleInvalid(ValueError):
    """A ``[[rules]]`` table that cannot be used: ``rule 'NAME': key: reason``."""

    def __init__(self, name: str | None, key: str, reason: str) -> None:
        self.name = name
        self.key = key
        self.reason = reason
        where = f"rule {name!r}" if name else "a rule"
        super().__init__(f"{where}: {key}: {reason}")


def _strings(name: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise RuleInvalid(name, key, "must be a list of glob patterns (strings)")
    return tuple(value)


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` table of agentd.toml."""

    name: str
    on: Literal["file", "event"]
    task: Mapping[str, Any]
    paths: tuple[str, ...] = ()
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    debounce: float = 5.0
    topic: str | None = None
    filter: Mapping[str, Any] = field(default_factory=dict)
    coalesce: bool = True

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> Rule:
        """Build and check a rule from its table; RuleInvalid names the key that is wrong."""
        name = spec.get("name")
        shown = name if isinstance(name, str) else None
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise RuleInvalid(shown, unknown[0], f"unknown key (known: {', '.join(KEYS)})")
        if not isinstance(name, str) or not valid_task_id(name):
            raise RuleInvalid(shown, "name", "must be a name of letters, digits, '.', '_' or '-' (it starts ids)")
        on = spec.get("on")
        if on not in ("file", "event"):
            raise RuleInvalid(name, "on", "must be 'file' or 'event'")
        task = spec.get("task")
        if not isinstance(task, Mapping) or not isinstance(task.get("title"), str):
            raise RuleInvalid(name, "task", "must be a table with at least a title")
        if "id" in task:
            raise RuleInvalid(name, "task.id", "is made from the rule's name and its trigger; leave it out")
        coalesce = spec.get("coalesce", True)
        if not isinstance(coalesce, bool):
            raise RuleInvalid(name, "coalesce", "must be true or false")
        if on == "file":
            if "topic" in spec or "filter" in spec:
                raise RuleInvalid(name, "topic" if "topic" in spec else "filter", "is for on = 'event' rules")
            paths = _strings(name, "paths", spec.get("paths"))
            if not paths:
                raise RuleInvalid(name, "paths", "must list at least one glob pattern to watch")
            ignore = _strings(name, "ignore", spec.get("ignore", list(DEFAULT_IGNORE)))
            for key, patterns in (("paths", paths), ("ignore", ignore)):
                try:
                    pathspec.PathSpec.from_lines("gitignore", patterns)
                except (ValueError, TypeError) as exc:
                    raise RuleInvalid(name, key, f"not a glob pattern ({exc})") from None
            try:
                debounce = parse_duration(spec.get("debounce", 5))
            except ValueError as exc:
                raise RuleInvalid(name, "debounce", str(exc)) from None
            return cls(name, "file", dict(task), paths, ignore, debounce, coalesce=coalesce)
        for key in ("paths", "ignore", "debounce"):
            if key in spec:
                raise RuleInvalid(name, key, "is for on = 'file' rules")
        topic = spec.get("topic")
        if not isinstance(topic, str) or not topic:
            raise RuleInvalid(name, "topic", "must name the event topic to react to (e.g. 'finished')")
        where = spec.get("filter", {})
        if not isinstance(where, Mapping):
            raise RuleInvalid(name, "filter", "must be a table of event fields and the values they must have")
        return cls(name, "event", dict(task), topic=topic, filter=dict(where), coalesce=coalesce)

    # -- conditions ----------------------------------------------------------------------------------------------------

    def matches_path(self, path: str) -> bool:
        """Whether a changed path (relative to the project root, ``/``-separated) concerns this rule."""
        if self.on != "file" or _spec(ALWAYS_IGNORED).match_file(path) or _spec(self.ignore).match_file(path):
            return False
        return _spec(self.paths).match_file(path)

    def matches_event(self, event: Mapping[str, Any]) -> bool:
        """Whether a journal event (its JSON fields) triggers this rule: its topic, then every filter field."""
        if self.on != "event" or event.get("event") != self.topic:
            return False
        return all(event.get(key) == value for key, value in self.filter.items())

    # -- the task a firing adds ----------------------------------------------------------------------------------------

    def task_id(self, now: datetime, event: Mapping[str, Any] | None = None) -> str:
        """``<name>-<when>``, with a short digest of the event for event rules (so one event gives one id)."""
        when = now.strftime("%Y%m%dT%H%M%S")
        if event is None:
            return f"{self.name}-{when}"
        digest = hashlib.blake2b(_canonical(event), digest_size=4).hexdigest()
        return f"{self.name}-{when}-{digest}"

    def make_task(
        self, now: datetime, *, changed: Sequence[str] = (), event: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The task a firing adds: the template with ``{changed}``, ``{event.FIELD}`` and ``{now}`` filled."""
        stamp = now
        if event is not None and isinstance(event.get("time"), str):
            stamp = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        values = {"now": format_timestamp(now), "changed": shorten(changed)}
        for key, value in (event or {}).items():
            values[f"event.{key}"] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        task: dict[str, Any] = {"id": self.task_id(stamp, event)}
        for key, value in self.task.items():
            task[key] = _fill(value, values)
        task.setdefault("status", "ready")
        task.setdefault("dependencies", [])
        task["triggered"] = {"by": self.name, "at": format_timestamp(now)}
        if changed:
            task["triggered"]["changed"] = list(changed[:100])
        return task

    def owns(self, task_id: str) -> bool:
        """Whether ``task_id`` was made by this rule."""
        rest = task_id[len(self.name) + 1 :] if task_id.startswith(self.name + "-") else ""
        return len(rest) >= 15 and rest[:8].isdigit() and rest[8] == "T" and rest[9:15].isdigit()


def _canonical(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, ensure_ascii=True, default=str).encode("ascii")


_SPECS: dict[tuple[str, ...], pathspec.PathSpec[Any]] = {}


def _spec(patterns: tuple[str, ...]) -> pathspec.PathSpec[Any]:
    made = _SPECS.get(patterns)
    if made is None:
        made = _SPECS[patterns] = pathspec.PathSpec.from_lines("gitignore", patterns)
    return made


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for key, text in values.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    if isinstance(value, Mapping):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


def shorten(paths: Sequence[str], limit: int = SHOWN_PATHS) -> str:
    """Changed paths for a title: the first few, sorted, and how many more."""
    unique = sorted(set(paths))
    shown = ", ".join(unique[:limit])
    return shown + (f" and {len(unique) - limit} more" if len(unique) > limit else "")


def open_task(rule: Rule, statuses: Iterable[tuple[str, str]], is_final: Any) -> str | None:
    """With ``coalesce``: the id of this rule's task that is not final yet (a new trigger is folded into it)."""
    if not rule.coalesce:
        return None
    for task_id, status in statuses:
        if rule.owns(task_id) and not is_final(status):
            return task_id
    return None


class Debouncer:
    """Changes to one file rule's paths, until they settle (the time is passed in)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.changed: set[str] = set()
        self.last: float | None = None  # monotonic time of the latest change

    def add(self, paths: Iterable[str], now: float) -> bool:
        """Record changed paths; True when any concerns the rule (its timer restarts)."""
        mine = [path for path in paths if self.rule.matches_path(path)]
        if mine:
            self.changed.update(mine)
            self.last = now
        return bool(mine)

    def deadline(self) -> float | None:
        """When the changes will have settled (None: nothing pending)."""
        return None if self.last is None else self.last + self.rule.debounce

    def due(self, now: float) -> list[str] | None:
        """The changed paths once they have settled (and forget them), else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        changed = sorted(self.changed)
        self.changed.clear()
        self.last = None
        return changed
