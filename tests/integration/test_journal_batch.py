"""The journal's batches: a daemon's pass appends its lines together, in the order they were emitted (real files,
real daemons driven by ``tick()``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.core.clock import FakeClock
from agentd.run.daemon import Daemon
from agentd.store.file.journal import Journal
from tests.helpers.daemons import events, task, wait_for, write_config, write_queue

QUIET = logging.getLogger("tests.journal-batch")
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / ".agentd" / "events.jsonl", FakeClock(), "builder", QUIET)


def test_a_batch_appends_its_events_at_its_end_in_order(tmp_path: Path) -> None:
    """Events emitted in a batch reach the file together when it ends, in the order emitted; nested batches join it."""
    journal = _journal(tmp_path)
    path = tmp_path / ".agentd" / "events.jsonl"
    journal.emit("first", "before the batch")
    with journal.batch():
        journal.emit("a", "one")
        with journal.batch():
            journal.emit("b", "two")
        journal.emit("c", "three")
        assert [e["event"] for e in events(path)] == ["first"]
    assert [e["event"] for e in events(path)] == ["first", "a", "b", "c"]


def test_a_batch_is_written_even_when_its_block_raises(tmp_path: Path) -> None:
    """A pass that fails half-way still appends the events it emitted."""
    journal = _journal(tmp_path)

    def failing_pass() -> None:
        with journal.batch():
            journal.emit("a", "one")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_pass()
    assert [e["event"] for e in events(tmp_path / ".agentd" / "events.jsonl")] == ["a"]


def test_another_threads_event_during_a_batch_comes_after_the_held_ones(tmp_path: Path) -> None:
    """The heartbeat thread's event during a pass's batch: the held events are appended first (emit order kept)."""
    journal = _journal(tmp_path)
    path = tmp_path / ".agentd" / "events.jsonl"
    with journal.batch():
        journal.emit("held", "emitted first, in the batch")
        other = threading.Thread(target=lambda: journal.emit("other", "another thread's, emitted second"))
        other.start()
        other.join(60)
        journal.emit("after", "emitted third, in the batch")
    assert [e["event"] for e in events(path)] == ["held", "other", "after"]


@pytest.mark.slow
def test_a_pass_appends_its_ends_in_one_write_and_each_start_in_one(tmp_path: Path) -> None:
    """WIP 3 over 6 tasks: the pass that records 3 ends and claims 3 appends to the journal 5 times, not 13: the ends,
    each start, then the ended runs' releases (after the starts: the new tasks run meanwhile)."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task(f"T{n}") for n in range(6)], {"builder": 3})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert len(daemon.tick().claimed) == 3
    wait_for(lambda: daemon._ended.qsize() == 3, 60, "the first three runs' ends to be reported")
    appends: list[bytes] = []
    journal = daemon.journal
    assert isinstance(journal, Journal)
    real = journal._append

    def counted(data: bytes) -> None:
        appends.append(data)
        real(data)

    journal._append = counted  # type: ignore[method-assign]
    daemon.wake("test")
    report = daemon.tick()
    assert len(report.finished) == 3 and len(report.claimed) == 3, report
    kinds = [[line.split(b'"event": "')[1].split(b'"')[0].decode() for line in data.splitlines()] for data in appends]
    assert kinds[0] == ["wip-room"] + ["finished"] * 3, kinds
    assert kinds[1:4] == [["claimed", "started"]] * 3, kinds
    assert kinds[4:] == [["released"] * 3], kinds
