"""The timeline: what ran when, a lane per role, drawn as SVG from the event journal (pure: events and time in).

A run is a claim (``claimed``/``started``) up to its end (``finished``, ``refused``, ``heartbeat-lost``, or the
``recovered`` of its task after its daemon died); a run with no end yet is running. Runs of one role that overlap in
time take separate rows of the role's lane. Bars are coloured by outcome; recoveries are marked with a triangle.
At any number of runs the picture stays small: neighbouring bars of one outcome in one row that are closer than a
pixel are drawn as one, whose tooltip counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from agentd.core.clock import format_timestamp, parse_timestamp

COLOURS = {
    "success": "#2e7d32",
    "exit-code": "#558b2f",
    "result": "#00838f",
    "failure": "#c62828",
    "timeout": "#ef6c00",
    "crash": "#6a1b9a",
    "interrupted": "#757575",
    "stopped": "#8d6e63",
    "refused": "#ad1457",
    "recovered": "#4e342e",
    "running": "#1565c0",
}
ENDS = {"finished", "refused", "heartbeat-lost"}
BAR = 12  # px per row
GAP = 4
LABEL = 110  # px for lane names
AXIS = 22


@dataclass
class Run:
    """One run of a task, as the journal tells it."""

    task: str
    token: Any
    role: str
    start: datetime
    end: datetime | None = None
    outcome: str = "running"
    row: int = 0
    count: int = 1  # runs drawn as this one bar


@dataclass
class Picture:
    """Runs per role, recoveries, and the window shown."""

    start: datetime
    end: datetime
    lanes: dict[str, list[Run]] = field(default_factory=dict)
    recoveries: list[tuple[str, datetime, str]] = field(default_factory=list)  # (role, when, task)


def _time(event: Mapping[str, Any]) -> datetime | None:
    try:
        return parse_timestamp(str(event.get("time")))
    except ValueError:
        return None


def runs(events: Iterable[Mapping[str, Any]], now: datetime) -> tuple[list[Run], list[tuple[str, datetime, str]]]:
    """Runs and recoveries from journal events in time order (unmatched ends are ignored)."""
    open_runs: dict[tuple[str, Any], Run] = {}
    by_task: dict[str, tuple[str, Any]] = {}
    done: list[Run] = []
    recoveries: list[tuple[str, datetime, str]] = []
    for event in events:
        name, task, when = event.get("event"), event.get("task"), _time(event)
        if not isinstance(task, str) or when is None:
            continue
        key = (task, event.get("token"))
        role = str(event.get("role") or "?")
        if name in ("claimed", "started"):
            if key not in open_runs:
                open_runs[key] = Run(task, key[1], role, when)
                by_task[task] = key
        elif name in ENDS and key in open_runs:
            run = open_runs.pop(key)
            run.end = when
            run.outcome = str(event.get("outcome") or ("refused" if name == "refused" else "stopped"))
            done.append(run)
        elif name == "recovered":
            stale = by_task.get(task)
            if stale in open_runs:  # its daemon died: the run is shown up to the moment a peer noticed
                run = open_runs.pop(stale)
                run.end, run.outcome = when, "recovered"
                done.append(run)
                role = run.role  # marked in the lane of the role whose run it was, not of the daemon that noticed
            recoveries.append((role, when, task))
    done.extend(open_runs.values())
    return sorted(done, key=lambda run: (run.start, run.task)), recoveries


def layout(events: Iterable[Mapping[str, Any]], now: datetime, hours: float) -> Picture:
    """The runs in the last ``hours`` before ``now``, placed in rows, neighbouring sub-pixel bars merged later."""
    start = now - timedelta(hours=hours)
    found, recoveries = runs(events, now)
    picture = Picture(start, now, recoveries=[r for r in recoveries if r[1] >= start])
    for run in found:
        if (run.end or now) < start or run.start > now:
            continue
        picture.lanes.setdefault(run.role, []).append(run)
    for lane in picture.lanes.values():
        ends: list[datetime] = []  # per row: when its last run ends
        for run in lane:
            for row, busy_until in enumerate(ends):
                if busy_until <= run.start:
                    run.row, ends[row] = row, run.end or now
                    break
            else:
                run.row = len(ends)
                ends.append(run.end or now)
    return picture


def _merge(lane: list[Run], x: Any) -> list[Run]:
    """Bars of one row and outcome closer than a pixel, drawn as one."""
    merged: list[Run] = []
    last: dict[int, Run] = {}
    for run in sorted(lane, key=lambda r: (r.row, r.start)):
        previous = last.get(run.row)
        if previous is not None and previous.outcome == run.outcome and x(run.start) - x(previous.end) < 1:
            previous.end = max(previous.end or run.start, run.end or run.start)
            previous.count += run.count
            continue
        copy = Run(run.task, run.token, run.role, run.start, run.end, run.outcome, run.row, run.count)
        merged.append(copy)
        last[run.row] = copy
    return merged


def svg(events: Iterable[Mapping[str, Any]], now: datetime, *, hours: float = 8.0, width: int = 1200) -> str:
    """The timeline of the last ``hours`` as an SVG document."""
    picture = layout(events, now, hours)
    span = (picture.end - picture.start).total_seconds() or 1.0
    plot = width - LABEL - 10

    def x(moment: datetime | None) -> float:
        moment = moment or now
        seconds = (max(min(moment, picture.end), picture.start) - picture.start).total_seconds()
        return LABEL + plot * seconds / span

    parts: list[str] = []
    y = AXIS
    for role in sorted(picture.lanes):
        lane = picture.lanes[role]
        rows = 1 + max(run.row for run in lane)
        height = rows * BAR + GAP
        parts.append(f'<g class="lane" data-role={quoteattr(role)}>')
        parts.append(f'<text x="4" y="{y + BAR - 2}" class="role">{escape(role)}</text>')
        parts.append(
            f'<line x1="{LABEL}" x2="{width - 10}" y1="{y + height - GAP / 2}" y2="{y + height - GAP / 2}" '
            'class="sep"/>'
        )
        for run in _merge(lane, x):
            left, right = x(run.start), x(run.end)
            what = f"{run.count} runs" if run.count > 1 else f"{run.task} (token {run.token})"
            tip = f"{what}: {run.outcome}, {format_timestamp(run.start)} – " + (
                format_timestamp(run.end) if run.end else "running"
            )
            parts.append(
                f'<rect class="run {escape(run.outcome)}" data-outcome={quoteattr(run.outcome)} '
                f'data-count="{run.count}" x="{left:.1f}" y="{y + run.row * BAR}" width="{max(1.0, right - left):.1f}" '
                f'height="{BAR - 2}" fill="{COLOURS.get(run.outcome, "#9e9e9e")}"><title>{escape(tip)}</title></rect>'
            )
        for who, when, task in picture.recoveries:
            if who == role:
                cx = x(when)
                parts.append(
                    f'<path class="recovery" d="M{cx:.1f},{y} l4,-6 l-8,0 z" fill="{COLOURS["recovered"]}">'
                    f"<title>{escape(f'recovered {task} at {format_timestamp(when)}')}</title></path>"
                )
        parts.append("</g>")
        y += height
    ticks = []
    for step in range(7):
        moment = picture.start + timedelta(seconds=span * step / 6)
        ticks.append(
            f'<text x="{x(moment):.1f}" y="14" class="tick" text-anchor="middle">{moment.strftime("%H:%M")}</text>'
        )
    if not picture.lanes:
        parts.append(f'<text x="{LABEL}" y="{AXIS + BAR}" class="empty">no runs in the last {hours:g} h</text>')
        y += BAR + GAP
    height = y + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="runs over the last {hours:g} hours">'
        + "".join(ticks)
        + "".join(parts)
        + "</svg>"
    )
