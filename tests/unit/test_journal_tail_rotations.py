"""The automation process's journal tail (agentd.store.file.journal_tail.JournalTail) across rotations: no event lost
when the journal rotated between `start`'s read and its opening of the live file, nor when it rotated twice between
two polls (the same two holes `events -f` and `logs -f` had: the file in between never read)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentd.core.clock import FakeClock
from agentd.store.file import journal_tail
from agentd.store.file.journal import Journal
from agentd.store.file.journal_tail import JournalTail


def journal_at(path: Path) -> Journal:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    return Journal(path, clock, "builder", logging.getLogger("test"), max_bytes=0)


def rotate(path: Path) -> None:
    """The journal's own rotation, one backup kept per step: events.jsonl.1 -> .2, events.jsonl -> .1."""
    if Path(f"{path}.1").exists():
        os.replace(f"{path}.1", f"{path}.2")
    os.replace(path, f"{path}.1")


def numbers(events: list[Any]) -> list[int]:
    return [event.data["n"] for event in events]


def test_a_rotation_between_the_start_read_and_the_live_file_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon appends e2 and rotates the journal (e3 in the new file) right after `start` read it: both come."""
    path = tmp_path / "events.jsonl"
    journal = journal_at(path)
    for n in range(2):
        journal.emit("custom", f"e{n}", n=n)
    real = journal_tail.read_events

    def read_then_a_daemon_writes(*args: Any, **kwargs: Any) -> Any:
        found = list(real(*args, **kwargs))
        journal.emit("custom", "e2", n=2)  # (the writer: after the read, before the tail opens the live file)
        rotate(path)
        journal.emit("custom", "e3", n=3)
        return iter(found)

    monkeypatch.setattr(journal_tail, "read_events", read_then_a_daemon_writes)
    tail = JournalTail(path)
    assert tail.start(None) == []  # (no cursor: history is not replayed)
    monkeypatch.setattr(journal_tail, "read_events", real)
    assert numbers(tail.poll()) == [2, 3]
    journal.emit("custom", "e4", n=4)
    assert numbers(tail.poll()) == [4]


def test_two_rotations_between_polls_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = journal_at(path)
    journal.emit("custom", "e0", n=0)
    tail = JournalTail(path)
    assert tail.start(None) == []
    journal.emit("custom", "e1", n=1)
    assert numbers(tail.poll()) == [1]
    journal.emit("custom", "e2", n=2)
    rotate(path)
    journal.emit("custom", "e3", n=3)  # a whole file the tail never opens: events.jsonl.1 after the next rotation
    rotate(path)
    journal.emit("custom", "e4", n=4)
    assert numbers(tail.poll()) == [2, 3, 4]
    assert tail.poll() == []
