"""Lease files: exclusive creation, kernel liveness through an inherited descriptor, heartbeats, symlinks refused."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentd import schema
from agentd.errors import LeaseInvalid
from agentd.store.file.leases import Held, LeaseDir, LeaseDirUnsafe, new_record
from tests.helpers.daemons import wait_for

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def record(task_id: str = "T1", token: int = 1) -> object:
    return new_record(task_id, token, "builder", now=NOW, ttl=60, heartbeat=10, attempt=1)


def test_acquire_is_exclusive_and_observed_live(tmp_path: Path) -> None:
    """A second acquire of the same task fails; peers see the lock held, and free once released."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    held = folder.acquire(record())  # type: ignore[arg-type]
    assert held is not None
    assert folder.acquire(record(token=2)) is None  # type: ignore[arg-type]
    seen = folder.observe("T1")
    assert seen is not None and seen.locked is True and seen.token == 1 and seen.role == "builder"
    held.release()
    assert folder.observe("T1") is None
    assert not (tmp_path / ".leases" / "T1.json").exists()


def test_lock_lives_exactly_as_long_as_an_inheriting_child(tmp_path: Path) -> None:
    """The flock stays held by a child that inherited the descriptor after the holder closes its own copy."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    held = folder.acquire(record())  # type: ignore[arg-type]
    assert held is not None
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(held.fd,)
    )
    os.close(held.fd)
    held.fd = -1
    seen = folder.observe("T1")
    assert seen is not None and seen.locked is True
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=10)
    seen = folder.observe("T1")
    assert seen is not None and seen.locked is False
    assert folder.break_free("T1") and folder.observe("T1") is None


def test_heartbeat_rewrites_in_place_and_detects_takeover(tmp_path: Path) -> None:
    """A heartbeat keeps the inode; once the file is broken and re-created, the old holder sees it lost."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    held = folder.acquire(record())  # type: ignore[arg-type]
    assert held is not None
    inode = (tmp_path / ".leases" / "T1.json").stat().st_ino
    assert held.update(datetime(2026, 5, 1, 0, 1, tzinfo=UTC), pgid=4242)
    assert (tmp_path / ".leases" / "T1.json").stat().st_ino == inode
    assert folder.read_record("T1").pgid == 4242  # type: ignore[union-attr]
    folder.break_held("T1")
    other = LeaseDir(tmp_path / ".leases", tmp_path).acquire(record(token=2))  # type: ignore[arg-type]
    assert other is not None
    assert not held.update(datetime(2026, 5, 1, 0, 2, tzinfo=UTC))
    held.release()  # must not remove the new holder's file
    assert folder.read_record("T1").token == 2  # type: ignore[union-attr]
    other.release()


def test_unparsable_lease_is_judged_by_its_lock(tmp_path: Path) -> None:
    """Garbage in a lease file is reported, and its lock alone says whether someone holds it."""
    leases = tmp_path / ".leases"
    leases.mkdir()
    (leases / "T1.json").write_text("{not json")
    folder = LeaseDir(leases, tmp_path)
    seen = folder.observe("T1")
    assert seen is not None and seen.error is not None and seen.locked is False
    handle = open(leases / "T1.json")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)
    assert folder.observe("T1").locked is True  # type: ignore[union-attr]
    assert not folder.break_free("T1")
    handle.close()
    assert folder.break_free("T1")


def test_symlinked_lease_folder_outside_the_project_is_refused(tmp_path: Path) -> None:
    """.leases pointing outside the project is refused, never followed."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / ".leases").symlink_to(outside)
    with pytest.raises(LeaseDirUnsafe, match="outside the project"):
        LeaseDir(project / ".leases", project).observe_all()


def test_symlinked_lease_file_is_not_followed(tmp_path: Path) -> None:
    """A lease file that is a symlink is never opened through the link; breaking it removes only the link."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    leases = tmp_path / ".leases"
    leases.mkdir()
    (leases / "T1.json").symlink_to(target)
    folder = LeaseDir(leases, tmp_path)
    seen = folder.observe("T1")
    assert seen is not None and seen.error is not None and "symlink" in seen.error
    assert folder.acquire(record()) is None  # type: ignore[arg-type]
    assert folder.break_free("T1")
    assert target.read_text() == "keep me" and not (leases / "T1.json").is_symlink()


