"""Daemons on PostgreSQL outlive their server: a restart (every session cut) and an outage longer than the lease ttl.

Real daemons, a real server of the test's own restarted or stopped by the test, a real command that records each of
its runs (tests/helpers/record.py: a second live run of a task records an ``overlap``). The daemons never exit, say
once that the store is unreachable and once that it is back, and every task ends done exactly once.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_agentd
from tests.helpers import pg
from tests.helpers.daemons import events, recorder, start, stop_all, wait_for, write_config

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "on_failure": "blocked"}
DEADLINE = 120


def _project(root: Path, dsn: str, tasks: int, sleep: float, ttl: float) -> Path:
    log = root / "runs.jsonl"
    write_config(
        root,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", str(sleep)), "wip": 2}},
        store=dsn,
        defaults={"interval": 0.5, "lease_ttl": ttl, "heartbeat": 0.5, "max_attempts": 20},
    )
    assert run_agentd("store", "init", cwd=root).returncode == 0
    assert run_agentd("init", cwd=root).returncode == 0
    for n in range(tasks):
        added = run_agentd("queue", "add", f"T{n}", "--title", f"task {n}", cwd=root)
        assert added.returncode == 0, added.stderr
    return log


def _statuses(root: Path) -> dict[str, str]:
    listed = run_agentd("queue", "list", "--json", cwd=root)
    if listed.returncode != 0:
        return {}
    return {t["id"]: t["status"] for t in json.loads(listed.stdout)}


def _started(log: Path) -> int:
    return len([r for r in events(log) if r["event"] == "start"])


def _wait_until_each_says_it_is_back(root: Path) -> None:
    """Each daemon finds the server back at its next try, on its own backoff (up to 10 s after the server is up): one
    whose every task another daemon finished meanwhile may not have tried yet when the last task is done."""
    files = sorted(root.glob("daemon-*.err"))
    assert len(files) == 2, files
    wait_for(
        lambda: all("store reachable again" in path.read_text(errors="replace") for path in files),
        DEADLINE,
        "each daemon to say the store is back",
    )


def _err(root: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(root.glob("daemon-*.err")))


def _judge(root: Path, log: Path, tasks: int, daemons: list[Any]) -> list[dict[str, Any]]:
    """Every task done, each ended successfully exactly once, no run of a task overlapping another; the daemons
    still running."""
    want = {f"T{n}": "done" for n in range(tasks)}
    wait_for(lambda: _statuses(root) == want, DEADLINE, f"every task done (daemons said: {_err(root)[-3000:]})")
    assert [d.poll() for d in daemons] == [None] * len(daemons), _err(root)[-3000:]
    runs = events(log)
    assert not [r for r in runs if r["event"] == "overlap"], runs
    ends = sorted(r["task"] for r in runs if r["event"] == "end")
    assert ends == sorted(want), runs
    ended = {r["pid"]: r["t"] for r in runs if r["event"] == "end"}
    starts = sorted((r["task"], r["t"], r["pid"]) for r in runs if r["event"] == "start")
    for (task_id, _, pid), (next_id, begun, _) in itertools.pairwise(starts):  # a run that ended did so first
        assert task_id != next_id or ended.get(pid, begun) <= begun, (task_id, runs)
    return runs


@pytest.mark.slow
def test_daemons_ride_out_a_server_restart_logging_it_once(tmp_path: Path, own_server: pg.Server) -> None:
    """Restart the server (fast: every session cut) while tasks run: both daemons keep running, each says once that
    the store is unreachable and once that it is back, and every task is done exactly once, never two runs at once."""
    dsn = pg.fresh_database(own_server)
    # 4 tasks, WIP 2: two runs in flight through the restart, then two claimed and run on the new sessions.
    log = _project(tmp_path, dsn, tasks=4, sleep=3, ttl=20)
    daemons = [start(tmp_path, "builder", "--instance", name) for name in ("b1", "b2")]
    try:
        wait_for(lambda: _err(tmp_path).count("daemon started") == 2, DEADLINE, "both daemons to start")
        wait_for(lambda: _started(log) >= 2, DEADLINE, "two runs to start")
        own_server.restart()
        _judge(tmp_path, log, 4, daemons)
        _wait_until_each_says_it_is_back(tmp_path)
    finally:
        stop_all(daemons)
    said = _err(tmp_path)
    for path in sorted(tmp_path.glob("daemon-*.err")):
        text = path.read_text(errors="replace")
        lost = [line for line in text.splitlines() if "store unreachable" in line]
        back = [line for line in text.splitlines() if "store reachable again" in line]
        assert len(lost) == 1 and len(back) == 1, text
    assert "Traceback" not in said, said


@pytest.mark.slow
def test_daemons_ride_out_an_outage_longer_than_the_lease_ttl(tmp_path: Path, own_server: pg.Server) -> None:
    """Stop the server for longer than the lease ttl while tasks run, then start it: the runs are fenced (never
    recorded as done), the daemons never exit, and every task ends done exactly once after the server is back."""
    dsn = pg.fresh_database(own_server)
    log = _project(tmp_path, dsn, tasks=4, sleep=4, ttl=4)
    daemons = [start(tmp_path, "builder", "--instance", name) for name in ("b1", "b2")]
    try:
        wait_for(lambda: _err(tmp_path).count("daemon started") == 2, DEADLINE, "both daemons to start")
        wait_for(lambda: _started(log) >= 2, DEADLINE, "two runs to start")
        own_server.stop("fast")
        begun = time.monotonic()
        wait_for(lambda: time.monotonic() - begun > 8, 60, "the outage to outlast the lease ttl", every=0.2)
        assert [d.poll() for d in daemons] == [None, None], _err(tmp_path)[-3000:]
        own_server.start()
        _judge(tmp_path, log, 4, daemons)
        _wait_until_each_says_it_is_back(tmp_path)
    finally:
        stop_all(daemons)
    for path in sorted(tmp_path.glob("daemon-*.err")):
        text = path.read_text(errors="replace")
        lost = [line for line in text.splitlines() if "store unreachable" in line]
        back = [line for line in text.splitlines() if "store reachable again" in line]
        assert len(lost) == 1 and len(back) == 1, text
    assert "Traceback" not in _err(tmp_path), _err(tmp_path)


@pytest.mark.slow
def test_a_daemon_started_while_the_server_is_down_waits_for_it(tmp_path: Path, own_server: pg.Server) -> None:
    """A daemon started (in the foreground, as a service manager does) while the server is down does not exit: it
    says once that it waits, once that the store is there, then runs the queue; --once exits 8 in one line."""
    dsn = pg.fresh_database(own_server)
    log = _project(tmp_path, dsn, tasks=2, sleep=0.1, ttl=20)
    own_server.stop("fast")
    once = run_agentd("--role", "builder", "--once", cwd=tmp_path)
    assert once.returncode == 8 and len(once.stderr.strip().splitlines()) == 1, once.stderr
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: "waiting (retrying with backoff)" in _err(tmp_path), DEADLINE, "the daemon to say it waits")
        assert daemon.poll() is None, _err(tmp_path)
        own_server.start()
        _judge(tmp_path, log, 2, [daemon])
    finally:
        stop_all([daemon])
    said = _err(tmp_path).splitlines()
    assert len([line for line in said if "store unreachable" in line]) == 1, said
    assert len([line for line in said if "store reachable: " in line]) == 1, said
