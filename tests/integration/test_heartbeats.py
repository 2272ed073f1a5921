"""Heartbeats never wait behind queue work, and a daemon's own liveness beat shows a stopped daemon."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from agentd.config import load
from agentd.core.clock import boottime
from agentd.core.scheduler import judge
from agentd.report import status
from agentd.service import background
from agentd.store.file.leases import LeaseDir
from tests.helpers.daemons import start, stop_all, task, wait_for, write_config, write_queue

SLOW = ["sh", "-c", "sleep 60"]


def test_heartbeats_go_on_while_the_queue_lock_is_held(tmp_path: Path) -> None:
    """While the daemon's pass waits 3 ttl for the queue lock, its task's lease is renewed and always judged live."""
    write_config(
        tmp_path,
        {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": SLOW}},
        lock_timeout=120,
        defaults={"lease_ttl": 2, "heartbeat": 0.2, "interval": 0.2},
    )
    queue = write_queue(tmp_path, [task("T1")], wip={"builder": 2})
    daemon = start(tmp_path, "builder")
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    lease = tmp_path / ".leases" / "T1.json"
    try:
        wait_for(lambda: lease.exists() and json.loads(lease.read_text() or "{}").get("pgid"), 30, "T1 to start")
        with open(tmp_path / "SPRINT_QUEUE.json.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = json.loads(queue.read_text())  # a second task to claim: the daemon's pass now waits for the lock
            doc["tasks"].append(task("T2"))
            queue.with_name("queue.tmp").write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(queue.with_name("queue.tmp"), queue)
            beats = set()
            until = boottime() + 6.0
            while boottime() < until:
                seen = folder.observe("T1")
                assert seen is not None and judge(seen, datetime.now(UTC), 2).live, seen
                record = folder.read_record("T1")
                if record is not None:
                    beats.add(record.heartbeat_boot)
                time.sleep(0.05)  # the next sample
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert len(beats) >= 6, beats  # renewed all along, not only once the lock came free
        assert daemon.poll() is None
    finally:
        stop_all([daemon])


def test_a_finished_run_keeps_its_lease_renewed_until_its_outcome_is_recorded(tmp_path: Path) -> None:
    """A command ends while a peer holds the queue lock for 3 ttl: the daemon cannot record the outcome yet, and the
    lease must not age meanwhile (a peer would judge the healthy daemon hung and kill it). Recorded once free."""
    go = tmp_path / "go"
    ended = tmp_path / "ended"
    waits = f"while [ ! -e {go} ]; do sleep 0.05; done; touch {ended}"
    write_config(
        tmp_path,
        {
            "builder": {
                "claims": "ready",
                "working": "in_progress",
                "on_success": "done",
                "command": ["sh", "-c", waits],
            }
        },
        lock_timeout=120,
        defaults={"lease_ttl": 2, "heartbeat": 0.2, "interval": 0.2},
    )
    queue = write_queue(tmp_path, [task("T1")], wip={"builder": 2})
    daemon = start(tmp_path, "builder")
    folder = LeaseDir(tmp_path / ".leases", tmp_path)
    lease = tmp_path / ".leases" / "T1.json"
    try:
        wait_for(lambda: lease.exists() and json.loads(lease.read_text() or "{}").get("pgid"), 30, "T1 to start")
        with open(tmp_path / "SPRINT_QUEUE.json.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            go.touch()  # the command ends now; recording it waits for the lock
            wait_for(ended.exists, 30, "the command to end")
            pgid = json.loads(lease.read_text())["pgid"]
            # (its supervisor, a zombie, or waiting for another task, until the daemon, blocked on the lock, records
            # the run)
            wait_for(lambda: not _group_running(pgid, but=pgid), 30, "the task's tree to be gone")
            beats = set()
            until = boottime() + 6.0  # 3 ttl
            while boottime() < until:
                seen = folder.observe("T1")
                assert seen is not None and judge(seen, datetime.now(UTC), 2).live, seen
                record = folder.read_record("T1")
                if record is not None:
                    beats.add(record.heartbeat_boot)
                time.sleep(0.05)  # the next sample
            assert json.loads(queue.read_text())["tasks"][0]["status"] == "in_progress"  # not recorded yet
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert len(beats) >= 6, beats  # renewed all along after the command ended
        wait_for(lambda: json.loads(queue.read_text())["tasks"][0]["status"] == "done", 30, "T1 to be recorded")
        wait_for(lambda: not lease.exists(), 30, "T1's lease to be released")  # released just after the record
        assert daemon.poll() is None
    finally:
        stop_all([daemon])


def _group_running(pgid: int, but: int | None = None) -> bool:
    """Whether a process of group *pgid* (other than *but*) is still running (a zombie is not: it has exited)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X") and int(name) != but:
                return True
    return False


def test_a_stopped_daemon_is_reported_not_responding(tmp_path: Path) -> None:
    """A SIGSTOPped idle daemon (its PID file still locked) is shown not responding, and responding after SIGCONT."""
    write_config(
        tmp_path,
        {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": SLOW}},
    )
    write_queue(tmp_path, [])
    daemon = start(tmp_path, "builder")
    config = load(root=tmp_path)
    pid_file = tmp_path / ".agentd" / "run" / "builder.pid"

    def row() -> dict[str, object]:
        data = status.build(config, background.daemons(config, ["builder"]), datetime.now(UTC))
        [found] = data["roles"]
        return found  # type: ignore[no-any-return]

    try:
        # its pid shows once the file has its content (the lock is taken a moment before it is written)
        wait_for(lambda: pid_file.exists() and row()["pid"], 30, "the daemon to start")
        assert row()["not_responding_s"] is None
        os.kill(daemon.pid, signal.SIGSTOP)
        found = wait_for(lambda: row()["not_responding_s"], 30, "status to say not responding")
        assert isinstance(found, float) and found > 0
        assert row()["running"] is True  # its lock is held all the same
        os.kill(daemon.pid, signal.SIGCONT)
        wait_for(lambda: row()["not_responding_s"] is None, 30, "status to say responding again")
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
        stop_all([daemon])


def test_systemd_hears_ready_and_watchdog_beats(tmp_path: Path) -> None:
    """Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the daemon says READY=1, then beats WATCHDOG=1 again and again."""
    write_config(
        tmp_path,
        {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": SLOW}},
    )
    write_queue(tmp_path, [])
    address = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(address))
        listener.settimeout(30)
        daemon = start(tmp_path, "builder", env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"})
        try:
            heard = [listener.recv(256).decode() for _ in range(3)]
        finally:
            stop_all([daemon])
    assert "READY=1" in heard
    assert heard.count("WATCHDOG=1") >= 2, heard
