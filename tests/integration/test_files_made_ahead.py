"""Files made ahead of a daemon's next transaction, so that it makes no inode while it holds the queue lock: lease
files (LeaseDir.prepare), unnamed files a claim locks, writes and then names; the queue's next temporary file
(QueueStore.prepare_write), named by the write. Real files, real locks, a real daemon; where a branch needs a failure
the machine does not have (no /proc), that one call is made to fail."""

from __future__ import annotations

import errno
import json
import os
import resource
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.core.model import index_by_id
from agentd.run.daemon import Daemon
from agentd.store.file import leases as leases_mod
from agentd.store.file.leases import LeaseDir, new_record
from agentd.store.file.queuefile import QueueStore
from tests.conftest import small_queue
from tests.helpers.daemons import lock_held as locked_elsewhere
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
    """A's pass claims A and, once A is started, makes the next pass's files ahead: one lease file and the queue's
    next temporary file. The pass that records A and claims B names both (B's lease, the queue's new version)."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A"), task("B", dependencies=["A"])], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    try:
        assert daemon.tick().claimed == ["A"]
        ahead = made_ahead(daemon.store.leasedir)  # type: ignore[attr-defined]
        assert len(ahead) == 1
        queue_made = daemon.store.queue._made  # type: ignore[attr-defined]
        assert queue_made is not None
        queue_ahead = os.fstat(queue_made[0]).st_ino
        (tmp_path / "gate").touch()
        wait_for(lambda: daemon.tick().claimed == ["B"], 60, "A recorded and B claimed")
        assert os.stat(tmp_path / ".leases" / "B.json").st_ino in ahead
        assert os.stat(tmp_path / "SPRINT_QUEUE.json").st_ino == queue_ahead
        wait_for(lambda: daemon.tick().finished, 60, "B recorded")
        assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    finally:
        daemon.stop_heartbeats()
        daemon.store.close()


def queue_file(tmp_path: Path, mode: int = 0o640) -> Path:
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps(small_queue(), indent=2) + "\n")
    os.chmod(queue, mode)
    return queue


def done_b1(doc: dict[str, object]) -> None:
    index_by_id(doc)["B1"]["status"] = "done"


def test_the_queues_next_version_is_the_file_made_ahead(tmp_path: Path) -> None:
    """The write names the file made ahead and renames it over the queue: the queue's new inode is that file, with
    the queue's mode and the change; no temporary name is left."""
    queue = queue_file(tmp_path)
    store = QueueStore(queue)
    store.prepare_write()
    assert store._made is not None
    made = os.fstat(store._made[0]).st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SPRINT_QUEUE.json"]
    store.transaction(done_b1)
    assert os.stat(queue).st_ino == made and store._made is None
    assert stat.S_IMODE(os.stat(queue).st_mode) == 0o640
    assert index_by_id(json.loads(queue.read_text()))["B1"]["status"] == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SPRINT_QUEUE.json", "SPRINT_QUEUE.json.lock"]
    store.transaction(lambda doc: index_by_id(doc)["B1"].update(status="ready"))  # (none made: one by name)
    assert index_by_id(json.loads(queue.read_text()))["B1"]["status"] == "ready"
    store.close()


def test_where_the_queues_file_made_ahead_cannot_be_named_the_write_makes_one_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = queue_file(tmp_path)
    store = QueueStore(queue)
    store.prepare_write()

    def cross_device(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    store.transaction(done_b1)
    assert index_by_id(json.loads(queue.read_text()))["B1"]["status"] == "done"
    assert store._made is None
    store.prepare_write()
    assert store._made is None, "no file made ahead any more in this process"


def test_a_file_made_ahead_in_a_folder_the_queue_left_is_not_used(tmp_path: Path) -> None:
    """A symlinked queue pointed elsewhere between the file's making and the write: the write goes to the new real
    file's folder, with a file made there, and the one made in the old folder is dropped."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    queue_file(old)
    queue_file(new)
    link = tmp_path / "SPRINT_QUEUE.json"
    link.symlink_to(old / "SPRINT_QUEUE.json")
    store = QueueStore(link)
    store.prepare_write()
    assert store._made is not None and store._made[1] == str(old)
    link.unlink()
    link.symlink_to(new / "SPRINT_QUEUE.json")
    store.transaction(done_b1)
    assert index_by_id(json.loads((new / "SPRINT_QUEUE.json").read_text()))["B1"]["status"] == "done"
    assert index_by_id(json.loads((old / "SPRINT_QUEUE.json").read_text()))["B1"]["status"] != "done"
    assert store._made is None and link.is_symlink()


def test_where_the_file_system_makes_no_unnamed_file_nothing_is_made_ahead_and_all_works_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without O_TMPFILE (open(2) says EOPNOTSUPP; that one call is made to fail here): neither the
    lease folder nor the queue makes files ahead, then or later, and claims and writes make theirs by name."""
    real_open = os.open

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    queue = queue_file(tmp_path)
    store = QueueStore(queue)
    try:
        folder.prepare(2)
        store.prepare_write()
        assert folder._prepared == [] and store._made is None
        assert not folder._unnamed and not store._unnamed, "the refusal is remembered: not asked again"
        held = folder.acquire(record())
        assert held is not None and locked_elsewhere(tmp_path / ".leases" / "T1.json")
        store.transaction(done_b1)
        assert index_by_id(json.loads(queue.read_text()))["B1"]["status"] == "done"
        held.release()
    finally:
        folder.close()
        store.close()
