"""The journal table's retention on PostgreSQL: by age (``[log] journal_keep_days``), by size (what the file journal's
rotation keeps), at most hourly per project, by the daemons and by ``agentd events --prune``. A real server; time
is passed in (``now``) where the server's clock would otherwise have to move."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.store import open_store
from tests.conftest import run_agentd
from tests.helpers.daemons import start, stop_all, wait_for, write_config

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

from agentd.store.postgres.registry import prune_journal  # noqa: E402

DEADLINE = 60.0
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "on_failure": "blocked"}


def project(root: Path, dsn: str, **log: Any) -> Any:
    """A project on ``dsn`` with its schema and an empty queue; its store."""
    write_config(root, {"builder": {**BUILDER, "command": ["true"]}}, store=dsn, log=log, defaults={"interval": 0.5})
    assert run_agentd("store", "init", cwd=root).returncode == 0
    assert run_agentd("init", cwd=root).returncode == 0
    return open_store(config_mod.load(root=root))


def count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM agentd_events").fetchone()[0])


def test_events_older_than_the_kept_days_go_at_most_hourly(tmp_path: Path, pg_dsn: str) -> None:
    """Ten days later, events older than 5 days go; half an hour after a pruning nothing is pruned (not due);
    ``force`` prunes whatever the last time, and 0 days is no age limit."""
    store = project(tmp_path, pg_dsn)
    try:
        journal = store.journal("builder")
        for n in range(3):
            journal.emit("note", f"event {n}")
        now = store.now()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert prune_journal(conn, now, 5, 0) == 0  # (none is old yet: the mark is set)
            assert prune_journal(conn, now + timedelta(minutes=30), 5, 0) is None
            assert count(pg_dsn) == 3
            assert prune_journal(conn, now + timedelta(days=10), 5, 0) == 3
            journal.emit("note", "a new one")
            assert prune_journal(conn, now + timedelta(days=10, minutes=30), 5, 0) is None
            assert prune_journal(conn, now + timedelta(days=1), 5, 0, force=True) == 0  # (the new one is young)
            assert prune_journal(conn, now + timedelta(days=20), 0, 0) == 0  # (0 days: no age limit)
        assert [e.message for e in store.events()] == ["a new one"]
    finally:
        store.close()


def test_the_journal_keeps_what_the_file_journals_rotation_keeps(tmp_path: Path, pg_dsn: str) -> None:
    """Beyond (backups + 1) x max_bytes of lines the oldest events go, newest kept, in order."""
    store = project(tmp_path, pg_dsn, max_bytes=1024, backups=1)
    try:
        journal = store.journal("builder")
        for n in range(40):
            journal.emit("note", f"event {n:02d} " + "x" * 100)
        assert store.prune_journal() is not None
        kept = [e.message for e in store.events()]
        lines = sum(len(e.raw) + 1 for e in store.events())
        assert kept == [f"event {n:02d} " + "x" * 100 for n in range(40 - len(kept), 40)], kept
        assert 0 < lines <= 2048 and len(kept) < 40
    finally:
        store.close()


def test_a_daemon_prunes_old_events_and_events_prune_does_it_by_hand(tmp_path: Path, pg_dsn: str) -> None:
    """A daemon started on a journal with month-old events (journal_keep_days = 7) removes them and keeps running;
    ``agentd events --prune`` then says what it removed (nothing left to)."""
    store = project(tmp_path, pg_dsn, journal_keep_days=7)
    try:
        store.journal("builder").emit("note", "recent")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for n in range(5):
                line = json.dumps({"time": "2026-01-01T00:00:00Z", "event": "note", "message": f"old {n}"})
                conn.execute(
                    "INSERT INTO agentd_events (at, event, line) VALUES (now() - interval '30 days', 'note', %s)",
                    (line,),
                )
        daemon = start(tmp_path, "builder")
        try:
            wait_for(lambda: not [e for e in store.events() if e.message.startswith("old")], DEADLINE, "the pruning")
            assert daemon.poll() is None
        finally:
            stop_all([daemon])
        assert "recent" in [e.message for e in store.events()]
    finally:
        store.close()
    done = run_agentd("events", "--prune", cwd=tmp_path)
    assert done.returncode == 0 and "pruned 0 event(s) (older than 7 days or beyond" in done.stdout, done


def test_events_prune_on_the_file_store_says_there_is_nothing_to_prune(tmp_path: Path) -> None:
    """The file journal is rotated by size: --prune says so and changes nothing."""
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n')
    done = run_agentd("events", "--prune", cwd=tmp_path)
    assert done.returncode == 0 and "rotated by size" in done.stderr + done.stdout, done
