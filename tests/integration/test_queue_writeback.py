"""A big queue's temporary file is on its way to the disk before its fsync: the fsync waits for what is left.

Observed with the kernel's own page cache counters (``cachestat``, Linux 6.5+) on real files: right after a plain
write every page of a file is dirty until the fsync starts writing; after :func:`agentd.store.file.writeback.write_all`
none is (each chunk's write-out was started as soon as it was written).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from agentd.store.file import queuefile, writeback
from agentd.store.file.queuefile import TMP_MARK, QueueStore

_CACHESTAT = 451  # the system call's number (one number on every architecture but alpha, as for all since 424)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


_LIBC = ctypes.CDLL(None, use_errno=True)


def pages(fd: int) -> tuple[int, int]:
    """(pages of the file in the page cache, how many of them are dirty: not yet on their way to the disk)."""
    whole, stat = _Range(0, 0), _Stat()
    if _LIBC.syscall(_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return stat.cache, stat.dirty


def _why_not(folder: Path) -> str | None:
    """Why dirty pages cannot be watched in ``folder`` (None: they can)."""
    probe = folder / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 8192)
        try:
            _, dirty = pages(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM):
                return f"needs the cachestat system call (Linux 6.5+) to count dirty pages: {exc.strerror}"
            raise
        if not dirty:
            return f"{folder}'s file system keeps no dirty pages to count (tmpfs?): it writes nothing out"
        start = _LIBC.sync_file_range
        start.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
        if start(fd, 0, 0, 2) != 0 or pages(fd)[1]:
            return f"{folder}'s file system does not start writing a file out when asked (sync_file_range)"
        return None
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    reason = _why_not(tmp_path)
    if reason is not None:
        pytest.skip(reason)
    return tmp_path


def big_queue(path: Path) -> None:
    """About 3 MB: 6,000 done tasks of ~500 bytes, then 5 ready ones."""
    notes = "Follow the plan; keep the public API stable; add tests for every acceptance criterion " * 5
    done = [{"id": f"F{n:05d}", "title": "t", "status": "done", "notes": notes} for n in range(6000)]
    ready = [{"id": f"T{n}", "title": "t", "status": "ready"} for n in range(5)]
    path.write_text(json.dumps({"tasks": [*done, *ready]}, indent=2) + "\n")
    assert path.stat().st_size >= 3 * writeback.CHUNK


def test_a_big_queue_s_temporary_file_has_no_dirty_page_left_when_its_fsync_begins(
    disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction's fsync of the temporary file (the real one, watched) finds all of its pages already on their
    way to the disk; the write stands as ever."""
    queue = disk / "SPRINT_QUEUE.json"
    big_queue(queue)
    store = QueueStore(queue)
    store.read()
    seen: list[tuple[int, int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(TMP_MARK):
            seen.append((os.fstat(fd).st_size, *pages(fd)))
        real_fsync(fd)

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    store.edit(lambda draft: draft.task("T0").update(status="in_progress"))
    assert len(seen) == 1
    size, cached, dirty = seen[0]
    assert size >= 3 * writeback.CHUNK
    assert cached * os.sysconf("SC_PAGE_SIZE") >= size // 2  # (its pages are there: what is counted is theirs)
    assert dirty == 0
    assert json.loads(queue.read_text())["tasks"][-5]["status"] == "in_progress"


def test_every_byte_is_written_and_the_pages_are_on_their_way(disk: Path) -> None:
    """A payload of a few chunks and a bit: the file holds exactly it, and no page of it is left dirty."""
    payload = os.urandom(3 * writeback.CHUNK + 12345)
    fd = os.open(disk / "big", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        writeback.write_all(fd, payload)
        cached, dirty = pages(fd)
        assert cached > 0
        assert dirty == 0
    finally:
        os.close(fd)
    assert (disk / "big").read_bytes() == payload


def test_a_payload_below_a_chunk_is_one_plain_write_left_to_the_fsync(disk: Path) -> None:
    """Below :data:`CHUNK` nothing is started early (a small queue's fsync writes it all at once anyway)."""
    payload = os.urandom(writeback.CHUNK // 2)
    fd = os.open(disk / "small", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        writeback.write_all(fd, payload)
        cached, dirty = pages(fd)
        assert dirty == cached > 0
    finally:
        os.close(fd)
    assert (disk / "small").read_bytes() == payload


def test_where_the_write_out_is_refused_the_rest_is_written_plainly_and_it_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipe refuses ``sync_file_range`` (ESPIPE): every byte still arrives, in order, and the process stops
    asking for it."""
    monkeypatch.setattr(writeback, "_start", None)  # (looked up afresh, and restored after the test)
    payload = os.urandom(2 * writeback.CHUNK + 777)
    read_end, write_end = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            received.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        writeback.write_all(write_end, payload)
    finally:
        os.close(write_end)
        reader.join(timeout=60)
        os.close(read_end)
    assert b"".join(received) == payload
    assert writeback._start is False


def test_without_sync_file_range_it_writes_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No such call to be had (not glibc, or not Linux): the whole payload is written, nothing else is tried."""

    def no_call() -> Any:
        writeback._start = False
        return False

    monkeypatch.setattr(writeback, "_start", None)
    monkeypatch.setattr(writeback, "_lookup", no_call)
    payload = os.urandom(writeback.CHUNK + 1)
    fd = os.open(tmp_path / "plain", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        writeback.write_all(fd, payload)
    finally:
        os.close(fd)
    assert (tmp_path / "plain").read_bytes() == payload
    assert writeback._start is False
