"""Tests for agentd.sidelock: the queue lock (an flock through a descriptor kept open, read-only)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agentd.store.file.sidelock import LockTimedOut, SidecarLock
from tests.helpers.daemons import lock_held

HOLD = (
    "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f,fcntl.LOCK_EX); print('held',flush=True);"
    " sys.stdin.read()"
)


def test_another_process_holding_the_flock_makes_it_time_out(tmp_path: Path) -> None:
    path = tmp_path / "q.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        lock = SidecarLock(path, timeout=0.2)
        with pytest.raises(LockTimedOut):
            lock.acquire()
        assert holder.stdin is not None
        holder.stdin.close()  # the holder exits: its flock goes with it
        holder.wait()
        with lock:
            pass
    finally:
        holder.kill()
        holder.wait()


def test_reentrant_in_a_thread_exclusive_between_threads(tmp_path: Path) -> None:
    lock = SidecarLock(tmp_path / "q.lock", timeout=0.2)
    other = SidecarLock(tmp_path / "q.lock", timeout=0.2)  # a second store in the same process
    outcome: list[str] = []

    def contend(which: SidecarLock) -> None:
        try:
            which.acquire()
        except LockTimedOut:
            outcome.append("timed out")
        else:
            outcome.append("acquired")
            which.release()

    with lock, lock:  # nested
        for which in (lock, other):
            thread = threading.Thread(target=contend, args=(which,))
            thread.start()
            thread.join()
    assert outcome == ["timed out", "timed out"]
    with pytest.raises(RuntimeError):
        lock.release()
    contend(other)
    assert outcome[-1] == "acquired"


def test_a_deleted_lock_file_is_made_again_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "q.lock"
    first = SidecarLock(path, timeout=1)
    with first:
        pass
    path.unlink()  # someone cleans up; the first lock's descriptor now names a deleted file
    with first:
        assert path.exists()
        with pytest.raises(LockTimedOut):
            SidecarLock(path, timeout=0.1).acquire()  # the new file is the one held


class _Recorder(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events: list[FileSystemEvent] = []
        self.barrier = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if str(event.src_path).endswith("barrier"):
            self.barrier.set()
        else:
            self.events.append(event)


def test_taking_and_releasing_makes_no_file_events(tmp_path: Path) -> None:
    """Every daemon watches the queue's folder: the lock beside the queue must not wake them."""
    path = tmp_path / "q.lock"
    lock = SidecarLock(path, timeout=1)
    with lock:
        pass  # the file is created once
    recorder = _Recorder()
    observer = Observer()
    observer.schedule(recorder, str(tmp_path), recursive=False)
    observer.start()
    try:
        for _ in range(50):
            with lock:
                pass
        (tmp_path / "barrier").write_text("")  # events arrive in order: once this one is seen, so were the lock's
        assert recorder.barrier.wait(10)
    finally:
        observer.stop()
        observer.join()
    about_lock = [e for e in recorder.events if Path(str(e.src_path)) == path]
    assert [e.event_type for e in about_lock if e.event_type not in ("opened", "closed_no_write")] == []


def test_close_leaves_a_held_lock_alone_whichever_thread_holds_it(tmp_path: Path) -> None:
    """A store closes its lock's descriptor at the end of a daemon's run: never while a thread holds the lock (its
    flock would go with the descriptor); once free, it closes, and the next acquire opens it again."""
    path = tmp_path / "q.lock"
    lock = SidecarLock(path, timeout=5)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        fd = lock._fd
        lock.close()  # (another thread holds it)
        assert lock._fd == fd is not None
        assert lock_held(path)  # (the flock is still held: a probe through another open file is refused)
    finally:
        release.set()
        holder.join(10)
    with lock:
        lock.close()  # (this thread holds it)
        assert lock._fd is not None
    lock.close()
    assert lock._fd is None and not lock_held(path)
    with lock:
        assert lock._fd is not None and lock_held(path)