def test_a_directory_where_a_lease_file_should_be(tmp_path: Path) -> None:
    """An empty directory named like a lease file is reported as free (no holder can hold it) and is cleared."""
    leases = tmp_path / ".leases"
    (leases / "T1.json").mkdir(parents=True)
    folder = LeaseDir(leases, tmp_path)
    seen = folder.observe("T1")
    assert seen is not None and seen.error == "is an empty folder, not a lease file" and seen.locked is False
    assert folder.break_free("T1") and not (leases / "T1.json").exists()


def test_a_directory_with_files_where_a_lease_file_should_be(tmp_path: Path) -> None:
    """A directory with files in it is never deleted: left alone (lock state unknown), break_free says it stays."""
    leases = tmp_path / ".leases"
    (leases / "T1.json").mkdir(parents=True)
    (leases / "T1.json" / "keep").write_text("mine")
    folder = LeaseDir(leases, tmp_path)
    seen = folder.observe("T1")
    assert seen is not None and seen.locked is None and "folder with files in it" in (seen.error or "")
    assert not folder.break_free("T1")
    assert (leases / "T1.json" / "keep").read_text() == "mine"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 200, "a\x00b"])
def test_unsafe_task_ids_never_become_file_names(tmp_path: Path, bad: str) -> None:
    """Ids that are not safe file names are refused before any path is built."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    with pytest.raises(ValueError, match="unsafe task id"):
        folder.file_for(bad)


def test_tokens_are_never_reused_even_below_a_reverted_floor(tmp_path: Path) -> None:
    """The folder's high-water mark keeps tokens growing when the queue's own counter is reverted by hand."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    assert folder.issue_tokens([0, 0]) == [1, 2]
    assert folder.issue_tokens([0]) == [3]  # the queue was reverted: its floor says 0
    assert folder.issue_tokens([10]) == [11]
    assert folder.issue_tokens([]) == []
    assert (tmp_path / ".leases" / ".tokens").read_text() == "11\n"
    assert list(folder.task_ids()) == []


def test_the_token_mark_is_raised_in_place_once_it_exists(tmp_path: Path) -> None:
    """After the first, tokens are issued by rewriting the mark in place (no temporary file, no rename: a rename over
    a file makes ext4 start writing it back, slow on a busy disk); a longer leftover text is cut to the new mark."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    mark = tmp_path / ".leases" / ".tokens"
    assert folder.issue_tokens([0]) == [1]
    inode = mark.stat().st_ino
    assert folder.issue_tokens([0, 0]) == [2, 3]
    assert folder.issue_tokens([99]) == [100]
    assert mark.stat().st_ino == inode and mark.read_text() == "100\n"
    mark.write_text("junk that is no number at all\n")  # (by hand): the floors decide, as when it is missing
    assert folder.issue_tokens([4]) == [5]
    assert mark.stat().st_ino == inode and mark.read_text() == "5\n"
    assert sorted(p.name for p in mark.parent.iterdir()) == [".tokens"]


def _open_on(path: Path) -> int:
    """How many of this process's descriptors are open on ``path``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")
