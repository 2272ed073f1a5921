"""Lease files made ahead (LeaseDir.prepare): unnamed files a claim locks, writes and then names, so that the claim's
transaction makes no inode. Real files, real locks, a real daemon; where a branch needs a failure the machine does not
have (no /proc), that one call is made to fail."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run.daemon import Daemon
from agentd.store.file import leases as leases_mod
from agentd.store.file.leases import LeaseDir, new_record
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "O_TMPFILE"), reason="needs Linux's O_TMPFILE and /proc"
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)
GATED = 'if [ "$AGENTD_TASK_ID" = A ]; then while [ ! -e gate ]; do sleep 0.02; done; fi'
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["sh", "-c", GATED]}


def record(task_id: str = "T1", token: int = 1) -> leases_mod.LeaseRecord:
    return new_record(task_id, token, "builder", now=NOW, ttl=60, heartbeat=10, attempt=1)


def made_ahead(folder: LeaseDir) -> list[int]:
    """The inodes of the files the folder holds ready."""
    return [os.fstat(fd).st_ino for fd in folder._prepared]


def locked_elsewhere(path: Path) -> bool:
    """Whether another open file description is refused the lock (as a peer's would be)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[LeaseDir]:
    made = LeaseDir(tmp_path / ".leases", tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_a_claim_names_a_file_made_ahead_and_it_appears_locked_and_whole(folder: LeaseDir, tmp_path: Path) -> None:
    folder.prepare(2)
    ahead = made_ahead(folder)
    assert len(ahead) == 2
    assert sorted(os.listdir(tmp_path / ".leases")) == [], "a file made ahead has no name"
    held = folder.acquire(record())
    assert held is not None
    path = tmp_path / ".leases" / "T1.json"
    assert os.stat(path).st_ino in ahead and len(folder._prepared) == 1
    assert (os.stat(path).st_dev, os.stat(path).st_ino) == held.inode
    assert json.loads(path.read_bytes())["token"] == 1
    assert locked_elsewhere(path)
    seen = folder.observe("T1")
    assert seen is not None and seen.locked is True and seen.token == 1
    assert folder.acquire(record(token=2)) is None  # (exclusive, as ever: the name exists)
    held.release()
    assert not path.exists() and folder.observe("T1") is None


def test_a_file_made_ahead_is_never_named_over_an_existing_lease(folder: LeaseDir, tmp_path: Path) -> None:
    peer = LeaseDir(tmp_path / ".leases", tmp_path)
    theirs = peer.acquire(record(token=7))
    assert theirs is not None
    path = tmp_path / ".leases" / "T1.json"
    before = (os.stat(path).st_ino, path.read_bytes())
    folder.prepare(1)
    assert folder.acquire(record(token=8)) is None
    assert (os.stat(path).st_ino, path.read_bytes()) == before
    assert folder._prepared == [], "the file written for the refused claim is dropped"
    theirs.release()
    peer.close()


def test_a_heartbeat_and_an_inheriting_child_work_on_a_lease_made_ahead(folder: LeaseDir, tmp_path: Path) -> None:
    """The file made ahead is an ordinary lease once named: rewritten in place by a heartbeat, its lock held by a
    child that inherited the descriptor after the daemon's copy is closed."""
    folder.prepare(1)
    held = folder.acquire(record())
    assert held is not None
    later = datetime(2026, 5, 1, 0, 0, 42, tzinfo=UTC)
    assert held.renew(later) is True
    path = tmp_path / ".leases" / "T1.json"
    assert datetime.fromisoformat(json.loads(path.read_bytes())["heartbeat_at"]) == later
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child keeps the inherited descriptor until the pipe closes
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    os.close(held.fd)
    held.fd = -1
    assert locked_elsewhere(path)
    os.close(w)
    os.waitpid(pid, 0)
    assert not locked_elsewhere(path)


def test_where_the_made_file_cannot_be_named_claims_create_their_files_by_name(
    folder: LeaseDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /proc to name a file by its descriptor (a container without it): the claim creates its file by name, and
    the folder makes no more files ahead."""
    folder.prepare(2)
    ahead = made_ahead(folder)
    kept = [os.dup(fd) for fd in folder._prepared]  # (their inodes stay, so none of their numbers comes back)

    def no_proc(*_args: object, **_kwargs: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/self/fd")

    monkeypatch.setattr(os, "link", no_proc)
    held = folder.acquire(record())
    assert held is not None
    path = tmp_path / ".leases" / "T1.json"
    assert os.stat(path).st_ino not in ahead
    assert locked_elsewhere(path) and json.loads(path.read_bytes())["token"] == 1
    assert folder._prepared == []
    folder.prepare(2)
    assert folder._prepared == []
    for fd in kept:
        os.close(fd)


def test_under_a_low_descriptor_limit_no_file_is_made_ahead(folder: LeaseDir) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        folder.prepare(4)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert folder._prepared == []
    assert folder.acquire(record()) is not None  # (named, as before)


def test_a_forked_child_never_names_its_parents_files(folder: LeaseDir, tmp_path: Path) -> None:
    folder.prepare(1)
    ahead = made_ahead(folder)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            held = folder.acquire(record("C"))
            os.write(w, b"ok" if held is not None else b"none")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 8) == b"ok"
    os.close(r)
    os.waitpid(pid, 0)
    assert os.stat(tmp_path / ".leases" / "C.json").st_ino not in ahead
    assert made_ahead(folder) == ahead, "the parent's file made ahead is still there, unnamed"


def test_a_daemon_makes_its_next_claims_files_after_its_starts(tmp_path: Path) -> None:
    """A's pass claims A and, once A is started, makes one file ahead; the pass that records A claims B with it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B", dependencies=["A"])], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    try:
        assert daemon.tick().claimed == ["A"]
        ahead = made_ahead(daemon.store.leasedir)  # type: ignore[attr-defined]
        assert len(ahead) == 1
        (tmp_path / "gate").touch()
        wait_for(lambda: daemon.tick().claimed == ["B"], 60, "A recorded and B claimed")
        assert os.stat(tmp_path / ".leases" / "B.json").st_ino in ahead
        wait_for(lambda: daemon.tick().finished, 60, "B recorded")
        assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    finally:
        daemon.stop_heartbeats()
        daemon.store.close()
