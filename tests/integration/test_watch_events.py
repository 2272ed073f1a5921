"""The file events a daemon waits on (real inotify watches, real files, real renames): a queue replaced or written in
place wakes it; writes to other files beside the queue never reach its thread; an overflow of the kernel's queue of
events, a watched folder removed, or inotify refused by the kernel's limits leave a daemon that still looks."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentd.store.file import inotify, watch
from agentd.store.file.watch import Watcher
from tests.helpers.daemons import wait_for


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every event that reaches the watch's thread: (mask, file name)."""
    got: list[tuple[int, str]] = []
    real = watch.Watcher._reason

    def recorded(self: Watcher, wd: int, mask: int, name: str) -> str | None:
        got.append((mask, name))
        return real(self, wd, mask, name)

    monkeypatch.setattr(watch.Watcher, "_reason", recorded)
    return got


def _watching(root: Path, woken: list[str]) -> Watcher:
    queue = root / "SPRINT_QUEUE.json"
    queue.write_text('{"tasks": []}\n')
    (root / ".leases").mkdir()
    (root / ".agentd").mkdir()
    lock = threading.Lock()

    def wake(reason: str) -> None:
        with lock:
            woken.append(reason)

    watcher = Watcher(queue, root / ".leases", wake, root / ".agentd" / "state.json")
    assert watcher.start()
    return watcher


def _replace_queue(root: Path, n: int) -> None:
    temp = root / ".SPRINT_QUEUE.json.tmp"
    temp.write_text(f'{{"tasks": [], "n": {n}}}\n')
    os.replace(temp, root / "SPRINT_QUEUE.json")


def test_a_queue_replaced_or_written_in_place_wakes_the_daemon(tmp_path: Path, seen: list[tuple[int, str]]) -> None:
    """Replaced by a rename (as agentd writes it) or written in place and closed (as an editor may): a wake-up each."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        _replace_queue(tmp_path, 1)
        wait_for(lambda: woken.count("queue") >= 1, 60, "the rename to wake the daemon")
        with open(tmp_path / "SPRINT_QUEUE.json", "w") as handle:
            handle.write('{"tasks": [], "n": 2}\n')
        wait_for(lambda: woken.count("queue") >= 2, 60, "the in-place write to wake the daemon")
    finally:
        watcher.stop()


def test_a_pause_and_a_lease_released_wake_the_daemon(tmp_path: Path) -> None:
    """The project's state file replaced by a rename (a pause) and a peer's lease file removed: a wake-up each."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        temp = tmp_path / ".agentd" / ".state.json.tmp"
        temp.write_text('{"paused": true}\n')
        os.replace(temp, tmp_path / ".agentd" / "state.json")
        wait_for(lambda: "state" in woken, 60, "the pause to wake the daemon")
        lease = tmp_path / ".leases" / "T1.json"
        lease.write_text("{}\n")
        wait_for(lambda: "lease" in woken, 60, "a lease file closed to wake the daemon")
        woken.clear()
        lease.unlink()
        wait_for(lambda: "lease" in woken, 60, "a lease file removed to wake the daemon")
    finally:
        watcher.stop()


