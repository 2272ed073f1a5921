"""People's control over roles, decided purely: pauses, daily budgets, and limits on tasks waiting for an answer.

A pause stops a role (or every role) from claiming until a time or until it is resumed; its running tasks go on.
A budget caps a role's spend per day in a time zone: once the day's spend reaches it, the role is paused until the
next day starts there. ``max_waiting`` stops a role taking new tasks while that many of its tasks wait for answers;
``waiting_expiry`` gives up on a question nobody answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta, tzinfo

from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.core.record import Record, set_field
from agentd.errors import StateInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

ALL = "*"  # the role name of a pause that stops every role
STATE_VERSION = 1  # of the project state's ``pauses`` key


class Pause(Record):
    """A pause in force from ``since`` until ``until`` (None: until someone resumes)."""

    _fields = ("role", "since", "until", "reason", "by")

    role: str  # a role's name, or ALL
    since: datetime
    until: datetime | None = None
    reason: str = ""
    by: str = ""

    def __init__(
        self,
        role: str,
        since: datetime,
        until: datetime | None = None,
        reason: str = "",
        by: str = "",
    ) -> None:
        set_field(self, "role", role)
        set_field(self, "since", since)
        set_field(self, "until", until)
        set_field(self, "reason", reason)
        set_field(self, "by", by)

    def active(self, now: datetime) -> bool:
        """In force from the moment it is written (``since`` is when, by the writer's clock, shown to people: a
        reader whose clock is behind the writer's must not ignore it) until ``until``."""
        return self.until is None or now < self.until

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "since": format_timestamp(self.since),
            "until": format_timestamp(self.until) if self.until else None,
            "reason": self.reason,
            "by": self.by,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pause:
        until = data.get("until")
        return cls(
            str(data["role"]),
            parse_timestamp(str(data["since"])),
            parse_timestamp(until) if isinstance(until, str) else None,
            str(data.get("reason") or ""),
            str(data.get("by") or ""),
        )


def pause_in_force(pauses: Iterable[Pause], role: str, now: datetime) -> Pause | None:
    """The pause that stops ``role`` now (its own or one for every role), the one lasting longest; None: not paused."""
    active = [pause for pause in pauses if pause.role in (role, ALL) and pause.active(now)]
    if not active:
        return None
    return max(active, key=lambda pause: (pause.until is None, pause.until or now))


def pause_until(now: datetime, *, seconds: float | None = None, until: datetime | None = None) -> datetime | None:
    """When a pause asked for ``--for SECONDS`` or ``--until TIME`` ends (None: until resumed); a time already past
    is refused (ValueError)."""
    if seconds is not None and until is not None:
        raise ValueError("give --for or --until, not both")
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    if until is not None and until <= now:
        raise ValueError(f"{format_timestamp(until)} is already past")
    return until


# -- budgets ----------------------------------------------------------------------------------------------------------


def day_bounds(now: datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    """The start and end (UTC) of the calendar day in ``tz`` that holds ``now`` (23 or 25 hours long on a clock
    change)."""
    if tz == "UTC":
        zone: tzinfo = UTC  # (the same bounds as ZoneInfo("UTC"), without importing zoneinfo on every `status`)
    else:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, local.day, tzinfo=zone)
    following = start.date() + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def spend(records: Iterable[tuple[datetime, str, float]], role: str | None, start: datetime, end: datetime) -> float:
    """The cost of ``role``'s runs (every role's when None) that ended in ``[start, end)``: (ended, role, cost_usd)."""
    return sum(cost for ended, who, cost in records if start <= ended < end and (role is None or who == role))


def budget_pause(
    role: str, limit: float | None, records: Iterable[tuple[datetime, str, float]], now: datetime, tz: str = "UTC"
) -> Pause | None:
    """A pause until the next day in ``tz`` when ``role`` has spent ``limit`` or more today; else None."""
    if limit is None:
        return None
    start, end = day_bounds(now, tz)
    spent = spend(records, role, start, end)
    if spent < limit:
        return None
    return Pause(role, now, end, f"budget reached: spent ${spent:.2f} of ${limit:.2f} today ({tz})", "budget")


# -- waiting for answers ----------------------------------------------------------------------------------------------


def may_take_new(waiting: int, max_waiting: int | None) -> bool:
    """Whether a role with ``waiting`` tasks waiting for answers may claim a new task (answered ones it resumes
    always)."""
    return max_waiting is None or waiting < max_waiting


def expired(asked: datetime, expiry: float | None, now: datetime) -> bool:
    """Whether a question asked at ``asked`` has waited past ``expiry`` seconds."""
    return expiry is not None and (now - asked).total_seconds() >= expiry


class ProjectState(Record):
    """The pauses in the project state (its other keys, such as automation's switches, are left as they are)."""

    _fields = ("pauses",)

    pauses: tuple[Pause, ...] = ()

    def __init__(self, pauses: tuple[Pause, ...] = ()) -> None:
        set_field(self, "pauses", pauses)

    def paused(self, role: str, pause: Pause) -> ProjectState:
        """With ``pause`` replacing the role's own pause (``role`` may be ALL)."""
        kept = tuple(p for p in self.pauses if p.role != role)
        return ProjectState((*kept, pause))

    def resumed(self, roles: list[str] | None) -> tuple[ProjectState, list[Pause]]:
        """Without the pauses of ``roles`` (None: every pause); also returns the pauses removed."""
        gone = [p for p in self.pauses if roles is None or p.role in roles]
        return ProjectState(tuple(p for p in self.pauses if p not in gone)), gone

    def pruned(self, now: datetime) -> ProjectState:
        """Without the pauses that have ended."""
        return ProjectState(tuple(p for p in self.pauses if p.until is None or now < p.until))

    def pauses_for(self, role: str) -> Iterator[Pause]:
        """The pauses that may stop ``role`` (its own and the one for every role)."""
        return (pause for pause in self.pauses if pause.role in (role, ALL))


def read_state(data: Mapping[str, Any], where: str | Path) -> ProjectState:
    """The pauses of the project state ``data`` (as :meth:`agentd.store.base.Store.state` gives it); StateInvalid
    naming ``where`` and the JSON path when they are not pauses."""
    pauses = data.get("pauses", [])
    if not isinstance(pauses, list):
        raise StateInvalid(where, "$.pauses", "must be a list")
    parsed = []
    for index, item in enumerate(pauses):
        at = f"$.pauses[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("role"), str) or not item["role"]:
            raise StateInvalid(where, at, "must be an object with a role")
        try:
            parsed.append(Pause.from_dict(item))
        except (KeyError, ValueError, TypeError) as exc:
            raise StateInvalid(where, at, f"not a pause: {exc}") from None
    return ProjectState(tuple(parsed))


def change_state(
    data: MutableMapping[str, Any], where: str | Path, edit: Callable[[ProjectState], ProjectState]
) -> tuple[ProjectState, ProjectState]:
    """Apply ``edit`` to the pauses in ``data`` (a transaction's :attr:`~agentd.store.base.Txn.state`); returns
    (before, after). ``data`` is left untouched when the pauses do not change; else ``version`` and ``pauses`` are
    written, every other key kept as it was."""
    before = read_state(data, where)
    after = edit(before)
    if after != before:
        data["version"] = STATE_VERSION
        data["pauses"] = [pause.to_dict() for pause in after.pauses]
    return before, after
