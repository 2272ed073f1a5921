"""Schedules: which firings are due now, and the task each adds (pure: the time is passed in).

A schedule fires on a cron expression (in its time zone, parsed by cronsim, daylight-saving changes included) or
every fixed period (anchored to the Unix epoch, so every process computes the same times). Each firing adds one task
whose id is made from the schedule's name and the scheduled local time (``daily-audit-20261202T0900``), so a firing
can never add a task twice, whoever fires it and however often it is retried: the id is already in the queue.

After downtime, ``catch_up`` decides what happens to the firings that were missed: ``none`` fires none of them (only
a firing that is on time, within ``misfire_grace``), ``one`` (the default) fires the latest, ``all`` fires each.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from agentd.core.clock import format_timestamp
from agentd.core.duration import parse_duration
from agentd.core.model import valid_task_id

MAX_CATCH_UP = 1000  # firings at most in one look with catch_up = "all" (the rest are reported, not fired)
KEYS = ("name", "cron", "every", "tz", "catch_up", "skip_if_open", "misfire_grace", "task")


class CatchUp(enum.StrEnum):
    """What to do with firings missed while nothing ran."""

    NONE = "none"
    ONE = "one"
    ALL = "all"


class ScheduleInvalid(ValueError):
    """A ``[[schedule]]`` table that cannot be used: ``key: reason``."""

    def __init__(self, name: str | None, key: str, reason: str) -> None:
        self.name = name
        self.key = key
        self.reason = reason
        where = f"schedule {name!r}" if name else "a schedule"
        super().__init__(f"{where}: {key}: {reason}")


@dataclass(frozen=True)
class Schedule:
    """One ``[[schedule]]`` table of agentd.toml."""

    name: str
    task: Mapping[str, Any]
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    catch_up: CatchUp = CatchUp.ONE
    skip_if_open: bool = True
    misfire_grace: float = 60.0
    zone: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False, repr=False)

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> Schedule:
        """Build and check a schedule from its table; ScheduleInvalid names the key that is wrong."""
        name = spec.get("name")
        shown = name if isinstance(name, str) else None
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise ScheduleInvalid(shown, unknown[0], f"unknown key (known: {', '.join(KEYS)})")
        if not isinstance(name, str) or not valid_task_id(name):
            raise ScheduleInvalid(shown, "name", "must be a name of letters, digits, '.', '_' or '-' (it starts ids)")
        cron, every = spec.get("cron"), spec.get("every")
        if (cron is None) == (every is None):
            raise ScheduleInvalid(name, "cron", "set exactly one of cron or every")
        tz = spec.get("tz", "UTC")
        try:
            zone = ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleInvalid(name, "tz", f"unknown time zone {tz!r} (use an IANA name: Europe/Berlin)") from None
        period = None
        if cron is not None:
            if not isinstance(cron, str):
                raise ScheduleInvalid(name, "cron", "must be a string such as '0 9 * * *'")
            try:
                CronSim(cron, datetime(2026, 1, 1, tzinfo=zone))
            except CronSimError as exc:
                raise ScheduleInvalid(name, "cron", f"{cron!r} is not a cron expression ({exc})") from None
        else:
            if not isinstance(every, str | int | float):
                raise ScheduleInvalid(name, "every", "must be a duration such as '30m' or a number of seconds")
            try:
                period = parse_duration(every)
            except ValueError as exc:
                raise ScheduleInvalid(name, "every", str(exc)) from None
            if period < 1:
                raise ScheduleInvalid(name, "every", "must be at least 1 s")
        try:
            catch_up = CatchUp(spec.get("catch_up", "one"))
        except ValueError:
            raise ScheduleInvalid(name, "catch_up", "must be 'none', 'one' or 'all'") from None
        try:
            grace = parse_duration(spec.get("misfire_grace", 60))
        except ValueError as exc:
            raise ScheduleInvalid(name, "misfire_grace", str(exc)) from None
        task = spec.get("task")
        if not isinstance(task, Mapping) or not isinstance(task.get("title"), str):
            raise ScheduleInvalid(name, "task", "must be a table with at least a title")
        if "id" in task:
            raise ScheduleInvalid(name, "task.id", "is made from the name and the time; leave it out")
        skip = spec.get("skip_if_open", True)
        if not isinstance(skip, bool):
            raise ScheduleInvalid(name, "skip_if_open", "must be true or false")
        return cls(name, dict(task), cron, period, str(tz), catch_up, skip, grace, zone)

    # -- times ---------------------------------------------------------------------------------------------------------

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled time strictly after ``moment`` (UTC)."""
        if self.every is not None:
            stamp = moment.timestamp()
            return datetime.fromtimestamp((math.floor(stamp / self.every) + 1) * self.every, UTC)
        assert self.cron is not None
        return next(iter(CronSim(self.cron, moment.astimezone(self.zone)))).astimezone(UTC)

    def times_between(self, after: datetime, until: datetime, limit: int = MAX_CATCH_UP) -> list[datetime]:
        """Scheduled times in ``(after, until]``, oldest first; the *latest* ``limit`` when there are more."""
        if until <= after:
            return []
        if self.every is not None:
            first = math.floor(after.timestamp() / self.every) + 1
            last = math.floor(until.timestamp() / self.every)
            first = max(first, last - limit + 1)
            return [datetime.fromtimestamp(k * self.every, UTC) for k in range(first, last + 1)]
        assert self.cron is not None
        # Walk back from ``until`` (cronsim iterates in either direction), so a long gap costs ``limit`` steps at most.
        found: list[datetime] = []
        start = until.astimezone(self.zone) + timedelta(microseconds=1)
        for moment in CronSim(self.cron, start, reverse=True):
            stamp = moment.astimezone(UTC)
            if stamp <= after or len(found) >= limit:
                break
            if stamp <= until:
                found.append(stamp)
        return found[::-1]

    # -- the task a firing adds ----------------------------------------------------------------------------------------

    def task_id(self, at: datetime) -> str:
        """``<name>-<local YYYYmmddTHHMM[SS]>``, with ``b`` for the second pass of a local time a clock change
        repeats (so the two never share an id)."""
        local = at.astimezone(self.zone)
        stamp = local.strftime("%Y%m%dT%H%M") + (local.strftime("%S") if local.second else "")
        return f"{self.name}-{stamp}{'b' if local.fold else ''}"

    def make_task(self, at: datetime, now: datetime) -> dict[str, Any]:
        """The task a firing at ``at`` adds: the template with ``{name}``, ``{at}`` and ``{now}`` filled in its
        strings, its id, and where it came from."""
        values = {"name": self.name, "at": format_timestamp(at), "now": format_timestamp(now)}
        task: dict[str, Any] = {"id": self.task_id(at)}
        for key, value in self.task.items():
            task[key] = _fill(value, values)
        task.setdefault("status", "ready")
        task.setdefault("dependencies", [])
        task["scheduled"] = {"by": self.name, "for": format_timestamp(at)}
        return task

    def owns(self, task_id: str) -> bool:
        """Whether ``task_id`` was made by this schedule."""
        prefix = self.name + "-"
        rest = task_id[len(prefix) :] if task_id.startswith(prefix) else ""
        return len(rest) >= 13 and rest[:8].isdigit() and rest[8] == "T"


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