def test_the_token_mark_stays_open_from_one_issue_to_the_next(tmp_path: Path) -> None:
    """The mark's descriptor is kept between issues (no open and close per claim: a close for writing is a file event
    for every daemon watching the lease folder), one descriptor however many issues, closed with the folder."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    mark = tmp_path / ".leases" / ".tokens"
    assert folder.issue_tokens([0]) == [1]  # (created by a rename: opened at the next issue)
    assert folder.issue_tokens([0]) == [2]
    assert _open_on(mark) == 1
    assert folder.issue_tokens([0, 0]) == [3, 4]
    assert _open_on(mark) == 1 and mark.read_text() == "4\n"
    folder.close()
    assert _open_on(mark) == 0


@pytest.mark.parametrize("how", ["renamed over", "removed", "a symlink"])
def test_a_kept_token_mark_replaced_meanwhile_is_never_written_through(tmp_path: Path, how: str) -> None:
    """A mark replaced between two issues (renamed over by hand, removed, made a symlink) is read and written at its
    path, never through the descriptor kept from the file it replaced; the old file is left as it was."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    mark = tmp_path / ".leases" / ".tokens"
    assert folder.issue_tokens([0, 0]) == [1, 2]
    assert folder.issue_tokens([0]) == [3]  # (kept open from here)
    old = tmp_path / "old-mark"
    os.link(mark, old)
    target = tmp_path / "elsewhere"
    target.write_text("41\n")
    if how == "renamed over":
        new = tmp_path / ".leases" / "new"
        new.write_text("50\n")
        os.replace(new, mark)
        expected, floor = [51], 0
    elif how == "removed":
        mark.unlink()
        expected, floor = [8], 7  # a missing mark reads as 0: the floors decide
    else:
        mark.unlink()
        mark.symlink_to(target)
        expected, floor = [8], 7
    assert folder.issue_tokens([floor]) == expected
    assert not mark.is_symlink() and mark.read_text() == f"{expected[0]}\n"
    assert old.read_text() == "3\n" and target.read_text() == "41\n"
    assert folder.issue_tokens([0]) == [expected[0] + 1]
    assert mark.read_text() == f"{expected[0] + 1}\n" and old.read_text() == "3\n"


def test_a_token_mark_that_is_not_a_file_is_replaced_not_followed(tmp_path: Path) -> None:
    """A symlink at the mark's path is never written through: it is replaced by a file of its own (its target left
    as it was), as a missing mark is created."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    (tmp_path / ".leases").mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("41\n")
    (tmp_path / ".leases" / ".tokens").symlink_to(target)
    assert folder.issue_tokens([2]) == [3]
    mark = tmp_path / ".leases" / ".tokens"
    assert not mark.is_symlink() and mark.read_text() == "3\n"
    assert target.read_text() == "41\n"
    assert folder.issue_tokens([0]) == [4]


def test_a_lease_folder_configured_outside_the_project_is_refused(tmp_path: Path) -> None:
    """leases_dir resolving outside the project (an absolute path, a symlinked parent) is refused."""
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared-leases").mkdir()
    with pytest.raises(LeaseDirUnsafe, match="resolves to"):
        LeaseDir(tmp_path / "shared-leases", project).observe_all()
    with pytest.raises(LeaseDirUnsafe, match="resolves to"):
        LeaseDir(tmp_path / "missing-leases", project).acquire(record())  # type: ignore[arg-type]


def test_reading_never_creates_the_lease_folder(tmp_path: Path) -> None:
    """Looking at leases in a project without .leases/ finds none and creates nothing."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    assert folder.observe_all() == {} and folder.observe("T1") is None and folder.read_record("T1") is None
    assert not (tmp_path / ".leases").exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_lease_with_a_non_json_number_does_not_parse(tmp_path: Path, constant: str) -> None:
    """Python's json takes NaN and Infinity; a lease whose ttl is NaN would never run out, so it is refused."""
    leases = tmp_path / ".leases"
    leases.mkdir()
    text = (
        '{"task_id": "T1", "token": 1, "role": "b", "host": "h", "pid": 1, "acquired": "2026-01-01T00:00:00Z", '
        f'"ttl": {constant}}}'
    )
    (leases / "T1.json").write_text(text)
    seen = LeaseDir(leases, tmp_path).observe("T1")
    assert seen is not None and f"{constant} is not a JSON value" in (seen.error or ""), seen


