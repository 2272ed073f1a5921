"""`agentd status` lists every registered daemon with its host, and judges one of another host by its last beat."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentd.core.clock import boottime, format_timestamp
from agentd.hostinfo import boot_id, hostname
from tests.conftest import run_agentd
from tests.helpers.daemons import task, wait_for, write_config, write_queue

# Holds an exclusive flock on the PID file given, as a daemon holds its registration, until its stdin closes.
HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""

ROLES = {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}}


@pytest.fixture
def remote_builder(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A project whose builder registration says it runs on another host (a pid that means nothing here), held by a
    real process; yields (project, its PID file)."""
    write_config(tmp_path, ROLES)
    write_queue(tmp_path, [task("A1")], {"builder": 1})
    pid_file = tmp_path / ".agentd" / "run" / "builder.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(pid_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield tmp_path, pid_file
    finally:
        holder.communicate(timeout=60)


def register(pid_file: Path, *, beat_at: datetime, host: str) -> None:
    """Write a registration of host ``host`` whose last beat was at ``beat_at`` on the wall clock but just now on
    this kernel's boot clock (network namespaces share one kernel: its boot id and boot clock)."""
    started = beat_at - timedelta(hours=1)
    info = {
        "pid": 4_000_000,
        "role": "builder",
        "host": host,
        "started_at": format_timestamp(started),
        "argv": ["agentd", "run", "builder"],
        "instance": None,
        "boot_id": boot_id(),
        "proc_start": 1,
        "interval": 5.0,
        "log": None,
        "beat_at": format_timestamp(beat_at),
        "beat_boot": boottime(),
        "beat_every": 30.0,
        "url": None,
    }
    pid_file.write_text(json.dumps(info))


def status(root: Path) -> tuple[int, dict[str, object]]:
    result = run_agentd("status", "--json", cwd=root)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout)["roles"][0]


def test_a_daemon_of_another_host_is_listed_with_its_host_pid_start_and_last_beat(
    remote_builder: tuple[Path, Path],
) -> None:
    """A registration of another host beating now: running, with its host, pid, start and last beat in --json and
    in the table (its pid is not looked for on this host)."""
    root, pid_file = remote_builder
    now = datetime.now(UTC)
    register(pid_file, beat_at=now, host="elsewhere-1")
    code, row = status(root)
    assert code == 0
    assert row["host"] == "elsewhere-1" and row["pid"] == 4_000_000 and row["running"] is True
    assert row["not_responding_s"] is None
    assert row["started"] == format_timestamp(now - timedelta(hours=1)) and row["last_beat"] == format_timestamp(now)
    assert isinstance(row["beat_age_s"], float) and row["beat_age_s"] < 600
    table = run_agentd("status", cwd=root).stdout.splitlines()
    header = next(n for n, line in enumerate(table) if line.startswith("ROLE"))
    assert table[header].split()[:6] == ["ROLE", "HOST", "STATE", "PID", "STARTED", "LAST"]
    assert table[header + 1].split()[:4] == ["builder", "elsewhere-1", "running", "4000000"]


def test_a_silent_daemon_of_another_host_is_judged_by_its_beat_on_the_stores_clock(
    remote_builder: tuple[Path, Path],
) -> None:
    """Another host's daemon whose last beat is ten minutes old on the store's clock is not responding, although
    this kernel's boot clock (shared by network namespaces) says it beat just now; the same file of this host is
    judged on the boot clock."""
    root, pid_file = remote_builder
    register(pid_file, beat_at=datetime.now(UTC) - timedelta(minutes=10), host="elsewhere-2")
    _, row = status(root)
    assert row["running"] is True and row["host"] == "elsewhere-2"
    assert isinstance(row["not_responding_s"], float) and row["not_responding_s"] >= 590
    assert "not responding for" in run_agentd("status", cwd=root).stdout
    register(pid_file, beat_at=datetime.now(UTC) - timedelta(minutes=10), host=hostname())
    wait_for(lambda: status(root)[1]["host"] == hostname(), 30, "the file to be read again")
    assert status(root)[1]["not_responding_s"] is None
