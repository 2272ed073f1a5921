"""The server-sent event streams and the journal fold behind /metrics, driven directly (real files, no server)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentd.core.clock import FakeClock
from agentd.store.file import journal
from agentd.store.file.journal import Filter, Journal
from agentd.web import streams
from agentd.web.metrics import cause_kind, fold

DEADLINE = 20.0  # s: a bound on waiting under load, not a measure of speed


async def _next_data(stream: AsyncIterator[str]) -> str:
    """The next message carrying data (comments skipped)."""
    while True:
        item = await asyncio.wait_for(stream.__anext__(), DEADLINE)
        if item.startswith("data: ") or "\ndata: " in item:
            return item.split("data: ", 1)[1].rstrip("\n")


def test_tail_sends_what_is_appended_and_starts_over_after_truncation(tmp_path: Path) -> None:
    """A log grows: each piece arrives once, multi-byte characters split across writes intact; truncated: from 0."""
    log = tmp_path / "1.log"
    log.write_bytes(b"first\n")

    async def scenario() -> list[str]:
        stream = streams.tail(log)
        got = [json.loads(await _next_data(stream))]
        with open(log, "ab") as handle:
            handle.write("caf\u00e9 ".encode()[:-2])  # the é cut in half
        got.append(json.loads(await _next_data(stream)))
        with open(log, "ab") as handle:
            handle.write("caf\u00e9 ".encode()[-2:] + b"done\n")
        got.append(json.loads(await _next_data(stream)))
        log.write_bytes(b"new\n")  # replaced by a shorter file
        got.append(json.loads(await _next_data(stream)))
        await stream.aclose()
        return got

    got = asyncio.run(scenario())
    assert "".join(got[:3]) == "first\ncaf\u00e9 done\n"
    assert got[3] == "new\n"


def test_journal_stream_sends_new_matching_events_across_a_rotation(tmp_path: Path) -> None:
    """Only events written after the stream opened and passing the filter are sent, also after the file rotates."""
    path = tmp_path / "events.jsonl"
    writer = Journal(path, FakeClock(datetime.now(UTC)), "builder", logging.getLogger("test"), max_bytes=0)
    writer.emit("claimed", "old", task="A")

    async def scenario() -> list[dict[str, object]]:
        stream = streams.journal(path, Filter(task="A"))
        assert (await stream.__anext__()).startswith(": connected")
        writer.emit("claimed", "other task", task="B")
        writer.emit("started", "new one", task="A")
        first = json.loads(await _next_data(stream))
        journal.rotate(path, 1, 3)  # the live file is renamed away; the next event starts a new one
        writer.emit("finished", "after rotation", task="A")
        second = json.loads(await _next_data(stream))
        await stream.aclose()
        return [first, second]

    first, second = asyncio.run(scenario())
    assert (first["event"], first["message"]) == ("started", "new one")
    assert (second["event"], second["message"]) == ("finished", "after rotation")


def test_changes_stream_fires_when_the_signature_changes() -> None:
    """A `change` message follows a change of the signature, and nothing follows none."""
    marks = [1]

    async def scenario() -> str:
        stream = streams.changes(lambda: marks[0])
        assert (await stream.__anext__()).startswith(": connected")
        marks[0] = 2
        message = await asyncio.wait_for(stream.__anext__(), DEADLINE)
        await stream.aclose()
        return message

    assert asyncio.run(scenario()) == "event: change\ndata: {}\n\n"


def _event(name: str, task: str, at: datetime, role: str = "builder", **fields: object) -> journal.Event:
    data = {"time": at.isoformat(), "event": name, "task": task, "role": role, **fields}
    parsed = journal.parse_line(json.dumps(data))
    assert parsed is not None
    return parsed


def test_fold_counts_pickup_latency_from_the_moment_a_task_became_claimable() -> None:
    """Pickup latency: from the builder's finish to the tester's claim; a retry counts from the end of its backoff."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        _event("claimed", "A", t0),  # added by hand: not counted
        _event("finished", "A", t0 + timedelta(seconds=10), outcome="success", duration=10.0),
        _event("claimed", "A", t0 + timedelta(seconds=10.5), role="tester"),
        _event("finished", "A", t0 + timedelta(seconds=20), role="tester", outcome="failure", duration=9.5),
        _event(
            "retry-scheduled",
            "A",
            t0 + timedelta(seconds=20),
            role="tester",
            not_before=(t0 + timedelta(seconds=50)).isoformat(),
        ),
        _event("claimed", "A", t0 + timedelta(seconds=52), role="tester"),
        _event(
            "recovered", "A", t0 + timedelta(seconds=60), cause="lease 7 expired: no heartbeat for 'builder' (pid 12)"
        ),
        _event("refused", "A", t0 + timedelta(seconds=61), role="tester"),
    ]
    found = fold(events)
    assert found.runs == {("builder", "success"): 1, ("tester", "failure"): 1}
    assert found.pickups["tester"].total == 0.5 + 2.0 and sum(found.pickups["tester"].counts) == 2
    assert "builder" not in found.pickups
    assert found.durations["builder"].total == 10.0
    assert found.refused == {"tester": 1}
    assert found.recoveries == {"lease expired": 1}


def test_cause_kind_leaves_out_particulars() -> None:
    """Ids, tokens, pids and quoted statuses are not part of a label."""
    assert cause_kind("in 'in_progress' with no lease file (its worker is gone)") == "in with no lease file"
    assert cause_kind("lease file token 4 is not the task's token 5") == "lease file token is not the task's token"
    assert cause_kind("") == "unknown"
    assert len(cause_kind("x" * 500)) == 60