def test_unchanged_lease_bytes_are_validated_once_and_changed_ones_again(tmp_path: Path) -> None:
    """The same lease bytes give back the same record without a second validation; any change is validated anew (an
    invalid rewrite is refused, and a lease of another task id with the same bytes is still refused)."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    raw = record().dumps()  # type: ignore[attr-defined]
    first = folder.parse(raw, "T1")
    assert folder.parse(raw, "T1") is first
    broken = raw.replace(b'"token": 1', b'"token": "one"')
    with pytest.raises(LeaseInvalid, match=r"\$\.token"):
        folder.parse(broken, "T1")
    with pytest.raises(LeaseInvalid, match=r"names task 'T1', not 'T2'"):
        folder.parse(raw, "T2")


def test_a_lease_this_process_writes_validates_and_is_not_validated_again(tmp_path: Path) -> None:
    """What acquire and a heartbeat write validate against the lease schema, and reading them back in the process that
    wrote them gives the record it wrote (no second validation of its own claims and heartbeats)."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    held = folder.acquire(record("T9"))  # type: ignore[arg-type]
    assert held is not None
    for _ in range(2):
        raw = (tmp_path / ".leases" / "T9.json").read_bytes()
        assert schema.first_error(json.loads(raw), "lease") is None
        assert folder.parse(raw, "T9") is held.record
        assert held.update(NOW, boot=12.5, pgid=4242) is True
    held.release()


@contextlib.contextmanager
def watching(root: Path, folder: LeaseDir) -> Iterator[list[str]]:
    """A daemon's watch of ``root``'s queue and of ``folder`` (its own events told apart as a daemon's store tells
    them: ``own`` and ``own_file``), started; yields the reasons it woke for, in order."""
    import threading

    from agentd.store.file.watch import Watcher

    woken: list[str] = []
    lock = threading.Lock()

    def wake(reason: str) -> None:
        with lock:
            woken.append(reason)

    queue = root / "SPRINT_QUEUE.json"
    watcher = Watcher(queue, folder.path, wake, own=folder.own_events, own_file=folder.own_file_events)
    assert watcher.start()
    try:
        yield woken
    finally:
        watcher.stop()


def test_the_events_of_its_own_leases_do_not_wake_the_process_that_holds_them(tmp_path: Path) -> None:
    """A lease this process holds, or released a moment ago: its file events (a supervisor's close, the release's
    unlink) wake nothing; a moment later, or on another lease, they wake the daemon as before (real inotify events,
    read in the order they happened: a peer's event seen means the ones before it were judged)."""
    from agentd.core.clock import FakeClock

    clock = FakeClock(NOW)
    folder = LeaseDir(tmp_path / ".leases", tmp_path, clock=clock)
    folder.path.mkdir(parents=True, exist_ok=True)
    with watching(tmp_path, folder) as woken:
        mine = folder.path / "T1.json"
        held = folder.acquire(record())  # type: ignore[arg-type]
        assert held is not None
        os.close(os.open(mine, os.O_WRONLY))  # its supervisor ended, closing the inherited descriptor
        held.release()
        (folder.path / "T2.json").write_text("{}")  # a peer's
        wait_for(lambda: woken == ["lease"], 60, "a peer's lease to wake the daemon")
        clock.advance(5)
        mine.write_text("{}")  # long after the release: someone else's doing
        wait_for(lambda: woken == ["lease", "lease"], 60, "another process's write of T1 to wake the daemon")


