"""The timeline SVG from journal events: lanes and rows, colours by outcome, recoveries, escaping, 10,000 runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from agentd.web.timeline import COLOURS, layout, svg

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NS = "{http://www.w3.org/2000/svg}"


def at(minutes_ago: float) -> str:
    """A journal timestamp ``minutes_ago`` before NOW."""
    return (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="milliseconds")


def run(
    role: str, task: str, token: int, begin: float, end: float | None, outcome: str = "success"
) -> list[dict[str, Any]]:
    """The journal lines of one run (claimed, started, and finished unless it still runs)."""
    lines = [
        {"time": at(begin), "event": "claimed", "role": role, "task": task, "token": token},
        {"time": at(begin), "event": "started", "role": role, "task": task, "token": token},
    ]
    if end is not None:
        lines.append(
            {"time": at(end), "event": "finished", "role": role, "task": task, "token": token, "outcome": outcome}
        )
    return lines


def bars(document: str) -> list[ET.Element]:
    """The run bars of a rendered timeline."""
    return ET.fromstring(document).findall(f".//{NS}rect")


def test_overlapping_runs_of_a_role_take_rows_and_keep_their_outcome() -> None:
    """Two builders at once take two rows; the tester has one; colours follow outcomes; a run still going is blue."""
    events = [
        *run("builder", "B1", 1, 60, 30),
        *run("builder", "B2", 2, 50, 20, "failure"),
        *run("tester", "T1", 3, 25, 10),
        *run("builder", "B3", 4, 15, None),
    ]
    events.sort(key=lambda e: e["time"])
    picture = layout(events, NOW, 2)
    rows = {r.task: r.row for r in picture.lanes["builder"]}
    assert rows == {"B1": 0, "B2": 1, "B3": 0}
    drawn = bars(svg(events, NOW, hours=2))
    assert [b.get("data-outcome") for b in drawn] == ["success", "running", "failure", "success"]
    assert drawn[2].get("fill") == COLOURS["failure"] and drawn[1].get("fill") == COLOURS["running"]


def test_a_recovered_run_ends_when_a_peer_noticed_and_is_marked_in_its_role() -> None:
    """A daemon SIGKILLed mid-run: its run ends at the recovery, marked in the builder's lane even though a tester
    daemon noticed."""
    events = [*run("builder", "K1", 1, 40, None)]
    events.append({"time": at(30), "event": "recovered", "role": "tester", "task": "K1", "token": 1, "cause": "x"})
    events += run("builder", "K1", 2, 29, 20)
    document = ET.fromstring(svg(events, NOW, hours=1))
    lane = document.find(f".//{NS}g[@data-role='builder']")
    assert lane is not None
    assert [b.get("data-outcome") for b in lane.findall(f"{NS}rect")] == ["recovered", "success"]
    assert len(lane.findall(f"{NS}path")) == 1
    assert document.find(f".//{NS}g[@data-role='tester']") is None


def test_names_are_escaped() -> None:
    """A role or task name with markup in it is text, never markup."""
    events = run('<script>alert("x")</script>', "B&1", 1, 10, 5)
    document = svg(events, NOW, hours=1)
    ET.fromstring(document)  # well-formed
    assert "<script>" not in document and "B&amp;1" in document


def test_ten_thousand_runs_stay_small_and_all_counted() -> None:
    """10,000 short runs over 8 hours: neighbouring sub-pixel bars merge, and the counts add up to every run."""
    events: list[dict[str, Any]] = []
    for n in range(10_000):
        begin = 480 - n * 0.048
        outcome = "failure" if n % 1000 == 0 else "success"
        events += run("builder", f"T{n}", n + 1, begin, begin - 0.02, outcome)
    document = svg(events, NOW, hours=8)
    drawn = bars(document)
    assert sum(int(b.get("data-count") or 0) for b in drawn) == 10_000
    assert len(drawn) < 2_000 and len(document) < 1_000_000
    assert sum(1 for b in drawn if b.get("data-outcome") == "failure") == 10


def test_an_empty_window_says_so() -> None:
    """No runs: a sentence, not an empty box."""
    assert "no runs in the last 8 h" in svg([], NOW)


def test_runs_outside_the_window_are_left_out_and_junk_is_ignored() -> None:
    """Runs that ended before the window are not drawn; lines without a time or a task are skipped."""
    events = [*run("builder", "OLD", 1, 600, 500), {"event": "finished", "task": "X"}, {"time": "soon", "task": "Y"}]
    events += run("builder", "NEW", 2, 10, 5)
    assert [b.get("data-outcome") for b in bars(svg(events, NOW, hours=1))] == ["success"]
