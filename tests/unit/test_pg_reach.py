"""The PostgreSQL store's shared judgement of its server (store/postgres/reach.py): one line when it is lost, one
when it is back, and new sessions tried at most once per capped exponential backoff step meanwhile."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("psycopg", reason="psycopg is not installed")

from agentd.errors import StoreUnreachable
from agentd.store.postgres.reach import BACKOFF_MAX, Reach, Waiting, backoff

NOWHERE = "postgresql://agentd@127.0.0.1:1/agentd"  # port 1: refused at once


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_a_quarter_second_and_is_capped() -> None:
    """0.25, 0.5, 1, 2 ... never above BACKOFF_MAX, and jitter adds at most a quarter."""
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert backoff(40) == BACKOFF_MAX
    assert backoff(40, jitter=1.0) == BACKOFF_MAX * 1.25


def test_a_loss_is_logged_once_and_the_return_once(caplog: pytest.LogCaptureFixture) -> None:
    """Many failures from many sessions make one warning; the first success after them one notice."""
    caplog.set_level(logging.DEBUG, logger="agentd.store.postgres.reach")
    reach = Reach("postgresql://db/x", monotonic=Ticks(), jitter=lambda: 0.0)
    reach.announce = True
    for _ in range(5):
        reach.lost(ConnectionError("server closed the connection unexpectedly"))
    assert reach.down
    reach.ok()
    reach.ok()
    assert not reach.down
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [
        "store unreachable: postgresql://db/x: server closed the connection unexpectedly; retrying with backoff",
        "store reachable again: postgresql://db/x (unreachable for 0.0 s)",
    ], said


def test_new_sessions_are_tried_once_per_backoff_step() -> None:
    """After a loss one try may go at once; after it fails, tries are refused without connecting until the next
    step, whose length doubles."""
    ticks = Ticks()
    reach = Reach("postgresql://db/x", monotonic=ticks, jitter=lambda: 0.0)
    reach.lost("terminating connection due to administrator command")
    tried = 0
    for step in (0.25, 0.5, 1.0):
        with pytest.raises(StoreUnreachable) as refused:
            reach.open(NOWHERE, purpose="test")  # a real try: refused by the (absent) server
        tried += 1
        assert not isinstance(refused.value, Waiting), refused.value
        for _ in range(3):
            with pytest.raises(Waiting, match="retrying with backoff"):
                reach.open(NOWHERE, purpose="test")  # refused by the gate: no try
        ticks.now += step
    assert tried == 3 and reach.down


def test_a_process_that_does_not_ride_outages_out_logs_them_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    """A command (not a daemon, not a follower) says nothing of a loss in the log: its error line says it."""
    caplog.set_level(logging.DEBUG, logger="agentd.store.postgres.reach")
    reach = Reach("postgresql://db/x", monotonic=Ticks(), jitter=lambda: 0.0)
    reach.lost("server closed the connection unexpectedly")
    reach.ok()
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


class _Session:
    """A session never opened through the Reach: to it, one opened before any outage."""


def test_a_session_from_before_the_outage_that_still_answers_does_not_end_it(caplog: pytest.LogCaptureFixture) -> None:
    """While a server shuts down its sessions are cut one by one: a statement through on one not cut yet is no sign
    the server is back (it refuses new sessions). Only a success not tied to an old session ends the outage — one
    line lost, one line back, however the old sessions go on answering meanwhile."""
    caplog.set_level(logging.DEBUG, logger="agentd.store.postgres.reach")
    ticks = Ticks()
    reach = Reach("postgresql://db/x", monotonic=ticks, jitter=lambda: 0.0)
    reach.announce = True
    old = _Session()
    reach.lost("server closed the connection unexpectedly", _Session())
    ticks.now += 0.01
    reach.ok(old)
    assert reach.down
    reach.lost("the database system is shutting down")  # a new session refused: the same outage, not a new one
    ticks.now += 5
    reach.ok()  # a new session opened
    assert not reach.down
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [
        "store unreachable: postgresql://db/x: server closed the connection unexpectedly; retrying with backoff",
        "store reachable again: postgresql://db/x (unreachable for 5.0 s)",
    ], said