def test_the_folder_is_listed_again_only_when_a_name_in_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """task_ids lists the lease folder again only when its identity changed (a lease made, released, renamed in):
    an unchanged folder costs one fstat; every change right after a look is seen (where timestamps are fine)."""
    from agentd.store.file import stamps

    leases = LeaseDir(tmp_path / ".leases", tmp_path)
    if not stamps.fine_timestamps(tmp_path, ".probe-{}.agentd-tmp"):
        pytest.skip("this file system stamps changes coarsely: the folder is listed every time here")
    held = [leases.acquire(record(f"T{n}", n)) for n in range(3)]
    assert list(leases.task_ids()) == ["T0", "T1", "T2"]
    listings: list[object] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda *a: listings.append(a) or real(*a))
    for _ in range(3):
        assert list(leases.task_ids()) == ["T0", "T1", "T2"]
    assert listings == []
    for step in range(20):  # each change right after a look: seen by the next
        task = f"T{step % 5}"
        existing = {h.record.task_id: h for h in held if h is not None}
        if task in existing:
            existing[task].release()
            held.remove(existing[task])
        else:
            held.append(leases.acquire(record(task, 10 + step)))
        assert list(leases.task_ids()) == sorted(h.record.task_id for h in held if h is not None)
    (tmp_path / ".leases" / "T7.json").write_text("{}")  # made by someone else
    assert "T7" in list(leases.task_ids())
    os.rename(tmp_path / ".leases" / "T7.json", tmp_path / ".leases" / "T8.json")
    assert "T8" in list(leases.task_ids()) and "T7" not in list(leases.task_ids())


# -- spares: released lease files kept for the next claims (LeaseDir.reuses) -------------------------------------------


def _spares(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".spare-"))


def _reusing(tmp_path: Path, task_id: str) -> tuple[Path, LeaseDir, Held, int]:
    """A lease folder that keeps spares, with ``task_id``'s lease held in it (token 1): the folder's path, the
    LeaseDir, the held lease and its inode."""
    leases = tmp_path / ".leases"
    folder = LeaseDir(leases, tmp_path)
    folder.reuses()
    held = folder.acquire(record(task_id, 1))  # type: ignore[arg-type]
    assert held is not None
    return leases, folder, held, os.stat(leases / f"{task_id}.json").st_ino


def test_a_released_lease_file_is_kept_and_reused_by_the_next_claim(tmp_path: Path) -> None:
    """Where the folder keeps spares, a release renames the file away (its path is gone at once) and the next claim
    links the same inode to its own name, whole and locked, with no spare name left; without, a release deletes it."""
    leases, folder, first, inode = _reusing(tmp_path, "A")
    first.release()
    assert not (leases / "A.json").exists() and folder.observe("A") is None
    assert [p.stat().st_ino for p in _spares(leases)] == [inode]
    second = folder.acquire(record("B", 2))  # type: ignore[arg-type]
    assert second is not None
    assert os.stat(leases / "B.json").st_ino == inode and _spares(leases) == []
    seen = folder.observe("B")
    assert seen is not None and seen.locked is True and seen.token == 2
    assert folder.read_record("B") == second.record
    second.release()
    folder.close()  # (a daemon's end: its spares go)
    assert _spares(leases) == [] and sorted(p.name for p in leases.iterdir()) == []

    plain = LeaseDir(tmp_path / "plain", tmp_path)  # (a CLI's, which never prepares: nothing kept)
    held = plain.acquire(record("A", 3))  # type: ignore[arg-type]
    assert held is not None
    held.release()
    assert list((tmp_path / "plain").iterdir()) == []


def test_keeping_a_lease_file_whose_path_went_meanwhile_removes_nothing(tmp_path: Path) -> None:
    """A release whose lease path was removed between its check and its rename (a peer that judged it stale) keeps
    nothing and asks for nothing to be deleted: a lease made there since is not touched."""
    leases, folder, held, _inode = _reusing(tmp_path, "A")
    os.unlink(leases / "A.json")  # (a peer's break_held)
    assert folder.keep_spare("A") is True and _spares(leases) == []
    other = LeaseDir(leases, tmp_path).acquire(record("A", 2))  # type: ignore[arg-type]
    assert other is not None
    held.release()  # (not still ours: the new lease stays)
    seen = folder.observe("A")
    assert seen is not None and seen.token == 2 and seen.locked is True
    other.release()
    folder.close()


