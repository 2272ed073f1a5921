"""A filtered read of the journal skips lines unparsed (no name of a type asked for, or a first field that is a time
before ``since``): what it yields is what parsing every line and filtering the events yields."""

from __future__ import annotations

import collections
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.core.clock import format_timestamp
from agentd.store.base import Filter
from agentd.store.file import journal
from agentd.store.file.journal import LiveMark, read_events, read_last

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TYPES = ["claimed", "started", "finished", "released"]
TASKS = ["T1", "T10", "T2", 'x"y']  # (one the other's prefix; one no valid id, written escaped)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One journal line: as agentd writes it, or in another shape a person or another tool may have left."""
    moment = START + timedelta(minutes=draw(st.integers(-3, 3)))  # (few moments: some are the very ``since``)
    stamp = format_timestamp(moment)
    event = draw(st.sampled_from(TYPES))
    said = draw(st.sampled_from(TYPES))  # (a message that names another event's type)
    record = {"time": stamp, "event": event, "role": "builder", "task": draw(st.sampled_from(TASKS))}
    record["message"] = f"{said} {record['task']}"
    shape = draw(st.sampled_from(["agentd", "compact", "time-later", "other-offset", "escaped", "junk", "torn-time"]))
    if shape == "agentd":
        text = json.dumps(record, ensure_ascii=False)
    elif shape == "compact":
        text = json.dumps(record, separators=(",", ":"))
    elif shape == "time-later":
        text = json.dumps({"event": event, **{k: v for k, v in record.items() if k != "event"}})
    elif shape == "other-offset":  # the same moment written with another offset: compared as a moment
        text = json.dumps({**record, "time": moment.astimezone(timezone_plus_two()).isoformat()})
    elif shape == "escaped":  # the time's first digit as a JSON escape: the same string once parsed
        text = json.dumps(record).replace(f'"time": "{stamp[0]}', '"time": "\\u003' + stamp[0], 1)
    elif shape == "torn-time":
        text = '{"time": "' + stamp[:7]
    else:
        text = draw(st.sampled_from(["", "not json", "[]", '{"event": "finished"}', '{"time": 5, "event": "x"}']))
    return text.encode("utf-8") + b"\n"


def timezone_plus_two() -> object:
    from datetime import timezone

    return timezone(timedelta(hours=2))


@settings(max_examples=200, deadline=None)
@given(
    written=st.lists(lines(), max_size=30),
    since=st.one_of(st.none(), st.integers(-3, 3).map(lambda m: START + timedelta(minutes=m))),
    types=st.sets(st.sampled_from(TYPES), max_size=2),
    task=st.sampled_from([None, *TASKS]),
)
def test_a_filtered_read_yields_what_filtering_every_parsed_event_yields(
    tmp_path_factory: object, written: list[bytes], since: datetime | None, types: set[str], task: str | None
) -> None:
    folder = tmp_path_factory.mktemp("journal")  # type: ignore[attr-defined]
    path = Path(folder) / "events.jsonl"
    path.write_bytes(b"".join(written))
    where = Filter(task=task, since=since, types=frozenset(types))
    expected = [event.raw for event in read_events(path) if where.matches(event)]
    assert [event.raw for event in read_events(path, where)] == expected


@settings(max_examples=200, deadline=None)
@given(
    files=st.lists(st.lists(lines(), max_size=12), min_size=1, max_size=3),
    torn=st.sampled_from([b"", b'{"time": "2026-12-01T12:00:00+00:00", "ev']),
    block=st.sampled_from([1, 7, 64, 1 << 16]),
    count=st.integers(0, 12),
    types=st.sets(st.sampled_from(TYPES), max_size=2),
)
def test_the_last_events_read_backward_are_the_last_of_a_read_forward(
    tmp_path_factory: object,
    files: list[list[bytes]],
    torn: bytes,
    block: int,
    count: int,
    types: set[str],
) -> None:
    """``read_last`` (`agentd events -n N` and `-f`: from the end of the newest file back, a block at a time) gives
    the last N events a forward read gives, over rotated files, a torn last line and lines longer than a block, and
    keeps the live file where a forward read leaves it for following."""
    folder = Path(tmp_path_factory.mktemp("journal"))  # type: ignore[attr-defined]
    path = folder / "events.jsonl"
    for number, written in enumerate(reversed(files)):  # (the last list is the live file)
        target = path if number == 0 else folder / f"events.jsonl.{number}"
        target.write_bytes(b"".join(written) + (torn if number == 0 else b""))
    where = Filter(types=frozenset(types))
    forward, backward = LiveMark(keep=True), LiveMark(keep=True)
    expected = [event.raw for event in collections.deque(read_events(path, where, mark=forward), maxlen=count)]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(journal, "BACKWARD_BLOCK", block)
            got = [event.raw for event in read_last(path, where, count, mark=backward)]
        assert got == expected
        assert (backward.kept or (0, None))[1] == (forward.kept or (0, None))[1]
    finally:
        for kept in (forward.kept, backward.kept):
            if kept is not None:
                os.close(kept[0])


def test_lines_that_cannot_pass_and_lines_before_the_last_are_never_parsed(tmp_path: Path) -> None:
    """What keeps `agentd status`, `events --since/--task/-n` quick on a full journal (up to 60 MB): a filtered read
    parses only the lines that may pass, and the last N are read from the end, parsing no more than they need."""
    path = tmp_path / "events.jsonl"
    written = []
    for n in range(1000):
        moment = START + timedelta(seconds=n)
        event = "finished" if n % 4 == 2 else "claimed"
        record = {"time": format_timestamp(moment), "event": event, "task": f"T{n % 50}", "message": f"{event} {n}"}
        written.append(json.dumps(record, ensure_ascii=False) + "\n")
    path.write_text("".join(written))
    parsed: list[bytes | str] = []
    real = journal.parse_line

    def counting(line: bytes | str) -> object:
        parsed.append(line)
        return real(line)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "parse_line", counting)
        assert len(list(read_events(path, Filter(since=START + timedelta(seconds=990))))) == 10
        assert len(parsed) == 10
        parsed.clear()
        assert len(list(read_events(path, Filter(types=frozenset({"finished"}))))) == 250
        assert len(parsed) == 250
        parsed.clear()
        assert len(list(read_events(path, Filter(task="T7")))) == 20
        assert len(parsed) == 20
        parsed.clear()
        assert [event.data["message"] for event in read_last(path, None, 3)] == [
            "claimed 997",
            "finished 998",
            "claimed 999",
        ]
        assert len(parsed) == 3
