"""The file events a daemon waits on (real inotify watches through watchdog): a queue replaced or written in place
wakes it; writes to other files beside the queue never reach its handler."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agentd.store.file import watch
from agentd.store.file.watch import Watcher
from tests.helpers.daemons import wait_for


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every event that reaches the watch's handler: (type, file name)."""
    got: list[tuple[str, str]] = []
    real = watch._Handler.on_any_event

    def recorded(self: watch._Handler, event: watch.FileSystemEvent) -> None:
        got.append((event.event_type, os.path.basename(os.fsdecode(event.src_path))))
        real(self, event)

    monkeypatch.setattr(watch._Handler, "on_any_event", recorded)
    return got


def _watching(root: Path, woken: list[str]) -> Watcher:
    queue = root / "SPRINT_QUEUE.json"
    queue.write_text('{"tasks": []}\n')
    (root / ".leases").mkdir()
    lock = threading.Lock()

    def wake(reason: str) -> None:
        with lock:
            woken.append(reason)

    watcher = Watcher(queue, root / ".leases", wake, root / ".agentd" / "state.json")
    assert watcher.start()
    return watcher


def test_a_queue_replaced_or_written_in_place_wakes_the_daemon(tmp_path: Path, seen: list[tuple[str, str]]) -> None:
    """Replaced by a rename (as agentd writes it) or written in place and closed (as an editor may): a wake-up each."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        temp = tmp_path / ".SPRINT_QUEUE.json.tmp"
        temp.write_text('{"tasks": [], "n": 1}\n')
        os.replace(temp, tmp_path / "SPRINT_QUEUE.json")
        wait_for(lambda: woken.count("queue") >= 1, 60, "the rename to wake the daemon")
        with open(tmp_path / "SPRINT_QUEUE.json", "w") as handle:
            handle.write('{"tasks": [], "n": 2}\n')
        wait_for(lambda: woken.count("queue") >= 2, 60, "the in-place write to wake the daemon")
    finally:
        watcher.stop()


def test_writes_to_other_files_beside_the_queue_reach_no_handler(tmp_path: Path, seen: list[tuple[str, str]]) -> None:
    """200 writes to a log beside the queue (one descriptor, never closed meanwhile): none is an event the watch's
    threads handle (each cost ~0.2 ms of the daemon's CPU); the queue's replacement after them is seen."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        fd = os.open(tmp_path / "daemon.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for n in range(200):
                os.write(fd, b"a log line %d\n" % n)
            temp = tmp_path / ".SPRINT_QUEUE.json.tmp"
            temp.write_text('{"tasks": [], "n": 1}\n')
            os.replace(temp, tmp_path / "SPRINT_QUEUE.json")
            wait_for(lambda: "queue" in woken, 60, "the queue's replacement to wake the daemon")
        finally:
            os.close(fd)
        about_log = [event for event in seen if event[1] == "daemon.err"]
        assert len(about_log) <= 1, about_log  # (its creation at most, when the state file shares the folder)
    finally:
        watcher.stop()
