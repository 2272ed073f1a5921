"""Background daemons as real detached processes: start, status, stop, PID files that cannot lie, log rotation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import alive, events, recorder, task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose builder records its runs; every daemon is stopped afterwards."""
    write_config(
        tmp_path,
        {
            "builder": {**BUILDER, "command": recorder(tmp_path / "runs.jsonl", "--sleep", "60")},
            "tester": {"claims": "awaiting_test", "working": "testing", "on_success": "done", "command": ["true"]},
        },
        defaults={"grace": 1, "kill_after": 1},
    )
    write_queue(tmp_path, [], {"builder": 1})
    yield tmp_path
    run_agentd("stop", cwd=tmp_path, timeout=60)


def pid_of(root: Path, role: str) -> int:
    return int(json.loads((root / ".agentd" / "run" / f"{role}.pid").read_text())["pid"])


def test_start_survives_the_terminal_that_started_it(project: Path) -> None:
    """start from a session that is then killed: the daemon, in its own session, keeps running."""
    shell = subprocess.Popen(
        [sys.executable, "-m", "agentd", "start", "builder"],
        cwd=project,
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = shell.communicate(timeout=60)
    assert out.startswith("builder started (pid ")
    pid = pid_of(project, "builder")
    # The starter has exited; kill whatever is left of its session, as closing a terminal does.
    subprocess.run(["pkill", "-KILL", "-s", str(shell.pid)], check=False)
    assert os.getsid(pid) != shell.pid and os.getsid(pid) == pid
    assert run_agentd("status", "builder", cwd=project).returncode == 0
    assert alive(pid)


def test_stale_pid_file_with_a_live_unrelated_pid_does_not_block_start(project: Path) -> None:
    """A PID file naming a live process that does not hold the lock is stale: replaced with a notice."""
    run_dir = project / ".agentd" / "run"
    run_dir.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (run_dir / "builder.pid").write_text(
            json.dumps(
                {
                    "pid": stranger.pid,
                    "role": "builder",
                    "host": os.uname().nodename,
                    "started_at": "2026-01-01T00:00:00+00:00",
                    "argv": ["agentd"],
                }
            )
        )
        status = run_agentd("status", "builder", cwd=project)
        assert status.returncode == 3 and "stale PID file" in status.stdout
        started = run_agentd("start", "builder", cwd=project)
        assert started.returncode == 0 and "builder started" in started.stdout, started.stderr
        assert pid_of(project, "builder") != stranger.pid
        assert "replaced a stale PID file" in (project / ".agentd" / "logs" / "builder.log").read_text()
        assert alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_two_concurrent_starts_give_one_daemon(project: Path) -> None:
    """Two `agentd start builder` at once: one starts it, the other says it is already running."""
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "agentd", "start", "builder"], cwd=project, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in starts)
    assert all(p.returncode == 0 for p in starts)
    assert outs[0].startswith("builder is already running") and outs[1].startswith("builder started"), outs
    pids = {line.split("pid ")[1].split(")")[0].split(",")[0] for line in outs}
    assert len(pids) == 1


def test_stop_drains_a_long_task_and_status_then_exits_3(project: Path) -> None:
    """stop with a long task running: within the timeout, task back to ready, no lease, no process left."""
    write_queue(project, [task("L1")], {"builder": 1})
    assert run_agentd("start", "builder", cwd=project).returncode == 0
    run = wait_for(lambda: [r for r in events(project / "runs.jsonl") if r["event"] == "start"], 30, "the task")[0]
    stopped = run_agentd("stop", "builder", "--timeout", "20", cwd=project)
    assert stopped.returncode == 0 and stopped.stdout.startswith("builder stopped"), stopped.stdout
    assert not alive(run["pid"])
    final = tasks_by_id(project)["L1"]
    assert final["status"] == "ready" and final["lease"] is None and final.get("attempts", 0) == 0
    assert list((project / ".leases").glob("*.json")) == []
    status = run_agentd("status", "builder", cwd=project)
    assert status.returncode == 3 and "stopped" in status.stdout
    assert run_agentd("stop", "builder", cwd=project).stdout.strip() == "builder is not running"


def test_start_reports_a_daemon_that_cannot_start(project: Path) -> None:
    """A bad queue makes start print the daemon's own error and exit non-zero, never "started"."""
    (project / "SPRINT_QUEUE.json").write_text('{"tasks": {"x": {"id": "x", "status": "ready"}}}')
    result = run_agentd("start", "builder", cwd=project)
    assert result.returncode == 4
    assert "builder failed to start" in result.stderr and "$.tasks: {'x': {" in result.stderr
    assert "started" not in result.stdout
    assert run_agentd("status", "builder", cwd=project).returncode == 3


def test_foreground_daemon_refuses_a_second_copy(project: Path) -> None:
    """A second daemon of the same role and instance on this host is refused (exit 7); another instance is fine."""
    assert run_agentd("start", "tester", cwd=project).returncode == 0
    again = run_agentd("--role", "tester", "--once", cwd=project)
    assert again.returncode == 7 and "tester is already running" in again.stderr
    other = run_agentd("--role", "tester", "--once", "--instance", "t2", cwd=project)
    assert other.returncode == 0, other.stderr


def test_log_rotation_keeps_backups_and_logs_follow_reads_through(tmp_path: Path) -> None:
    """The daemon rotates its own log at max_bytes keeping `backups` files; `logs -f` follows across rotations."""
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": ["true"]}},
        log={"max_bytes": 1024, "backups": 2},
    )
    write_queue(tmp_path, [], {"builder": 4})
    assert run_agentd("start", "builder", cwd=tmp_path).returncode == 0
    log = tmp_path / ".agentd" / "logs" / "builder.log"
    follower = subprocess.Popen(
        [sys.executable, "-m", "agentd", "logs", "builder", "-f", "-n", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(line for line in follower.stdout or ()), daemon=True)
    reader.start()
    try:
        # Nothing rotates before the follower holds the log open (it starts at its end: -n 0).
        wait_for(lambda: os.path.realpath(log) in fd_targets(follower.pid), 60, "the follower to open the log")
        for i in range(12):
            run_agentd("queue", "add", f"R{i:02d}", "--title", f"rotation filler {i}", cwd=tmp_path)
        wait_for(
            lambda: (
                all(t["status"] == "awaiting_test" for t in tasks_by_id(tmp_path).values())
                and len(tasks_by_id(tmp_path)) == 12
            ),
            60,
            "every task to run",
        )
        logs = sorted(p.name for p in log.parent.glob("builder.log*"))
        assert logs == ["builder.log", "builder.log.1", "builder.log.2"]
        wait_for(lambda: len(finished(followed)) >= 12, 60, f"the follower to print every run's end: {followed[-5:]}")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
        reader.join(10)
        run_agentd("stop", cwd=tmp_path)
    assert sorted(finished(followed)) == [f"R{i:02d}" for i in range(12)]


def finished(lines: list[str]) -> list[str]:
    return [line.split("finished ")[1][:3] for line in list(lines) if "finished R" in line]


def fd_targets(pid: int) -> set[str]:
    """What a process's open descriptors name (one closed while they are listed is skipped)."""
    targets = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return targets
    for n in names:
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{n}"))
        except FileNotFoundError:
            continue
    return targets
