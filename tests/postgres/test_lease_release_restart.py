"""A lease released just after the server restarted is removed all the same (else its task is never claimed again)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agentd import config as config_mod
from agentd.store import open_store
from agentd.store.base import HeldLease, Txn, new_record
from tests.helpers import pg
from tests.helpers.daemons import task, write_queue


def test_a_lease_released_after_a_server_restart_is_gone(tmp_path: Path, own_server: pg.Server) -> None:
    """Claim, restart the server (every session cut), release: the lease row is removed on a new session, so the
    task can be claimed again at once."""
    dsn = pg.fresh_database(own_server)
    write_queue(tmp_path, [task("A1")], {"builder": 1})
    config = config_mod.load(root=tmp_path, environ={"AGENTD_STORE": dsn})
    from agentd.store.postgres import migrations
    from agentd.store.postgres.connect import connect

    with connect(dsn) as conn:
        migrations.migrate(conn, dsn)
    import json

    store = open_store(config)
    try:
        assert store.create(json.loads((tmp_path / "SPRINT_QUEUE.json").read_text()))

        def claim(txn: Txn) -> HeldLease | None:
            token = txn.issue_tokens([0])[0]
            return txn.claim(
                new_record("A1", token, "builder", now=datetime.now(UTC), ttl=600, heartbeat=60, attempt=1)
            )

        held = store.transaction(claim)
        assert held is not None and store.lease_ids() == ["A1"]
        own_server.restart()
        held.release()
        assert store.lease_ids() == []
        again = store.transaction(claim)
        assert again is not None
        again.release()
    finally:
        store.close()
