"""Wake-ups on PostgreSQL reach a watcher as soon as the notification arrives, not at the end of the listener's
periodic look at the leases (a pickup across hosts is as quick as the notification)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.store import open_store
from tests.helpers.daemons import task

pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

DEADLINE = 30.0


def test_a_change_by_another_store_wakes_the_watcher_before_the_next_look(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the listener's look at the leases every 10 minutes, a task added through another store still wakes the
    watcher with ``queue`` at once (well within the deadline)."""
    from agentd.store.postgres import migrations, notify
    from agentd.store.postgres.connect import connect

    monkeypatch.setattr(notify, "LOOK_EVERY", 600.0)
    with connect(pg_dsn) as conn:
        migrations.migrate(conn, pg_dsn)
    config = config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": pg_dsn})
    watched, writer = open_store(config), open_store(config)
    watched.create({"tasks": [task("A1")]})
    woken: list[str] = []
    arrived = threading.Event()

    def wake(reason: str) -> None:
        woken.append(reason)
        arrived.set()

    watching: Any = watched.watch(wake)
    assert watching is not None
    try:
        writer.transaction(lambda txn: txn.add(task("A2")))
        assert arrived.wait(DEADLINE), "no wake-up until the listener's next look at the leases"
        assert "queue" in woken
    finally:
        watching.stop()
        writer.close()
        watched.close()
