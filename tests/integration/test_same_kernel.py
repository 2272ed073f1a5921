"""Liveness on one kernel: heartbeats judged on the boot clock, and a lock held on this kernel is never broken."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd.config import build
from agentd.core.clock import FakeClock, boottime
from agentd.core.model import index_by_id, views
from agentd.core.scheduler import judge
from agentd.hostinfo import boot_id, hostname, pid_namespace, process_start
from agentd.run import recovery
from agentd.store.file.leases import LeaseDir, new_record
from tests.conftest import run_agentd
from tests.helpers.daemons import (
    alive,
    events,
    recorder,
    start,
    stop_all,
    task,
    tasks_by_id,
    wait_for,
    write_config,
    write_queue,
)

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
    changed = record.replace(pid=child.pid, pid_start=process_start(child.pid), **changes)
    os.pwrite(held.fd, changed.dumps(), 0)
    os.ftruncate(held.fd, len(changed.dumps()))
    os.close(held.fd)  # only the child holds the lock now
    held.fd = -1
    return folder, child


def doc() -> dict[str, Any]:
    return {"tasks": [{"id": "T1", "status": "in_progress", "lease": {"role": "builder", "token": 1}}]}


class _Txn:
    """The parts of a store transaction recovery uses, over a plain document and a lease folder."""

    def __init__(self, queue: dict[str, Any], folder: LeaseDir) -> None:
        self.task = index_by_id(queue).get
        self.break_free, self.break_held = folder.break_free, folder.break_held
        self.read_lease, self.holders, self.report = folder.read_record, folder.holders, folder.report


def recover(folder: LeaseDir, clock: FakeClock, host: str) -> list[recovery.Recovery]:
    """One recovery pass as a daemon makes it (plan, then apply), seen from a daemon on ``host``."""
    queue = doc()
    plans = recovery.plan(views(queue), folder.observe_all(), WF, clock.now(), this_host=host)
    recovery.apply(_Txn(queue, folder), plans, WF, clock.now())  # type: ignore[arg-type]
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


def test_a_wall_stamp_ahead_does_not_keep_a_hung_holder_live(tmp_path: Path) -> None:
    """A silent holder whose wall stamp is years ahead of the observer's clock is stale once its ttl passes."""
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


def unshare_refused() -> str | None:
    """Why this test cannot put a daemon in a UTS namespace of its own (None: it can)."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    return None if probe.returncode == 0 else "unshare --uts is not permitted here (it needs root or CAP_SYS_ADMIN)"


@pytest.mark.skipif(unshare_refused() is not None, reason=str(unshare_refused()))
def test_a_hung_daemon_in_another_container_is_killed_not_raced(tmp_path: Path) -> None:
    """A hung daemon in another UTS namespace (this kernel) is killed with its task before a peer re-runs it."""
    log = tmp_path / "runs.jsonl"
    role = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}
    write_config(
        tmp_path,
        {"builder": {**role, "command": recorder(log, "--sleep-token", "1:60")}},
        defaults={"interval": 0.5, "lease_ttl": 2, "heartbeat": 0.5},
    )
    write_queue(tmp_path, [task("S1")], {"builder": 1})
    argv = [sys.executable, "-m", "agentd", "--root", str(tmp_path), "--role", "builder", "--instance", "boxed"]
    env = {key: value for key, value in os.environ.items() if key != "AGENTD_ROOT"}
    with open(tmp_path / "boxed.err", "wb") as err:
        boxed = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", 'hostname container-b && exec "$@"', "sh", *argv],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    peer = None
    try:
        first = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the first run")[0]
        lease = LeaseDir(tmp_path / ".leases", tmp_path).read_record("S1")
        assert lease is not None and lease.host == "container-b" and lease.boot_id == boot_id()
        boxed.send_signal(signal.SIGSTOP)
        peer = start(tmp_path, "builder", "--instance", "peer")
        wait_for(lambda: tasks_by_id(tmp_path)["S1"]["status"] == "awaiting_test", 60, "the peer to finish the task")
        assert not alive(first["pid"]), "the hung daemon's task should have been killed"
        assert boxed.wait(10) == -signal.SIGKILL, "the hung daemon itself should have been killed"
        assert not [r for r in events(log) if r["event"] == "overlap"]
        runs = [r for r in events(log) if r["event"] == "start"]
        assert [r["token"] for r in runs] == [1, 2]
        killed = [e for e in events(tmp_path / ".agentd" / "events.jsonl") if e["event"] == "hung-holder-killed"]
        assert killed and killed[0]["task"] == "S1" and killed[0]["holder_host"] == "container-b", killed
    finally:
        boxed.send_signal(signal.SIGCONT)
        stop_all([p for p in (boxed, peer) if p is not None])


def test_leases_list_shows_the_heartbeat_age_recovery_judges(tmp_path: Path) -> None:
    """A heartbeat 2 h old by the wall clock but just renewed on the boot clock is listed live, seconds old."""
    write_config(
        tmp_path, {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}}
    )
    write_queue(tmp_path, [task("S1", "in_progress", lease={"role": "builder", "token": 1})])
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    hours_ago = datetime.now(UTC) - timedelta(hours=2)
    record = new_record("S1", 1, "builder", now=hours_ago, ttl=60, heartbeat=10, attempt=1, boot=boottime())
    held = folder.acquire(record)
    assert held is not None
    os.utime(folder.file_for("S1"), (hours_ago.timestamp(), hours_ago.timestamp()))  # its mtime: 2 h ago too
    try:
        listed = run_agentd("leases", "list", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["live"] is True and row["heartbeat_age_s"] < 60, row
    finally:
        held.release()


def test_doctor_says_a_hung_holder_in_another_pid_namespace_cannot_be_killed_from_here(tmp_path: Path) -> None:
    """doctor names the container case: the holder is hung in another PID namespace and must be stopped there."""
    write_config(tmp_path, {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done"}})
    write_queue(tmp_path, [task("T1", "in_progress", lease={"role": "builder", "token": 1})])
    clock = FakeClock(NOW)  # its boot clock (500 s) is long past on the real one: the heartbeat is stale
    folder, child = locked_by_child(tmp_path, clock, host="container-b", pid_ns=(pid_namespace() or 0) + 1)
    try:
        result = run_agentd("doctor", "--json", cwd=tmp_path)
        findings = [f for f in json.loads(result.stdout) if f["code"] == "stale-lease"]
        assert findings and "hung in another PID namespace" in findings[0]["message"], result.stdout
        assert child.poll() is None and folder.observe("T1") is not None  # doctor only reads
    finally:
        child.kill()
        child.wait(timeout=10)