@dataclass(frozen=True)
class Due:
    """What one look at a schedule decided."""

    fire: list[datetime]  # scheduled times to add tasks for, oldest first
    missed: int  # scheduled times passed over (catch_up none/one, or beyond MAX_CATCH_UP)
    next_at: datetime  # the next scheduled time after now
    handled: datetime  # what to remember as the last scheduled time handled


def due(schedule: Schedule, last: datetime | None, now: datetime, *, limit: int = MAX_CATCH_UP) -> Due:
    """The firings due at ``now``, given ``last``, the latest scheduled time already handled (None on the very first
    look: then only a firing that is on time counts, none from before the schedule existed)."""
    after = last if last is not None else now - timedelta(seconds=schedule.misfire_grace)
    times = schedule.times_between(after, now, limit=limit + 1)
    total = len(times)
    if total > limit:  # more than fit: at least one beyond the limit was missed
        times = times[-limit:]
    fire: list[datetime] = []
    if times:
        latest = times[-1]
        if schedule.catch_up is CatchUp.ALL:
            fire = times
        elif schedule.catch_up is CatchUp.ONE or (now - latest).total_seconds() <= schedule.misfire_grace:
            fire = [latest]
    missed = total - len(fire)  # total is limit + 1 when more were due than fit: then at least one is missed
    handled = times[-1] if times else (last if last is not None else now)
    return Due(fire, missed, schedule.next_after(now), handled)


def open_firing(schedule: Schedule, statuses: Iterable[tuple[str, str]], is_final: Any) -> str | None:
    """With ``skip_if_open``: the id of an earlier firing's task that is not final yet (the new firing is skipped),
    else None. ``statuses`` are (task id, status) pairs of the queue; ``is_final(status)`` says which statuses end."""
    if not schedule.skip_if_open:
        return None
    for task_id, status in statuses:
        if schedule.owns(task_id) and not is_final(status):
            return task_id
    return None