def test_a_spare_is_kept_when_the_lease_it_would_become_exists(tmp_path: Path) -> None:
    """A claim of a task whose lease another process holds fails as ever (the link refuses an existing name) and
    leaves the spare for the next claim, which uses it."""
    leases, folder, first, inode = _reusing(tmp_path, "X")
    peer = LeaseDir(leases, tmp_path)
    first.release()
    theirs = peer.acquire(record("A", 2))  # type: ignore[arg-type]
    assert theirs is not None
    assert folder.acquire(record("A", 3)) is None
    assert [p.stat().st_ino for p in _spares(leases)] == [inode]
    seen = folder.observe("A")
    assert seen is not None and seen.token == 2 and seen.locked is True  # (the peer's lease, untouched)
    mine = folder.acquire(record("B", 4))  # type: ignore[arg-type]
    assert mine is not None and os.stat(leases / "B.json").st_ino == inode and _spares(leases) == []
    for held in (theirs, mine):
        held.release()
    folder.close()
    peer.close()


def test_a_spare_whose_old_descriptor_is_still_held_is_never_reused(tmp_path: Path) -> None:
    """A process still holding the released lease's descriptor (a supervisor a moment from closing it, a grandchild
    that escaped with it) holds its lock: the claim finds it locked, deletes the spare name and makes a new file, so
    the new lease's lock is never shared with a process of another task."""
    leases, folder, first, old = _reusing(tmp_path, "A")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(first.fd,)
    )
    try:
        first.release()
        assert len(_spares(leases)) == 1
        second = folder.acquire(record("B", 2))  # type: ignore[arg-type]
        assert second is not None
        assert os.stat(leases / "B.json").st_ino != old and _spares(leases) == []
        seen = folder.observe("B")
        assert seen is not None and seen.locked is True and seen.token == 2
        second.release()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        folder.close()


def test_spares_of_a_process_that_is_gone_are_removed_by_the_next_that_keeps_spares(tmp_path: Path) -> None:
    """A daemon killed with spares leaves their names; the next daemon to keep spares in the folder removes those of
    processes that are gone and leaves a live one's (and anything that is not a spare's name) alone."""
    leases = tmp_path / ".leases"
    leases.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        huge = ".spare-99999999999999999999-1"  # (no pid can be this: gone, and no error for it)
        names = (f".spare-{gone.pid}-1", f".spare-{gone.pid}-2", huge, f".spare-{live.pid}-1", ".spare-x-1", "T9.json")
        for name in names:
            (leases / name).write_text("{}")
        folder = LeaseDir(leases, tmp_path)
        folder.prepare(1)  # (a daemon's first: it keeps spares from now on)
        left = sorted(p.name for p in leases.iterdir())
        assert left == sorted([f".spare-{live.pid}-1", ".spare-x-1", "T9.json"]), left
        folder.close()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait(timeout=10)


def test_a_reader_never_takes_a_reused_file_for_the_lease_it_opened(tmp_path: Path) -> None:
    """While one thread claims and releases two tasks in turn (each claim reusing the other's released file), a
    reader of one of them sees it absent or whole and its own, never another task's record or a torn one."""
    import threading

    leases = tmp_path / ".leases"
    folder = LeaseDir(leases, tmp_path)
    folder.reuses()
    # Each task claimed and released once before the reader starts: every claim it sees reuses a released file. (A
    # first claim creates its file by name, then writes it: a reader may find it empty for a moment, and retries
    # such a read a few times only. Several in a row, while this thread waited for the interpreter, failed this test
    # once in a clean clone's `make test`.)
    for token, task_id in ((1, "A"), (2, "B")):
        first = folder.acquire(record(task_id, token))  # type: ignore[arg-type]
        assert first is not None
        first.release()
    reader = LeaseDir(leases, tmp_path)
    stop = threading.Event()
    errors: list[str] = []
    seen_whole = 0

    def read() -> None:
        nonlocal seen_whole
        while not stop.is_set():
            seen = reader.observe("A")
            if seen is not None and seen.error is not None:
                errors.append(seen.error)
            elif seen is not None:
                seen_whole += 1

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for token in range(3, 3003):
            held = folder.acquire(record("A" if token % 2 else "B", token))  # type: ignore[arg-type]
            assert held is not None
            held.release()
    finally:
        stop.set()
        thread.join(timeout=30)
        folder.close()
        reader.close()
    assert errors == [], errors[:3]
    assert seen_whole > 0


