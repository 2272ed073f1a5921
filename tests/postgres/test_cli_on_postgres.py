"""agentd on a PostgreSQL store, end to end: ``store init``, the queue commands, and a daemon running a real command.

Every command is a real ``agentd`` process against a real server (the ``pg_dsn`` fixture: a fresh database); no queue
file exists in the project, so nothing can pass by reading one.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import events, max_concurrency, recorder, start, stop_all, wait_for, write_config

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}


def agentd(root: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``agentd ARGS`` in ``root`` with the store named by AGENTD_STORE."""
    return run_agentd(*args, cwd=root, env={"AGENTD_STORE": dsn})


def test_store_init_creates_the_schema_then_says_it_is_up_to_date(tmp_path: Path, pg_dsn: str) -> None:
    """store init on an empty database creates the schema; run again it changes nothing and says so."""
    first = run_agentd("--store", pg_dsn, "store", "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "schema version 2 created" in first.stdout and "no queue yet" in first.stdout
    again = run_agentd("--store", pg_dsn, "store", "init", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "up to date; nothing to do" in again.stdout


def test_a_command_and_a_daemon_refuse_a_database_without_the_schema_naming_the_fix(
    tmp_path: Path, pg_dsn: str
) -> None:
    """On a database agentd never initialised, a command and a daemon say so in one line with the command that
    fixes it."""
    for args in (("queue", "list"), ("--role", "builder", "--once")):
        done = run_agentd("--store", pg_dsn, *args, cwd=tmp_path)
        assert done.returncode == 4, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "has no agentd schema; run: agentd store init" in lines[0], lines


def test_a_schema_newer_than_agentd_is_refused_by_commands_and_by_store_init(tmp_path: Path, pg_dsn: str) -> None:
    """A schema version this agentd does not know: commands and store init refuse it in one line, changing nothing."""
    import psycopg

    assert run_agentd("--store", pg_dsn, "store", "init", cwd=tmp_path).returncode == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO agentd_schema (version, name) VALUES (99, 'from_the_future')")
    for args in (("queue", "list"), ("store", "init")):
        done = run_agentd("--store", pg_dsn, *args, cwd=tmp_path)
        assert done.returncode == 4, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "schema version 99, newer than this agentd knows (2)" in lines[0], lines


def test_queue_commands_work_on_a_postgresql_store(tmp_path: Path, pg_dsn: str) -> None:
    """init, queue add/list/set-status/why/history, events and leases list behave as on files, with no queue file."""
    assert agentd(tmp_path, pg_dsn, "store", "init").returncode == 0
    made = agentd(tmp_path, pg_dsn, "init")
    assert made.returncode == 0, made.stderr
    added = agentd(tmp_path, pg_dsn, "queue", "add", "B1", "--title", "build it", "--priority", "2")
    assert added.returncode == 0, added.stderr
    sub = agentd(tmp_path, pg_dsn, "queue", "add", "B1-1", "--title", "a part", "--parent", "B1")
    assert sub.returncode == 0, sub.stderr
    listed = agentd(tmp_path, pg_dsn, "queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == ["B1", "B1-1"]
    moved = agentd(tmp_path, pg_dsn, "queue", "set-status", "B1", "blocked")
    assert moved.returncode == 0, moved.stderr
    why = agentd(tmp_path, pg_dsn, "queue", "why", "B1")
    assert why.returncode == 0 and "blocked" in why.stdout, why.stdout
    missing = agentd(tmp_path, pg_dsn, "queue", "set-status", "NOPE", "ready")
    assert missing.returncode == 6, missing.stderr
    leases = agentd(tmp_path, pg_dsn, "leases", "list")
    assert leases.returncode == 0, leases.stderr
    assert not (tmp_path / "SPRINT_QUEUE.json").exists()


@pytest.mark.slow
def test_a_builder_runs_a_task_once_on_a_postgresql_store(tmp_path: Path, pg_dsn: str) -> None:
    """agentd --role builder --once claims the task, runs the real command under a lease, and records the outcome;
    events and queue history show it, and no lease is left."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": recorder(log)}}, store=pg_dsn)
    assert run_agentd("store", "init", cwd=tmp_path).returncode == 0
    made = run_agentd("init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    added = run_agentd("queue", "add", "S1", "--title", "one task", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    once = run_agentd("--role", "builder", "--once", cwd=tmp_path, timeout=120)
    assert once.returncode == 0, once.stderr
    runs = [r for r in events(log) if r["event"] == "start"]
    assert len(runs) == 1 and runs[0]["task"] == "S1", runs
    shown = json.loads(run_agentd("queue", "list", "--json", cwd=tmp_path).stdout)
    assert [(t["id"], t["status"]) for t in shown] == [("S1", "awaiting_test")]
    journal = run_agentd("events", "--task", "S1", cwd=tmp_path)
    assert journal.returncode == 0 and "claimed" in journal.stdout and "finished" in journal.stdout, journal.stdout
    history = run_agentd("queue", "history", "S1", cwd=tmp_path)
    assert history.returncode == 0 and "finished" in history.stdout, history.stdout
    leases = run_agentd("leases", "list", cwd=tmp_path)
    assert leases.returncode == 0 and "S1" not in leases.stdout, leases.stdout
    assert not (tmp_path / "SPRINT_QUEUE.json").exists()


@pytest.mark.slow
def test_every_queue_and_report_command_runs_on_a_postgresql_store(tmp_path: Path, pg_dsn: str) -> None:
    """update, retry, cancel, remove, show, archive, validate, events, leases prune, pause and resume succeed on a postgresql://
    store; status and doctor answer with their documented codes (3: no daemon runs; 1: roles without a command)."""
    assert agentd(tmp_path, pg_dsn, "store", "init").returncode == 0
    assert agentd(tmp_path, pg_dsn, "init").returncode == 0
    for task_id in ("C1", "C2", "C3"):
        assert agentd(tmp_path, pg_dsn, "queue", "add", task_id, "--title", f"task {task_id}").returncode == 0
    steps = [
        ("queue", "update", "C1", "--title", "renamed"),
        ("queue", "set-status", "C1", "blocked"),
        ("queue", "retry", "C1"),
        ("queue", "cancel", "C2"),
        ("queue", "remove", "C3"),
        ("queue", "show", "C1"),
        ("queue", "set-status", "C1", "done"),
        ("queue", "archive"),
        ("queue", "show", "C1"),
        ("queue", "validate"),
        ("events",),
        ("leases", "prune"),
        ("pause", "builder"),
        ("resume", "builder"),
    ]
    for args in steps:
        done = agentd(tmp_path, pg_dsn, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    unasked = agentd(tmp_path, pg_dsn, "queue", "answer", "C1", "yes")
    assert unasked.returncode in (6, 7), unasked.stderr  # (archived, or no open question: refused, as on files)
    assert json.loads(agentd(tmp_path, pg_dsn, "queue", "list", "--json").stdout) == []  # (both archived)
    status = agentd(tmp_path, pg_dsn, "status")
    assert status.returncode == 3 and "builder" in status.stdout, status.stderr
    doctor = agentd(tmp_path, pg_dsn, "doctor")
    assert doctor.returncode == 1 and "0 error(s)" in doctor.stdout, doctor.stdout
    assert "postgresql://" in doctor.stdout and "valid (0 tasks)" in doctor.stdout, doctor.stdout


@pytest.mark.slow
def test_two_daemons_woken_by_notify_share_a_wip_limit_of_one(tmp_path: Path, pg_dsn: str) -> None:
    """Two builders polling only every 10 minutes run four tasks added after they started (LISTEN/NOTIFY wakes them),
    never two at once (WIP 1 across both processes), each exactly once."""
    from agentd import config as config_mod
    from agentd.store import open_store

    log = tmp_path / "runs.jsonl"
    builder = {**BUILDER, "command": recorder(log, "--sleep", "0.5"), "wip": 1}
    write_config(tmp_path, {"builder": builder}, store=pg_dsn, defaults={"interval": 600, "heartbeat": 1})
    assert run_agentd("store", "init", cwd=tmp_path).returncode == 0
    assert run_agentd("init", cwd=tmp_path).returncode == 0
    daemons = [start(tmp_path, "builder", "--instance", name) for name in ("b1", "b2")]
    store = open_store(config_mod.load(root=tmp_path))
    try:
        wait_for(lambda: len([d for d in store.daemons() if d.running]) == 2, 60, "both daemons to register")
        for n in range(4):
            added = run_agentd("queue", "add", f"N{n}", "--title", f"task {n}", cwd=tmp_path)
            assert added.returncode == 0, added.stderr
        wait_for(lambda: {t.status for t in store.read().tasks} == {"awaiting_test"}, 120, "every task to be built")
    finally:
        stop_all(daemons)
        store.close()
    runs = events(log)
    assert sorted(r["task"] for r in runs if r["event"] == "start") == ["N0", "N1", "N2", "N3"]
    assert max_concurrency(runs) == 1 and not [r for r in runs if r["event"] == "overlap"]


def test_a_run_s_escaped_process_ends_with_it_when_its_supervisor_is_killed_on_postgresql(
    tmp_path: Path, pg_dsn: str
) -> None:
    """On the PostgreSQL store a run inherits its lease's session socket, not a locked file. Its command leaves a
    process in a session of its own; the run's whole process group (its supervisor too) is then SIGKILLed. By the
    time the run's end is recorded (a crash), the escaped process, found by the socket it inherited, is gone."""
    import os
    import signal

    from agentd import config as config_mod
    from agentd.store import open_store

    escaped_file, command_file = tmp_path / "escaped.pid", tmp_path / "command.pid"
    script = f"setsid sleep 600 & echo $! > '{escaped_file}'; echo $$ > '{command_file}'; exec sleep 600"
    builder = {**BUILDER, "command": ["sh", "-c", script]}
    write_config(tmp_path, {"builder": builder}, store=pg_dsn, defaults={"heartbeat": 1})
    assert run_agentd("store", "init", cwd=tmp_path).returncode == 0
    assert run_agentd("init", cwd=tmp_path).returncode == 0
    assert run_agentd("queue", "add", "E1", "--title", "escapes", cwd=tmp_path).returncode == 0
    daemon = start(tmp_path, "builder")
    store = open_store(config_mod.load(root=tmp_path))
    try:
        wait_for(lambda: escaped_file.exists() and command_file.exists(), 60, "the command and its escaped process")
        escaped = int(escaped_file.read_text())
        wait_for(lambda: os.getsid(escaped) == escaped, 30, "the process to leave the run's session")
        os.killpg(os.getpgid(int(command_file.read_text())), signal.SIGKILL)

        def crashed() -> bool:
            last = (store.read().task("E1") or {}).get("last_run") or {}
            return last.get("outcome") == "crash"

        wait_for(crashed, 60, "the run's end to be recorded")
        state = Path(f"/proc/{escaped}/stat")
        gone = not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        assert gone, "the escaped process outlived its run's recorded end"
    finally:
        stop_all([daemon])
        store.close()
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(escaped_file.read_text()), signal.SIGKILL)
