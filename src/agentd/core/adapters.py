"""Output adapters: what an agent CLI's own output says about a run — its session id (to resume it), what it cost,
how many tokens it used, whether it failed — read with no wrapper script (pure: text in, report out).

``output = "claude-json"`` on a role reads the result object that ``claude -p --output-format json`` prints (and the
last line of ``--output-format stream-json``). More adapters plug in as Python entry points in the group
``agentd.adapters``: a name and a function ``(text: str) -> AgentReport | None`` (see docs/howto/agent-clis.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

from agentd.core.record import Record, set_field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Adapter = Callable[[str], "AgentReport | None"]
ENTRY_POINTS = "agentd.adapters"
TAIL = 1 << 20  # the last MiB of a task's log is where the final report is
_TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AgentReport(Record):
    """What an agent's output said about its run."""

    _fields = ("session", "usage", "is_error", "note")

    session: str | None
    usage: Mapping[str, float]  # cost_usd and token counts, where reported (a new dict when not given)
    is_error: bool
    note: str | None  # why, when it failed

    def __init__(
        self,
        session: str | None = None,
        usage: Mapping[str, float] | None = None,
        is_error: bool = False,
        note: str | None = None,
    ) -> None:
        set_field(self, "session", session)
        set_field(self, "usage", {} if usage is None else usage)
        set_field(self, "is_error", is_error)
        set_field(self, "note", note)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def last_json_object(text: str, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The last JSON object in ``text`` that ``accept`` takes: the whole text, else a line, else one embedded after
    other output (searched from the end)."""
    decoder = json.JSONDecoder()
    stripped = text.strip()
    candidates: list[str] = [stripped] if stripped.startswith("{") else []
    candidates += [line.strip() for line in reversed(stripped.splitlines()) if line.strip().startswith("{")]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and accept(value):
            return value
    position = len(stripped)
    for _ in range(200):  # pretty-printed or glued to other output: try the last few opening braces
        position = stripped.rfind("{", 0, position)
        if position < 0:
            break
        try:
            value, _end = decoder.raw_decode(stripped, position)
        except ValueError:
            continue
        if isinstance(value, dict) and accept(value):
            return value
    return None


def claude_json(text: str) -> AgentReport | None:
    """The result object of ``claude -p --output-format json`` (or stream-json's last line); None when absent."""
    found = last_json_object(text, lambda value: value.get("type") == "result")
    if found is None:
        return None
    usage: dict[str, float] = {}
    cost = _number(found.get("total_cost_usd"))
    if cost is None:
        cost = _number(found.get("cost_usd"))  # what older versions printed
    if cost is not None:
        usage["cost_usd"] = cost
    counts = found.get("usage")
    if isinstance(counts, Mapping):
        for key in _TOKEN_KEYS:
            number = _number(counts.get(key))
            if number is not None:
                usage[key] = number
    session = found.get("session_id")
    subtype = found.get("subtype")
    is_error = found.get("is_error") is True or (isinstance(subtype, str) and subtype.startswith("error"))
    note = None
    if is_error:
        detail = subtype if isinstance(subtype, str) else "is_error"
        result = found.get("result")
        note = f"claude reported {detail}" + (f": {result[:200]}" if isinstance(result, str) and result else "")
    return AgentReport(session if isinstance(session, str) and session else None, usage, is_error, note)


BUILT_IN: dict[str, Adapter] = {"claude-json": claude_json}


def names() -> list[str]:
    """Every adapter name: the built-in ones and those installed as entry points."""
    from importlib import metadata  # (email, zipfile, csv: not for a daemon whose roles use none of them)

    return sorted({*BUILT_IN, *(entry.name for entry in metadata.entry_points(group=ENTRY_POINTS))})


def adapter(name: str) -> Adapter:
    """The adapter called ``name``; LookupError naming the known ones."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    from importlib import metadata

    for entry in metadata.entry_points(group=ENTRY_POINTS):
        if entry.name == name:
            loaded: Adapter = entry.load()
            return loaded
    raise LookupError(f"unknown output adapter {name!r} (known: {', '.join(names())})")