def test_its_own_leases_made_ahead_or_from_spares_do_not_wake_it_and_a_peer_s_do(tmp_path: Path) -> None:
    """The kernel reports the close of a lease made unnamed as ``#<inode>`` and of one reused from a spare under the
    spare's name. A daemon's own (made ahead, then reused from its spare) wake nothing when it releases them; the
    same closes of another process's leases wake it (real inotify events, read in the order they happened)."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.prepare(1)  # (a daemon's store: one file made ahead, released ones kept as spares)
    peer = LeaseDir(tmp_path / ".leases", tmp_path)  # (another daemon's, in this process for the test)
    peer.prepare(1)
    try:
        with watching(tmp_path, folder) as woken:
            made_ahead = folder.acquire(record("T1", 1))  # type: ignore[arg-type]
            assert made_ahead is not None
            made_ahead.release()  # its close: "#<inode>", its own
            from_spare = folder.acquire(record("T2", 2))  # type: ignore[arg-type]
            assert from_spare is not None
            from_spare.release()  # its close: ".spare-<this pid>-<n>", its own
            (tmp_path / "SPRINT_QUEUE.json").write_text("{}")  # (a wake-up after those: their events were judged first)
            wait_for(lambda: "queue" in woken, 60, "the queue's change to wake the daemon")
            assert "lease" not in woken, woken
            theirs = peer.acquire(record("T3", 3))  # type: ignore[arg-type]
            assert theirs is not None
            os.close(theirs.fd)  # the peer's holder gone, without releasing ("#<inode>" of the peer's)
            theirs.fd = -1
            wait_for(lambda: "lease" in woken, 60, "the peer's lease to wake the daemon")
    finally:
        peer.close()
        folder.close()


# Reads the lease at argv[1] in a loop until its standard input closes: says "go" once it reads, then prints how many
# reads found the file empty, how many found something that is not a whole lease of task argv[2], and how many whole.
POLLER = r"""
import json, sys, threading
path, task = sys.argv[1], sys.argv[2]
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
empty = torn = whole = 0
print("go", flush=True)
while not done.is_set():
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        continue
    if not data:
        empty += 1
        continue
    try:
        ok = json.loads(data)["task_id"] == task
    except (ValueError, KeyError, TypeError):
        ok = False
    if ok:
        whole += 1
    else:
        torn += 1
print(empty, torn, whole)
"""


def test_a_lease_being_created_is_never_seen_empty(tmp_path: Path) -> None:
    """A process claims and releases one task 3,000 times, each claim making a new file (no spare, nothing made
    ahead: as a daemon's first claims, or a command's), while another process reads the lease's path in a loop: every
    read finds no file or the whole lease, never an empty or partial one. (Created by name, then written, it was found
    empty in about a third of such reads.)"""
    leases = tmp_path / ".leases"
    folder = LeaseDir(leases, tmp_path)
    folder.acquire(record("A", 1)).release()  # type: ignore[arg-type, union-attr]  # (the folder made)
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, str(leases / "A.json"), "A"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert poller.stdout is not None and poller.stdout.readline().strip() == "go"
        for token in range(2, 3002):
            held = folder.acquire(record("A", token))  # type: ignore[arg-type]
            assert held is not None
            held.release()
    finally:
        out, _ = poller.communicate(timeout=60)
        folder.close()
    empty, torn, whole = (int(n) for n in out.split())
    assert (empty, torn) == (0, 0), (empty, torn, whole)
    assert whole > 0
