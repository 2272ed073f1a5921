"""When a queue write's rename is made durable (the fsync of the queue's folder): before the write returns, for
every writer but a daemon's pass, which starts what it claimed first and fsyncs the folder before the pass ends.
Real files, real fsyncs (watched, not replaced), a real daemon pass with real supervisors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd import faults
from agentd.run.daemon import Daemon
from agentd.run.execution import Executor
from agentd.store.file import queuefile
from agentd.store.file.queuefile import QueueStore
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What happens, in order: ``folder`` (tmp_path fsynced), ``start <id>`` (a task handed to its supervisor)."""
    seen: list[str] = []
    real_fsync, real_start = os.fsync, Executor.start
    folder = tmp_path.stat()

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == (folder.st_dev, folder.st_ino):
            seen.append("folder")
        real_fsync(fd)

    def start(self: Executor, task_id: str, *args: Any, **kwargs: Any) -> Any:
        run = real_start(self, task_id, *args, **kwargs)
        seen.append(f"start {task_id}")
        return run

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    monkeypatch.setattr(Executor, "start", start)
    return seen


def test_a_daemons_pass_starts_its_claims_then_fsyncs_the_folder(tmp_path: Path, steps: list[str]) -> None:
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}
    write_config(tmp_path, {"builder": builder})
    write_queue(tmp_path, [task("A"), task("B")], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    try:
        assert sorted(daemon.tick().claimed) == ["A", "B"]
        assert steps == ["start A", "start B", "folder"]  # (one write: the claims; synced before the pass ended)
        assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"in_progress"}
        steps.clear()
        wait_for(lambda: daemon._collect_exits() or all(r.exit for r in daemon.running.values()), 60, "both ends")
        daemon.tick()  # (records both: a write, no claim)
        assert steps == ["folder"]
        assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    finally:
        daemon.executor.finish()


def test_any_other_write_fsyncs_the_folder_before_it_returns(tmp_path: Path, steps: list[str]) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": [task("A")]}, indent=2) + "\n")
    store = QueueStore(queue)
    store.edit(lambda draft: draft.task("A").update(status="done"))
    assert steps == ["folder"]


def test_a_pass_that_fails_after_its_rename_fsyncs_the_folder_before_the_error(
    tmp_path: Path, steps: list[str]
) -> None:
    """The transaction's rename stands, then something fails on its way back (here at the crash point right after
    the rename): the folder is fsynced before the error reaches the daemon."""
    builder = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}
    write_config(tmp_path, {"builder": builder})
    write_queue(tmp_path, [task("A")], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)

    def fail() -> None:
        raise OSError(5, "after the rename")

    faults.on("queue.after-rename", fail)
    try:
        report = daemon.tick()
    finally:
        faults.on("queue.after-rename", None)
        daemon.executor.finish()
    assert report.error and "after the rename" in report.error
    assert steps == ["folder"]  # (nothing started: the claim's write did not come back)
    assert tasks_by_id(tmp_path)["A"]["status"] == "in_progress"  # (the rename stood: recovery's business now)


def test_a_write_in_another_thread_returns_only_after_a_folder_sync_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon thread settles its pass (the folder's fsync, held up here) while another thread of the process writes
    the queue: that write's rename is covered by the fsync under way, so it returns only once that fsync is over,
    never before (it would then report a write that a power cut could still undo)."""
    import threading

    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text(json.dumps({"tasks": [task("A"), task("B")]}, indent=2) + "\n")
    store = QueueStore(queue)
    store.folder_sync_later = True
    store.edit(lambda draft: draft.task("A").update(status="done"))  # (its folder's fsync left for sync_folder)
    store.folder_sync_later = False
    in_fsync, release = threading.Event(), threading.Event()
    order: list[str] = []
    real_fsync = os.fsync
    settler: list[int] = []

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and threading.get_ident() in settler:
            in_fsync.set()
            assert release.wait(60), "never released"
            real_fsync(fd)
            order.append("settled")
            return
        real_fsync(fd)

    def settle() -> None:
        settler.append(threading.get_ident())
        store.sync_folder()

    def write() -> None:
        store.edit(lambda draft: draft.task("B").update(status="done"))
        order.append("written")

    monkeypatch.setattr(queuefile.os, "fsync", fsync)
    settling = threading.Thread(target=settle)
    settling.start()
    assert in_fsync.wait(60)
    writing = threading.Thread(target=write)
    writing.start()
    writing.join(2.0)  # (a write that did not wait for the fsync under way ends in a few ms)
    release.set()
    settling.join(60)
    writing.join(60)
    assert order == ["settled", "written"]
    assert [t["status"] for t in json.loads(queue.read_text())["tasks"]] == ["done", "done"]
