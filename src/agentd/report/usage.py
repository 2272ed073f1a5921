"""What the runs cost: read from the journal's ``finished`` events (their ``usage``), summed by role, task or day.

Budgets (:mod:`agentd.core.control`) and ``agentd usage`` / ``agentd status`` count the same records, so they agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime

from agentd.core.record import Record, set_field
from agentd.store.base import Event, Filter
from agentd.store.file.journal import parse_line, read_events

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from agentd.store.base import Store

GROUPS = ("role", "task", "day")


class Run(Record):
    """One recorded run's usage."""

    _fields = ("ended", "role", "task", "usage", "token")

    ended: datetime
    role: str
    task: str
    usage: Mapping[str, float]
    token: object = None  # with the task, what makes a run unique (its finished event is written once)

    def __init__(self, ended: datetime, role: str, task: str, usage: Mapping[str, float], token: object = None) -> None:
        set_field(self, "ended", ended)
        set_field(self, "role", role)
        set_field(self, "task", task)
        set_field(self, "usage", usage)
        set_field(self, "token", token)

    @property
    def cost(self) -> float:
        return float(self.usage.get("cost_usd", 0.0))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def run_of(event: Event) -> Run | None:
    """The usage a ``finished`` event recorded (None when it recorded none)."""
    usage = event.data.get("usage")
    if event.name != "finished" or not isinstance(usage, dict):
        return None
    counts = {str(key): float(value) for key, value in usage.items() if _number(value)}
    if not counts:
        return None
    return Run(event.time, event.role or "?", event.task or "?", counts, event.data.get("token"))


def runs(source: str | Path | Store, where: Filter | None = None) -> list[Run]:
    """Every run with usage in the journal (a store's, or the file journal at a path, with its rotated files) that
    passes ``where``."""
    where = where or Filter()
    finished = Filter(where.task, where.role, where.since, frozenset({"finished"}))
    found = []
    events = read_events(source, finished) if isinstance(source, str | os.PathLike) else source.events(finished)
    for event in events:
        run = run_of(event)
        if run is not None:
            found.append(run)
    return found


def records(journal: Path, where: Filter | None = None) -> list[tuple[datetime, str, float]]:
    """(ended, role, cost_usd) of each costed run: what :func:`agentd.core.control.budget_pause` counts."""
    return [(run.ended, run.role, run.cost) for run in runs(journal, where) if "cost_usd" in run.usage]


class Tally:
    """The costed runs since a time, kept up to date by reading only what was appended to the live journal since the
    last look (the whole journal again after a rotation). A daemon checks its budget after each costed run: reading a
    day's journal each time would cost seconds on a busy project."""

    def __init__(
        self,
        journal: str | Path | None,  # None: a store with no journal file (every look reads the store's events since)
        store: Store | None = None,
        found: dict[tuple[str, str], tuple[datetime, str, float]] | None = None,
    ) -> None:
        self.journal = journal
        self.store = store
        self.found: dict[tuple[str, str], tuple[datetime, str, float]] = {} if found is None else found
        self._file: tuple[int, int] | None = None
        self._offset = 0
        self._since: datetime | None = None

    @classmethod
    def of(cls, store: Store) -> Tally:
        """The tally of a store's journal: read as it grows when the store keeps it in a file."""
        path = getattr(store, "journal_file", None)  # (the file store's, a string: no pathlib imported)
        return cls(path if isinstance(path, str) else None, store)

    def update(self, since: datetime) -> list[tuple[datetime, str, float]]:
        """(ended, role, cost_usd) of each costed run that ended at or after ``since``."""
        if self.journal is None:
            assert self.store is not None
            self.found, self._since = {}, None
            self._add(runs(self.store, Filter(since=since)))
            self._since = since
            return list(self.found.values())
        try:
            info = os.stat(self.journal)
        except FileNotFoundError:
            self.found, self._file, self._offset = {}, None, 0
            return []
        identity = (info.st_dev, info.st_ino)
        if identity != self._file or info.st_size < self._offset:  # first look, or rotated: read it all
            self._file, self._offset = identity, info.st_size
            self.found = {}
            self._add(runs(self.journal, Filter(since=since)))
        with open(self.journal, "rb") as handle:  # appended since (lines the full read saw again are deduplicated)
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a torn last line is read next time
        self._offset += end
        self._add(run for line in data[:end].splitlines() if (event := parse_line(line)) and (run := run_of(event)))
        if since != self._since:  # a new day (or a first look): forget what ended before it
            self._since = since
            self.found = {key: record for key, record in self.found.items() if record[0] >= since}
        return list(self.found.values())

    def _add(self, found: Iterable[Run]) -> None:
        for run in found:
            if "cost_usd" in run.usage and (self._since is None or run.ended >= self._since):
                self.found[(run.task, str(run.token))] = (run.ended, run.role, run.cost)


class Line:
    """A sum of usage for one key (a role, a task or a day)."""

    def __init__(self, key: str, runs: int = 0, usage: dict[str, float] | None = None) -> None:
        self.key = key
        self.runs = runs
        self.usage: dict[str, float] = {} if usage is None else usage

    def __repr__(self) -> str:
        return f"Line(key={self.key!r}, runs={self.runs!r}, usage={self.usage!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Line):
            return NotImplemented
        return (self.key, self.runs, self.usage) == (other.key, other.runs, other.usage)

    __hash__ = None  # type: ignore[assignment]  # (mutable, as the dataclass it was)

    def add(self, run: Run) -> None:
        self.runs += 1
        for name, value in run.usage.items():
            self.usage[name] = self.usage.get(name, 0.0) + value

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "runs": self.runs, **{name: round(v, 6) for name, v in sorted(self.usage.items())}}


def summarise(found: Iterable[Run], by: str, tz: str = "UTC") -> list[Line]:
    """Usage summed by ``by`` (role, task or day in ``tz``), keys in order."""
    if by not in GROUPS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}")
    from zoneinfo import ZoneInfo  # (not at import: `agentd status` needs none)

    zone = ZoneInfo(tz)
    lines: dict[str, Line] = {}
    for run in found:
        key = {"role": run.role, "task": run.task}.get(by) or run.ended.astimezone(zone).date().isoformat()
        lines.setdefault(key, Line(key)).add(run)
    return [lines[key] for key in sorted(lines)]
