"""A big queue's write makes the state its next read starts from while the temporary file is synced."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agentd.store.file import queuefile, writeback
from agentd.store.file.incremental import Decoder
from agentd.store.file.queuefile import TMP_MARK, QueueStore

DEADLINE = 10.0  # s: how long the sync of the temporary file waits for the parse of the new text


def big_queue(path: Path) -> None:
    """Over 1 MiB: 3,000 done tasks of ~400 bytes, then 5 ready ones."""
    notes = "Follow the plan; keep the public API stable; add tests for every acceptance criterion " * 4
    done = [{"id": f"F{n:05d}", "title": "t", "status": "done", "notes": notes} for n in range(3000)]
    ready = [{"id": f"T{n}", "title": "t", "status": "ready"} for n in range(5)]
    path.write_text(json.dumps({"tasks": [*done, *ready]}, indent=2) + "\n")
    assert path.stat().st_size >= 1 << 20


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The real fsync and parse, watched: the sync of a temporary file waits (up to DEADLINE) for the parse of a
    big text by another thread, and says which thread it ran in and whether that parse came meanwhile; the sync of a
    small one only says which thread it ran in."""
    parsed = threading.Event()  # (cleared by the test before its write)
    seen: dict[str, Any] = {"synced_by": [], "parsed_meanwhile": [], "parsed": parsed, "decoded_when_written": []}
    real_fsync, real_decode, real_text_of = os.fsync, Decoder.decode, QueueStore._decode
    writer = threading.get_ident()  # (the test's thread: it writes)

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(TMP_MARK):
            seen["synced_by"].append(threading.get_ident() == writer)
            if os.fstat(fd).st_size >= 1 << 20:
                seen["parsed_meanwhile"].append(parsed.wait(DEADLINE))
        real_fsync(fd)

    def decode(self: Decoder, text: str, *args: Any, **kwargs: Any) -> Any:
        if len(text) >= 1 << 20 and threading.get_ident() == writer:
            parsed.set()
        return real_decode(self, text, *args, **kwargs)

    def text_of(self: QueueStore, raw: bytes) -> tuple[str, str]:
        if len(raw) >= 1 << 20 and threading.get_ident() == writer:  # (is it in a temporary file already?)
            folder = Path(self.file).parent
            seen["decoded_when_written"].append(
                any(path.read_bytes() == raw for path in folder.iterdir() if path.name.endswith(TMP_MARK))
            )
        return real_text_of(self, raw)

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    monkeypatch.setattr(QueueStore, "_decode", text_of)
    monkeypatch.setattr(Decoder, "decode", decode)
    return seen


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="tells the temporary file by /proc/self/fd")
def test_the_next_read_is_made_while_the_temporary_file_is_synced(tmp_path: Path, observed: dict[str, Any]) -> None:
    """The temporary file of a big queue is synced by a thread of its own while the writing thread decodes, parses
    and checks the new text for its next read (it used to decode first, then sync, then parse); the write stands as
    before, and the next read is the file as written, found unchanged without a parse."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    big_queue(queue)
    store = QueueStore(queue)
    store.read()
    observed["parsed"].clear()
    observed["decoded_when_written"].clear()
    store.edit(lambda draft: draft.task("T0").update(status="in_progress"))
    assert observed["synced_by"] == [False]
    assert observed["parsed_meanwhile"] == [True]
    assert observed["decoded_when_written"] == [True]  # (its text decoded from the bytes written, not before)
    read = store.read()
    assert read.raw == queue.read_bytes()
    assert read.data == QueueStore(queue).read().data
    assert [task.status for task in read.tasks if task.id.startswith("T")] == ["in_progress", *["ready"] * 4]


def test_a_small_queue_is_synced_as_before(tmp_path: Path, observed: dict[str, Any]) -> None:
    """Under 1 MiB the sync is the writing thread's own, before anything else (no thread for a small file)."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": [{"id": "T0", "title": "t", "status": "ready"}]}, indent=2) + "\n")
    store = QueueStore(queue)
    store.edit(lambda draft: draft.task("T0").update(status="in_progress"))
    assert observed["synced_by"] == [True]
    assert observed["parsed_meanwhile"] == []
    assert json.loads(queue.read_text())["tasks"][0]["status"] == "in_progress"


