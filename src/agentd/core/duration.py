"""Durations as people write them in agentd.toml and on the command line: ``90``, ``30s``, ``5m``, ``2h``, ``1d``,
``1h30m`` (pure)."""

from __future__ import annotations

import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


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
