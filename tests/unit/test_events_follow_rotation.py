"""`agentd events -f` (FileStore.follow): the events written to the live journal after the backlog was read, and
before it rotated, are followed too. Seen as a failure of
`tests/integration/test_events.py::test_follow_prints_new_events_across_rotations` under load (event 20 missing): the
follower opened the journal by name after the backlog's read; when it had rotated in between, it started at the
new file and the end of the old one (now `events.jsonl.1`) was never printed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentd import config as config_mod
from agentd.store.file.store import FileStore


def line(n: int) -> str:
    event = {"time": f"2026-12-03T20:00:{n:02d}.000+00:00", "event": "note", "role": "builder", "message": f"e{n}"}
    return json.dumps(event) + "\n"


def store_for(root: Path) -> FileStore:
    (root / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n')
    return FileStore(config_mod.load(root=root, environ={}))


def test_events_written_before_a_rotation_that_follows_the_backlog_are_followed(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    journal = Path(store.journal_path)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(line(1) + line(2))
    backlog, live = store.follow()
    assert [e.message for e in backlog] == ["e1", "e2"]
    with journal.open("a") as f:
        f.write(line(3))  # after the backlog's read, before the rotation: now only in events.jsonl.1
    os.replace(journal, f"{journal}.1")
    journal.write_text(line(4))
    for want in ("e3", "e4"):  # one at a time: a lost event shows as the next one, never as a wait for ever
        assert next(live).message == want
    with journal.open("a") as f:
        f.write(line(5))
    assert next(live).message == "e5"


def test_without_a_rotation_the_follower_goes_on_after_the_backlog_and_a_torn_last_line(tmp_path: Path) -> None:
    """The backlog reads complete lines only: an event being written (no newline yet) is followed once whole."""
    store = store_for(tmp_path)
    journal = Path(store.journal_path)
    journal.parent.mkdir(parents=True, exist_ok=True)
    third = line(3)
    journal.write_text(line(1) + line(2) + third[:10])
    backlog, live = store.follow()
    assert [e.message for e in backlog] == ["e1", "e2"]
    with journal.open("a") as f:
        f.write(third[10:] + line(4))
    for want in ("e3", "e4"):
        assert next(live).message == want
