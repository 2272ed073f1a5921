"""Durations as people write them in agentd.toml and on the command line: ``90``, ``30s``, ``5m``, ``2h``, ``1d``,
``1h30m`` (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

from agentd.core.clock import parse_timestamp
from agentd.core.lazyre import LazyPattern

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = LazyPattern(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str | float) -> float:
    """Seconds in ``text``; a bare number is seconds. ValueError (naming the text) when it is not a duration."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        try:
            seconds = float(value)
        except ValueError:
            parts = _PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
                raise ValueError(f"{text!r} is not a duration (use e.g. 90, 30s, 5m, 2h, 1d, 1h30m)") from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a duration (it must be a finite number of seconds, 0 or more)")
    return seconds


def format_duration(seconds: float) -> str:
    """A short form for people: ``45 s``, ``12 min``, ``3.5 h``, ``2 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} d".replace(".0 d", " d")


# -- a --since: how far back the journal is read -----------------------------------------------------------------

_SPAN_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SPAN_PART = LazyPattern(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_span(text: str) -> timedelta:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a sum like ``"1h30m"`` as a timedelta; ValueError else."""
    spec = text.strip().lower()
    position = 0
    seconds = 0.0
    for match in _SPAN_PART.finditer(spec):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _SPAN_UNITS[match.group(2)]
        position = match.end()
    if not spec or position != len(spec):
        raise ValueError(f"not a duration: {text!r} (say 90s, 10m, 2h, 1d or 1h30m)")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime) -> datetime:
    """A ``--since`` value: a duration back from ``now`` (``10m``) or an ISO-8601 time; ValueError when neither."""
    try:
        return now - parse_span(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"not a duration or a time: {text!r} (say 10m, 2h, 1d, 1h30m or 2026-11-21T22:00)") from None
