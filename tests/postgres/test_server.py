"""The suite's PostgreSQL server is real: what the PostgreSQL store relies on works on it as the docs say."""

from __future__ import annotations

import threading
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")


def test_each_test_gets_a_database_of_its_own(pg_server: Any, pg_dsn: str) -> None:
    """A table made in one fresh database is absent from another."""
    from tests.helpers import pg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE mine (x int)")
    with psycopg.connect(pg.fresh_database(pg_server), autocommit=True) as other:
        assert other.execute("SELECT to_regclass('mine')").fetchone() == (None,)


def test_skip_locked_and_session_advisory_locks_behave(pg_dsn: str) -> None:
    """Two sessions: SKIP LOCKED passes over the row the first holds; a session advisory lock is released by the
    server when its connection dies (the store's analogue of flock)."""
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int primary key)")
        setup.execute("INSERT INTO t VALUES (1), (2)")
    first = psycopg.connect(pg_dsn)
    second = psycopg.connect(pg_dsn)
    try:
        held = first.execute("SELECT id FROM t ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
        other = second.execute("SELECT id FROM t ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
        assert held == (1,) and other == (2,)
        first.rollback()
        second.rollback()
        first.autocommit = second.autocommit = True
        assert first.execute("SELECT pg_try_advisory_lock(42)").fetchone() == (True,)
        assert second.execute("SELECT pg_try_advisory_lock(42)").fetchone() == (False,)
        pid = first.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        second.execute("SELECT pg_terminate_backend(%s)", pid)  # the holder's connection dies
        freed = threading.Event()
        for _ in range(300):
            if second.execute("SELECT pg_try_advisory_lock(42)").fetchone() == (True,):
                freed.set()
                break
            freed.wait(0.05)
        assert freed.is_set()
    finally:
        first.close()
        second.close()


def test_a_restart_cuts_connections_and_serves_again(pg_server: Any, pg_dsn: str) -> None:
    """After a server restart an old connection fails, and a new one works (what the store's reconnect relies on)."""
    conn = psycopg.connect(pg_dsn, autocommit=True)
    try:
        pg_server.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    with psycopg.connect(pg_dsn, autocommit=True) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