def test_writes_to_other_files_beside_the_queue_reach_no_handler(tmp_path: Path, seen: list[tuple[int, str]]) -> None:
    """200 writes to a log beside the queue (one descriptor, never closed meanwhile): none is an event the watch's
    thread reads (the kernel filters them out); the queue's replacement after them is seen."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        fd = os.open(tmp_path / "daemon.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for n in range(200):
                os.write(fd, b"a log line %d\n" % n)
            _replace_queue(tmp_path, 1)
            wait_for(lambda: "queue" in woken, 60, "the queue's replacement to wake the daemon")
        finally:
            os.close(fd)
        about_log = [event for event in seen if event[1] == "daemon.err"]
        assert about_log in ([], [(inotify.IN_CLOSE_WRITE, "daemon.err")]), about_log  # (its close at most)
    finally:
        watcher.stop()


def test_the_stop_ends_the_watch_thread_and_closes_its_descriptors(tmp_path: Path) -> None:
    """No thread and no descriptor left once the watch is stopped (a daemon reloading its config starts another)."""
    before = set(os.listdir("/proc/self/fd"))
    watcher = _watching(tmp_path, [])
    assert any(t.name == "agentd-watch" for t in threading.enumerate())
    # Two descriptors, the inotify instance and one eventfd that stops the thread (a pipe would take two): under a low
    # `ulimit -n` a daemon's every descriptor counts (test_task_end's `ulimit -n 12` daemon claims with the watch up).
    assert len(set(os.listdir("/proc/self/fd")) - before) == 2
    watcher.stop()
    assert not [t for t in threading.enumerate() if t.name == "agentd-watch"]
    assert set(os.listdir("/proc/self/fd")) <= before


def test_an_overflow_of_the_kernel_queue_wakes_the_daemon(tmp_path: Path) -> None:
    """More events than the kernel queues (fs.inotify.max_queued_events) while none is read: the events lost show
    as IN_Q_OVERFLOW, which the watch takes for a change (the daemon looks and sees what changed)."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 50_000:
        pytest.skip(f"max_queued_events is {limit}")
    (tmp_path / ".leases").mkdir()
    source = inotify.Inotify()
    try:
        wd = source.add(str(tmp_path / ".leases"), inotify.IN_CLOSE_WRITE)
        for n in range(limit + 10):  # (distinct files: the kernel merges an event equal to the one before)
            with open(tmp_path / ".leases" / f"T{n}.json", "w"):
                pass
        events = []
        while batch := source.read():
            events += batch
        assert len(events) == limit + 1
        overflow = events[-1]
        assert overflow[0] == -1 and overflow[1] & inotify.IN_Q_OVERFLOW
        watcher = Watcher(tmp_path / "SPRINT_QUEUE.json", tmp_path / ".leases", lambda reason: None)
        watcher._folders[wd] = str(tmp_path / ".leases")
        assert watcher._reason(*overflow) == "lease"  # the reason no store takes for its own write
    finally:
        source.close()


def test_a_watched_folder_removed_wakes_the_daemon_once(tmp_path: Path) -> None:
    """The lease folder removed (a person cleaning up): one wake-up, and the watch of that folder is let go."""
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        (tmp_path / ".leases").rmdir()
        wait_for(lambda: "lease" in woken, 60, "the folder's removal to wake the daemon")
        wait_for(lambda: str(tmp_path / ".leases") not in watcher._folders.values(), 60, "the watch to be let go")
        _replace_queue(tmp_path, 1)  # the others still watched
        wait_for(lambda: "queue" in woken, 60, "the queue's replacement to wake the daemon")
    finally:
        watcher.stop()


def test_inotify_refused_by_the_kernel_leaves_polling(tmp_path: Path) -> None:
    """No descriptor left for inotify_init1 (EMFILE, as when fs.inotify.max_user_instances is reached): start() says
    no, once, in one warning, and the process carries on (the daemon polls on its interval)."""
    (tmp_path / ".leases").mkdir()
    probe = f"""
import logging, os, resource, sys
from pathlib import Path
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
from agentd.store.file.watch import Watcher
root = Path({str(tmp_path)!r})
watcher = Watcher(root / "SPRINT_QUEUE.json", root / ".leases", print)
import ctypes, select, threading  # (what start() needs, imported before the descriptors run out)
held = []
resource.setrlimit(resource.RLIMIT_NOFILE, (64, {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}))
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print("started", watcher.start())
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "started False", lines
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "file events unavailable" in warnings[0] and "inotify_init1" in warnings[0], lines


def test_where_inotify_is_missing_watchdog_wakes_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without inotify (another system): the watch falls back to watchdog, which still sees the queue
    replaced and a peer's lease go."""

    def missing() -> None:
        raise inotify.Unavailable("no inotify in the C library (test)")

    monkeypatch.setattr(inotify, "_libc", missing)
    woken: list[str] = []
    watcher = _watching(tmp_path, woken)
    try:
        assert watcher._observer is not None and watcher._inotify is None
        _replace_queue(tmp_path, 1)
        wait_for(lambda: "queue" in woken, 60, "the rename to wake the daemon")
        (tmp_path / ".leases" / "T1.json").write_text("{}\n")
        wait_for(lambda: "lease" in woken, 60, "a lease file closed to wake the daemon")
    finally:
        watcher.stop()