OUTSIDE_SAVE = """
import os, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
edited = text.replace('"id": "T1",\\n      "title": "t"', '"id": "T1",\\n      "title": "saved outside"', 1)
assert edited != text
with open(path + ".outside", "w", encoding="utf-8") as handle:
    handle.write(edited)
    handle.flush()
    os.fsync(handle.fileno())
os.replace(path + ".outside", path)
"""


def test_an_outside_save_during_the_sync_is_kept_and_the_next_read_is_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process saves the big queue (without the lock, as an editor does) after this write's temporary file
    was synced and its next read's state made from it, before the rename (crash-point hook queue.after-temp-write):
    the write does not stand, the change is applied again to the saved file, both changes are in the queue, and
    every later read -- tasks, views, findings -- is that of the file as it is, as a fresh store reads it."""
    import subprocess
    import sys

    from agentd import faults

    queue = tmp_path / "SPRINT_QUEUE.json"
    big_queue(queue)
    store = QueueStore(queue)
    store.read()
    saves: list[int] = []
    overlapped: list[bool] = []  # (the sync and the next read's state made together: the window this test is about)
    real = queuefile._SYNCER.fsync_meanwhile
    monkeypatch.setattr(queuefile._SYNCER, "fsync_meanwhile", lambda *a: overlapped.append(True) or real(*a))

    def outside_save() -> None:
        if not saves:
            saves.append(subprocess.run([sys.executable, "-c", OUTSIDE_SAVE, str(queue)], check=True).returncode)

    faults.on("queue.after-temp-write", outside_save)
    try:
        store.edit(lambda draft: draft.task("T0").update(status="in_progress"))
    finally:
        faults.on("queue.after-temp-write", None)
    assert saves == [0] and len(overlapped) == 2  # (the write that did not stand, then the one that did)
    on_disk = json.loads(queue.read_text())["tasks"]
    assert [(t["status"], t["title"]) for t in on_disk if t["id"] in ("T0", "T1")] == [
        ("in_progress", "t"),
        ("ready", "saved outside"),
    ]
    for _ in range(2):  # (the read after the write, then the one after a second write)
        read, fresh = store.read(), QueueStore(queue).read()
        assert read.raw == queue.read_bytes()
        assert read.data == fresh.data
        assert read.tasks == fresh.tasks
        assert (read.errors, read.warnings) == (fresh.errors, fresh.warnings)
        store.edit(lambda draft: draft.task("T2").update(status="in_progress"))
    statuses = {
        t["id"]: (t["status"], t["title"])
        for t in json.loads(queue.read_text())["tasks"]
        if t["id"] in ("T0", "T1", "T2")
    }
    assert statuses == {"T0": ("in_progress", "t"), "T1": ("ready", "saved outside"), "T2": ("in_progress", "t")}


def _small_queue(path: Path) -> None:
    tasks = [{"id": f"T{n}", "title": "t", "status": "ready"} for n in range(3)]
    path.write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")


def _watch_small_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each write of a small queue does, in order, with the real calls: ``start`` (its write-out started),
    ``prepare`` (the next read's state made, by the writing thread), ``fsync`` or ``fsync by the sync thread`` (the
    temporary file synced)."""
    writer = threading.get_ident()
    steps: list[str] = []
    real_fsync, real_prepare, real_start = os.fsync, QueueStore._prepare, writeback.start

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(TMP_MARK):
            steps.append("fsync" if threading.get_ident() == writer else "fsync by the sync thread")
        real_fsync(fd)

    def prepare(self: QueueStore, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == writer:
            steps.append("prepare")
        return real_prepare(self, *args, **kwargs)

    def start(fd: int) -> bool:
        started = real_start(fd)
        steps.append("start" if started else "no start")
        return started

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    monkeypatch.setattr(QueueStore, "_prepare", prepare)
    monkeypatch.setattr(writeback, "start", start)
    return steps


def _two_writes(queue: Path) -> None:
    _small_queue(queue)
    store = QueueStore(queue)
    for status in ("in_progress", "done"):
        store.edit(lambda draft, status=status: draft.task("T0").update(status=status))
    read, fresh = store.read(), QueueStore(queue).read()
    assert read.raw == queue.read_bytes()
    assert read.data == fresh.data and read.tasks == fresh.tasks
    assert read.tasks[0].status == "done"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_a_store_that_wrote_before_starts_a_small_queues_write_out_and_makes_the_next_read_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process's first write syncs, then makes the next read's state (a command that writes once does nothing
    more). From its second write on (a daemon's), the temporary file's write-out is started first, the next read's
    state made while the disk works, and the file synced last, all in the writing thread: no hand-over to the sync
    thread. The writes stand and the next read is the file as written."""
    steps = _watch_small_writes(monkeypatch)
    _two_writes(tmp_path / "SPRINT_QUEUE.json")
    assert steps == ["fsync", "prepare", "start", "prepare", "fsync"]


def test_where_no_write_out_can_be_started_the_sync_thread_syncs_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``sync_file_range`` (not Linux, a sandbox refusing it: the module then stops asking), a second write
    of a small queue hands its sync to the sync thread while the writer makes the next read's state, as before."""
    steps = _watch_small_writes(monkeypatch)
    monkeypatch.setattr(writeback, "_start", False)  # (as after a refusal)
    _two_writes(tmp_path / "SPRINT_QUEUE.json")
    assert steps[:3] == ["fsync", "prepare", "no start"]
    assert sorted(steps[3:]) == ["fsync by the sync thread", "prepare"]  # (side by side: in either order)


@pytest.mark.parametrize("by", ["the sync thread", "the writer, its write-out started"])
def test_a_failed_sync_of_a_later_write_leaves_the_queue_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """The fsync of a store's second write fails (EIO), in the sync thread or in the writer after its write-out was
    started: the write does not stand, the queue is byte for byte as it was, no temporary file is left, and the next
    write (its sync good again) stands."""
    import errno

    from agentd.errors import FileAccessError

    queue = tmp_path / "SPRINT_QUEUE.json"
    _small_queue(queue)
    writer = threading.get_ident()
    real_fsync = os.fsync
    failing = [False]
    synced_by: list[bool] = []  # (in the writer's thread)

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(TMP_MARK):
            synced_by.append(threading.get_ident() == writer)
            if failing[0]:
                raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    if by == "the sync thread":
        monkeypatch.setattr(writeback, "_start", False)  # (no write-out to be started: see the test above)
    store = QueueStore(queue)
    store.edit(lambda draft: draft.task("T0").update(status="in_progress"))  # (its first write: its own thread)
    before = queue.read_bytes()
    failing[0] = True
    with pytest.raises(FileAccessError, match="cannot write"):
        store.edit(lambda draft: draft.task("T1").update(status="in_progress"))
    assert synced_by[1] is (by != "the sync thread")
    assert queue.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(TMP_MARK)] == []
    failing[0] = False
    store.edit(lambda draft: draft.task("T1").update(status="done"))
    assert [task.status for task in store.read().tasks] == ["in_progress", "done", "ready"]
    assert [task.status for task in QueueStore(queue).read().tasks] == ["in_progress", "done", "ready"]


def test_the_sync_thread_is_in_its_fsync_before_the_writer_makes_the_next_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer hands the temporary file over and waits until the sync thread is in its fsync before it makes the
    next read's state: else the thread would wait for the interpreter the writer holds (up to the 5 ms switch
    interval, a big queue's whole parse) and the fsync would come after that work rather than beside it."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    _small_queue(queue)
    order: list[str] = []
    real_fsync, real_prepare = os.fsync, QueueStore._prepare

    def fsync(fd: int) -> None:
        order.append("fsync")  # (first: nothing before it lets go of the interpreter)
        real_fsync(fd)

    def prepare(self: QueueStore, *args: Any, **kwargs: Any) -> Any:
        order.append("prepare")
        return real_prepare(self, *args, **kwargs)

    store = QueueStore(queue)
    store.edit(lambda draft: draft.task("T0").update(status="in_progress"))  # (its first write: its own thread)
    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    monkeypatch.setattr(QueueStore, "_prepare", prepare)
    monkeypatch.setattr(writeback, "_start", False)  # (the sync thread's path: no write-out to be started)
    for status in ("done", "blocked", "ready"):
        order.clear()
        store.edit(lambda draft, status=status: draft.task("T1").update(status=status))
        assert order[:2] == ["fsync", "prepare"], order
