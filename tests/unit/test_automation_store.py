"""Automation's files: tasks added under the queue lock (exactly once, skip/coalesce), the switches in state.json,
and the journal tail across rotations."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.automation import sink
from agentd.automation.engine import Engine
from agentd.automation.schedule import Schedule, open_firing
from agentd.automation.settings import Automation
from agentd.core.clock import FakeClock
from agentd.errors import DataError
from agentd.store.file import automation_state
from agentd.store.file.journal import Journal, rotate
from agentd.store.file.journal_tail import Cursor, JournalTail
from agentd.store.file.queuefile import QueueStore

QUEUE = (
    '{\n  "tasks": [\n    {"id": "A", "title": "keep   this spacing", "status": "ready", "dependencies": []}\n  ]\n}\n'
)


def never(_statuses: object) -> None:
    return None


def test_adding_an_id_that_exists_is_a_no_op_and_the_file_keeps_its_bytes(tmp_path: Path) -> None:
    """A candidate whose id is in the queue is left alone: the file is byte-for-byte as it was."""
    path = tmp_path / "SPRINT_QUEUE.json"
    path.write_text(QUEUE)
    store = QueueStore(path)
    task = {"id": "A", "title": "again", "status": "ready", "dependencies": []}
    assert sink.add_tasks(store, [(task, never)]) == [sink.Outcome("A", "exists")]
    assert path.read_text() == QUEUE


def test_a_blocker_sees_the_tasks_added_earlier_in_the_same_transaction(tmp_path: Path) -> None:
    """Two firings of one schedule with skip_if_open in one pass: the second sees the first open, and is skipped;
    the untouched task's line keeps its spacing."""
    path = tmp_path / "SPRINT_QUEUE.json"
    path.write_text(QUEUE)
    schedule = Schedule.from_config({"name": "t", "every": "1h", "task": {"title": "x"}})
    at = [datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 1, 10, tzinfo=UTC)]

    def blocker(statuses: Iterable[tuple[str, str]]) -> str | None:
        return open_firing(schedule, statuses, lambda status: status == "done")

    outcomes = sink.add_tasks(QueueStore(path), [(schedule.make_task(t, t), blocker) for t in at])
    assert [o.result for o in outcomes] == ["added", "open"]
    assert outcomes[1].open_task == "t-20260101T0900"
    assert '"title": "keep   this spacing"' in path.read_text()


def test_switches_keep_the_other_keys_of_state_json(tmp_path: Path) -> None:
    """disable/enable change only the automation key; disabling everything and enabling everything round-trips."""
    path = automation_state.state_path(tmp_path)
    path.write_text(json.dumps({"pauses": [{"role": "builder"}]}))
    automation_state.set_enabled(tmp_path, "daily", False)
    assert not automation_state.read_switches(tmp_path).enabled("daily")
    assert automation_state.read_switches(tmp_path).enabled("other")
    automation_state.set_enabled(tmp_path, None, False)
    assert not automation_state.read_switches(tmp_path).enabled("other")
    automation_state.set_enabled(tmp_path, None, True)
    assert automation_state.read_switches(tmp_path).enabled("daily")
    assert json.loads(path.read_text())["pauses"] == [{"role": "builder"}]


def test_a_state_file_that_does_not_parse_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """A broken state.json: one line naming the file; its bytes are unchanged."""
    path = automation_state.state_path(tmp_path)
    path.write_bytes(b'{"automation": ')
    with pytest.raises(DataError, match=r"state\.json"):
        automation_state.set_enabled(tmp_path, "daily", False)
    assert path.read_bytes() == b'{"automation": '


def test_the_tail_resumes_after_its_cursor_and_follows_a_rotation(tmp_path: Path) -> None:
    """start(cursor) gives the events after the cursor; poll follows the live file across a rotation, no event
    lost or repeated."""
    path = tmp_path / "events.jsonl"
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    journal = Journal(path, clock, "automation", logging.getLogger("test"), max_bytes=0)
    for n in range(3):
        journal.emit("custom", f"e{n}", n=n)
    tail = JournalTail(path)
    first = tail.start(None)
    assert first == []
    assert tail.poll() == []
    journal.emit("custom", "e3", n=3)
    seen = tail.poll()
    assert [e.data["n"] for e in seen] == [3]
    cursor = Cursor.of(seen[0])
    journal.emit("custom", "e4", n=4)
    rotate(path, 1, 3)
    journal.emit("custom", "e5", n=5)
    assert [e.data["n"] for e in tail.poll()] == [4, 5]
    again = JournalTail(path)
    assert [e.data["n"] for e in again.start(cursor)] == [4, 5]


def test_a_tick_with_a_fake_clock_fires_a_due_schedule_once(tmp_path: Path) -> None:
    """Engine.tick at a scheduled time adds the task; a second tick at the same time adds nothing; an unreadable
    queue is reported once (automation-failed) and the firing is made on the next pass once it is readable."""
    (tmp_path / "agentd.toml").write_text(
        '[[schedule]]\nname = "hourly"\ncron = "0 * * * *"\ntask = { title = "check" }\n'
    )
    (tmp_path / "SPRINT_QUEUE.json").write_text(QUEUE)
    config = config_mod.load(root=tmp_path, environ={})
    assert isinstance(config.automation, Automation)
    clock = FakeClock(datetime(2026, 1, 1, 9, 0, 10, tzinfo=UTC))
    journal = Journal(tmp_path / ".agentd" / "events.jsonl", clock, "automation", logging.getLogger("test"))
    engine = Engine(config, journal, [], threading.Event())
    engine.start()
    (tmp_path / "SPRINT_QUEUE.json").write_text("{not json")
    engine.tick(clock.now(), 0.0)
    engine.tick(clock.now(), 0.1)
    failed = [json.loads(line) for line in (tmp_path / ".agentd" / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in failed] == ["automation-failed"]
    (tmp_path / "SPRINT_QUEUE.json").write_text(QUEUE)
    engine.tick(clock.now(), 0.2)
    engine.tick(clock.now(), 0.3)
    ids = [t["id"] for t in json.loads((tmp_path / "SPRINT_QUEUE.json").read_text())["tasks"]]
    assert ids == ["A", "hourly-20260101T0900"]
    engine.close()


def test_automation_events_are_known_event_types() -> None:
    """`agentd events --type` and `agentd emit` know automation's own events (emit refuses them as topics)."""
    from agentd.store.file.journal import EVENT_TYPES

    for name in ("schedule-fired", "schedule-skipped", "rule-fired", "rule-coalesced", "hook-delivered", "hook-failed"):
        assert name in EVENT_TYPES
