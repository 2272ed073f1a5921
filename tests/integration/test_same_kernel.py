"""Liveness on one kernel: heartbeats judged on the boot clock, and a lock held on this kernel is never broken."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentd.config import build
from agentd.core.clock import FakeClock
from agentd.core.model import index_by_id, views
from agentd.core.scheduler import judge
from agentd.hostinfo import boot_id, hostname, pid_namespace, process_start
from agentd.run import recovery
from agentd.store.file.leases import LeaseDir, new_record

CONFIG = build(
    {
        "defaults": {"lease_ttl": 60, "heartbeat": 10},
        "roles": {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done"}},
    },
    root=Path("/"),
    path=None,
)
WF = CONFIG.workflow
NOW = datetime(2026, 5, 1, tzinfo=UTC)

pytestmark = pytest.mark.skipif(boot_id() is None, reason="no /proc/sys/kernel/random/boot_id on this system")


def locked_by_child(tmp_path: Path, clock: FakeClock, **changes: Any) -> tuple[LeaseDir, subprocess.Popen[bytes]]:
    """A lease on T1 locked by a separate live process (not this one), written with ``changes``."""
    folder = LeaseDir(tmp_path / ".leases", tmp_path, clock)
    record = new_record("T1", 1, "builder", now=NOW, ttl=60, heartbeat=10, attempt=1, boot=clock.boottime())
    held = folder.acquire(record)
    assert held is not None
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(held.fd,)
    )
    changed = replace(record, pid=child.pid, pid_start=process_start(child.pid), **changes)
    os.pwrite(held.fd, changed.dumps(), 0)
    os.ftruncate(held.fd, len(changed.dumps()))
    os.close(held.fd)  # only the child holds the lock now
    held.fd = -1
    return folder, child


def doc() -> dict[str, Any]:
    return {"tasks": [{"id": "T1", "status": "in_progress", "lease": {"role": "builder", "token": 1}}]}


def recover(folder: LeaseDir, clock: FakeClock, host: str) -> list[recovery.Recovery]:
    """One recovery pass as a daemon makes it (plan, then apply), seen from a daemon on ``host``."""
    queue = doc()
    plans = recovery.plan(views(queue), folder.observe_all(), WF, clock.now(), this_host=host)
    recovery.apply(index_by_id(queue).get, plans, WF, clock.now(), folder)
    return plans


def test_a_wall_clock_step_does_not_age_a_heartbeat(tmp_path: Path) -> None:
    """A heartbeat written on this boot is judged on the boot clock: a 2 h wall-clock step leaves it live."""
    clock = FakeClock(NOW)
    folder = LeaseDir(tmp_path / ".leases", tmp_path, clock)
    held = folder.acquire(new_record("T1", 1, "builder", now=NOW, ttl=60, heartbeat=10, attempt=1, boot=500.0))
    assert held is not None
    clock.step(7200)  # the observer's date jumps 2 h ahead
    seen = folder.observe("T1")
    assert seen is not None and judge(seen, clock.now(), 60).live
    clock.advance(61)  # real time passes without a heartbeat
    seen = folder.observe("T1")
    assert seen is not None and not judge(seen, clock.now(), 60).live
    held.release()


def test_a_clock_behind_does_not_keep_a_hung_holder_live(tmp_path: Path) -> None:
    """A holder whose wall clock is 2 h behind, silent past its ttl on the boot clock, is judged stale at once."""
    clock = FakeClock(NOW)
    folder = LeaseDir(tmp_path / ".leases", tmp_path, clock)
    held = folder.acquire(new_record("T1", 1, "builder", now=NOW, ttl=60, heartbeat=10, attempt=1, boot=500.0))
    assert held is not None
    clock.advance(61)
    assert held.update(clock.now().replace(year=2030), boot=clock.boottime() - 61)  # its wall stamp: far ahead
    seen = folder.observe("T1")
    assert seen is not None and not judge(seen, clock.now(), 60).live
    held.release()


def test_a_held_lock_from_another_container_on_this_kernel_is_never_broken(tmp_path: Path) -> None:
    """A stale heartbeat whose lock a process on this kernel holds (another hostname) is not broken: it is killed."""
    clock = FakeClock(NOW)
    folder, child = locked_by_child(tmp_path, clock, host="container-b")
    try:
        clock.advance(3600)
        plans = recover(folder, clock, host=hostname())
        assert [(p.task_id, p.kill) for p in plans] == [("T1", True)]
        assert (tmp_path / ".leases" / "T1.json").exists()  # never broken while its lock is held
        assert child.wait(timeout=10) == -9  # the hung holder (same PID namespace) was killed instead
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def test_a_hung_holder_in_another_pid_namespace_is_left_alone(tmp_path: Path) -> None:
    """A pid recorded in another PID namespace names nothing here: nothing is killed, the lease is not broken."""
    clock = FakeClock(NOW)
    other_ns = (pid_namespace() or 0) + 1
    folder, child = locked_by_child(tmp_path, clock, host="container-b", pid_ns=other_ns)
    try:
        clock.advance(3600)
        plans = recover(folder, clock, host=hostname())
        assert [(p.task_id, p.kill) for p in plans] == [("T1", True)]
        assert (tmp_path / ".leases" / "T1.json").exists()
        assert child.poll() is None  # not killed: its pid means nothing in this namespace
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_lease_from_another_kernel_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    """A held lease written on another boot (a network file system) is broken once its wall-clock heartbeat is old."""
    clock = FakeClock(datetime.now(UTC))  # the file's mtime is a real time too
    folder, child = locked_by_child(tmp_path, clock, host="elsewhere", boot_id="another-kernel")
    try:
        clock.advance(3600)
        plans = recover(folder, clock, host=hostname())
        assert [(p.task_id, p.kill) for p in plans] == [("T1", False)]
        assert not (tmp_path / ".leases" / "T1.json").exists()
        assert child.poll() is None  # not ours to kill
    finally:
        child.kill()
        child.wait(timeout=10)
