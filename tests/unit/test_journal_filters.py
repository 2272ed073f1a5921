"""A filtered read of the journal skips lines unparsed (no name of a type asked for, or a first field that is a time
before ``since``): what it yields is what parsing every line and filtering the events yields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.core.clock import format_timestamp
from agentd.store.base import Filter
from agentd.store.file.journal import read_events

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TYPES = ["claimed", "started", "finished", "released"]


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One journal line: as agentd writes it, or in another shape a person or another tool may have left."""
    moment = START + timedelta(minutes=draw(st.integers(-3, 3)))  # (few moments: some are the very ``since``)
    stamp = format_timestamp(moment)
    event = draw(st.sampled_from(TYPES))
    said = draw(st.sampled_from(TYPES))  # (a message that names another event's type)
    record = {"time": stamp, "event": event, "role": "builder", "task": draw(st.sampled_from(["T1", "T2"]))}
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
    task=st.sampled_from([None, "T1"]),
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
