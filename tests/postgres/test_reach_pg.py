"""The store's judgement of its server (store/postgres/reach.py) on real sessions of a real server: a session cut
while another, older one still answers is one outage, ended only by a session opened since."""

from __future__ import annotations

import logging

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

from agentd.store.postgres.reach import Reach  # noqa: E402


def test_an_older_session_still_answering_does_not_end_the_outage(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As in a fast shutdown, where backends are ended one by one: the first session cut makes the one warning; a
    statement through on the other, opened before, ends nothing; the new session opened afterwards ends it."""
    caplog.set_level(logging.DEBUG, logger="agentd.store.postgres.reach")
    reach = Reach("the test server")
    reach.announce = True
    first = reach.open(pg_dsn, purpose="test first", autocommit=True)
    second = reach.open(pg_dsn, purpose="test second", autocommit=True)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as cut:
            first.execute("SELECT 1")
        reach.lost(cut.value, first)
        assert second.execute("SELECT 1").fetchone() == (1,)
        reach.ok(second)
        assert reach.down
        with reach.open(pg_dsn, purpose="test third", autocommit=True) as third:
            third.execute("SELECT 1")
            reach.ok(third)
        assert not reach.down
    finally:
        first.close()
        second.close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(said) == 2 and said[0].startswith("store unreachable: the test server: "), said
    assert said[1].startswith("store reachable again: the test server (unreachable for "), said
