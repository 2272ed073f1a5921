"""What a daemon's pass costs on PostgreSQL: a wake-up reaches the watcher as soon as the notification arrives (not at
the end of the listener's periodic look at the leases), and a read rebuilds only what changed since the last one."""

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


def test_a_read_reuses_what_it_derived_from_rows_that_did_not_change(pg_dsn: str) -> None:
    """After one task changes, the next read's typed views of the other tasks are the very objects of the last read
    (a pass on a 100,000-task queue must not rebuild 100,000 views), and the changed task's view is new and right."""
    from agentd.store.postgres import migrations
    from agentd.store.postgres.connect import connect

    with connect(pg_dsn) as conn:
        migrations.migrate(conn, pg_dsn)
    store = open_store(config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": pg_dsn}))
    try:
        store.create({"tasks": [task("A1"), task("A2"), task("A3")]})
        before = {t.id: t for t in store.read().tasks}

        def done(txn: Any) -> None:
            txn.task("A2")["status"] = "done"

        store.transaction(done)
        after = {t.id: t for t in store.read().tasks}
        assert after["A1"] is before["A1"]
        assert after["A3"] is before["A3"]
        assert after["A2"] is not before["A2"]
        assert after["A2"].status == "done"
        assert [t.index for t in after.values()] == [0, 1, 2]
    finally:
        store.close()
