"""Time as a parameter: the decision core never reads the clock itself.

Wall-clock time is an aware UTC :class:`datetime`; timestamps agentd writes are ISO-8601 with an explicit offset.
Timestamps it reads may use ``Z``, any offset, or none (taken as UTC).

Heartbeats are judged on the boot clock (``CLOCK_BOOTTIME``: seconds since this kernel booted, counting suspend),
which a wall-clock step (NTP, a hand-set date, a container's faked time) cannot move. Its readings compare only within
one boot of one kernel: the same ``boot_id``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:  # (typing is not imported at run time on the CLI's hot path: a Protocol is for the type checker)
    Protocol = object


class Clock(Protocol):
    """What the core needs to know about time."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations and deadlines)."""
        ...

    def boottime(self) -> float:
        """Seconds since this kernel booted (``CLOCK_BOOTTIME``), comparable between processes of one boot."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def boottime(self) -> float:
        return boottime()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._boot = 500.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def boottime(self) -> float:
        return self._boot

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        self._boot += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock alone (NTP, a hand-set date): the monotonic and boot clocks do not move."""
        self._now += timedelta(seconds=seconds)


class SkewedClock(SystemClock):
    """The real clock with its wall time shifted by ``skew`` seconds (fault injection: a host whose date is wrong)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skew)


def boottime() -> float:
    """This kernel's ``CLOCK_BOOTTIME`` in seconds (``CLOCK_MONOTONIC`` where there is none)."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is None:
        return time.monotonic()
    return time.clock_gettime(clock_id)


def parse_timestamp(value: str) -> datetime:
    """Read an ISO-8601 timestamp; ``Z``, any offset, or none (UTC). Raises ValueError when unreadable."""
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """The form agentd writes: UTC, seconds precision (milliseconds when present), explicit ``+00:00``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec)
