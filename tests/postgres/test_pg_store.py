"""What the PostgreSQL store adds to the contract: the database clock judges leases, a server restart frees no
lease, the queue's own fields and each task's text survive, and the file store never imports psycopg."""

from __future__ import annotations

import contextlib
import json
import queue as queue_mod
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.core import scheduler
from agentd.store import open_store
from agentd.store.base import new_record
from tests.helpers.daemons import task, wait_for

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

DEADLINE = 60.0
QUEUE = {"version": 3, "wip_limits": {"builder": 2}, "tasks": [], "sprint": {"name": "s1", "zz": [1, 2]}}


@pytest.fixture
def store(pg_dsn: str) -> Iterator[Any]:
    """A PostgreSQL store with its schema (as ``agentd store init`` makes it) and a queue of two tasks."""
    from agentd.store.postgres import migrations
    from agentd.store.postgres.connect import connect

    with connect(pg_dsn) as conn:
        migrations.migrate(conn, pg_dsn)
    opened = open_store(config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": pg_dsn}))
    opened.create({**QUEUE, "tasks": [task("A1"), task("A2", custom={"b": 1, "a": 2})]})
    yield opened
    opened.close()


def claim(store: Any, task_id: str) -> Any:
    def change(txn: Any) -> Any:
        token = txn.issue_tokens([0])[0]
        now = datetime.now(UTC)
        return txn.claim(new_record(task_id, token, "builder", now=now, ttl=600, heartbeat=60, attempt=1))

    return store.transaction(change)


def test_lease_age_is_the_database_clock_whatever_the_host_says(store: Any, pg_dsn: str) -> None:
    """A lease renewed by the server 700 s ago is stale (ttl 600) even to a host whose clock is an hour behind; a
    fresh one is live even to a host a day ahead."""
    held = claim(store, "A1")
    try:
        fresh = store.leases()["A1"]
        assert scheduler.judge(fresh, datetime.now(UTC) + timedelta(days=1), 600).live
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE agentd_leases SET heartbeat = now() - interval '700 seconds'")
        old = store.leases()["A1"]
        assert old.locked is True and old.beat_age is not None and old.beat_age >= 700
        verdict = scheduler.judge(old, datetime.now(UTC) - timedelta(hours=1), 600)
        assert not verdict.live and "no heartbeat" in verdict.cause
        assert held.renew(datetime(2001, 1, 1, tzinfo=UTC)) is True  # (the host's time is not the heartbeat)
        assert store.leases()["A1"].beat_age < 600
    finally:
        held.release()


def test_a_server_restart_frees_no_lease_and_the_holder_takes_its_lock_again(
    store: Any, pg_server: Any, pg_dsn: str
) -> None:
    """A restart drops every session's lock: the lease is then judged by its heartbeat alone (not free, not
    breakable); the holder's next heartbeat reconnects and locks it again."""
    held = claim(store, "A1")
    try:
        pg_server.restart()
        seen = wait_for(lambda: _leases(store).get("A1"), DEADLINE, "the store to read the leases again")
        assert seen.locked is None and scheduler.judge(seen, datetime.now(UTC), 600).live
        assert store.transaction(lambda txn: txn.break_free("A1")) is False
        assert held.renew(datetime.now(UTC)) is True
        assert store.leases()["A1"].locked is True
    finally:
        held.release()
    assert store.leases() == {}


def test_after_a_restart_the_holder_locks_its_lease_before_it_beats(store: Any, pg_server: Any, pg_dsn: str) -> None:
    """After a restart the holder's next heartbeat must not show a renewed beat with the lock still free: a peer
    reads that as proven abandoned and breaks the lease while its run goes on (seen once under load: a task run
    twice). Probed at the instant the holder takes its lock again: the lease is not breakable then."""
    held = claim(store, "A1")
    seen: list[Any] = []
    broken: list[bool] = []
    lock_again = held._lock_again

    def probe_then_lock() -> bool:
        seen.append(store.leases()["A1"].locked)
        broken.append(store.transaction(lambda txn: txn.break_free("A1")))
        return bool(lock_again())

    held._lock_again = probe_then_lock
    try:
        pg_server.restart()
        wait_for(lambda: _leases(store).get("A1"), DEADLINE, "the store to read the leases again")
        assert held.renew(datetime.now(UTC)) is True
        assert seen == [None] and broken == [False]  # judged by its beat alone, not breakable
        assert store.leases()["A1"].locked is True
    finally:
        held.release()


def _leases(store: Any) -> dict[str, Any]:
    try:
        return dict(store.leases())
    except Exception:  # the server is still coming back
        return {}


def test_the_queue_fields_and_task_text_are_kept_and_only_changed_rows_written(store: Any, pg_dsn: str) -> None:
    """Top-level fields keep their order; a change rewrites only its own task's row, whose text keeps key order."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        before = dict(conn.execute("SELECT id, rev FROM agentd_tasks").fetchall())

    def change(txn: Any) -> None:
        raw = txn.task("A2")
        raw["status"] = "blocked"

    store.transaction(change)
    data = store.read().data
    assert list(data) == ["version", "wip_limits", "tasks", "sprint"] and data["sprint"] == {"name": "s1", "zz": [1, 2]}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        after = dict(conn.execute("SELECT id, rev FROM agentd_tasks").fetchall())
        body = conn.execute("SELECT body FROM agentd_tasks WHERE id = 'A2'").fetchone()[0]
    assert after["A1"] == before["A1"] and after["A2"] != before["A2"]
    assert (
        list(json.loads(body)) == list(task("A2", custom={"b": 1, "a": 2})) and json.loads(body)["status"] == "blocked"
    )


def test_a_task_made_invalid_is_refused_and_nothing_written(store: Any) -> None:
    """A change that would write a task the schema refuses raises QueueInvalid naming the JSON path; nothing changes."""
    from agentd.errors import QueueInvalid

    before = store.read().data

    def change(txn: Any) -> None:
        txn.task("A1")["status"] = 7

    with pytest.raises(QueueInvalid) as caught:
        store.transaction(change)
    assert "$.tasks[0].status" in str(caught.value) and "postgresql://" in str(caught.value)
    assert store.read().data == before


def test_wake_ups_skip_the_stores_own_writes(store: Any, pg_dsn: str) -> None:
    """A watcher is not woken by its own store's transactions, and is by another store's."""
    woken: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
    watching = store.watch(woken.put)
    assert watching is not None
    other = open_store(config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": pg_dsn}))
    try:
        store.transaction(lambda txn: txn.task("A1").__setitem__("note", "mine"))
        other.transaction(lambda txn: txn.task("A1").__setitem__("note", "theirs"))
        assert wait_for(lambda: woken.get(timeout=DEADLINE), DEADLINE, "a wake-up") == "queue"
        assert woken.empty()  # (the own write's notification came first, and was dropped)
    finally:
        watching.stop()
        other.close()


def test_the_file_store_never_imports_psycopg(tmp_path: Path) -> None:
    """Opening, reading and changing a file store loads no psycopg (the PostgreSQL store is imported only when used)."""
    (tmp_path / "SPRINT_QUEUE.json").write_text(json.dumps({"tasks": [task("A1")]}))
    code = (
        "import sys; from pathlib import Path; from agentd import config; from agentd.store import open_store;"
        f"s = open_store(config.load(root=Path({str(tmp_path)!r}), environ={{}}));"
        "s.transaction(lambda t: t.task('A1').__setitem__('x', 1)); s.read(); s.close();"
        "print('psycopg' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_a_daemon_registration_is_taken_again_after_a_server_restart(store: Any, pg_server: Any) -> None:
    """A restart frees the registration's lock (the daemon looks stopped); its next beat registers it again."""
    held = store.register("builder", "b1", started=datetime.now(UTC), interval=5.0, log=None, boot=1.0, beat_every=2.0)
    try:
        assert [probe.running for probe in store.daemons()] == [True]
        pg_server.restart()
        wait_for(lambda: _daemons(store) == [False], DEADLINE, "the registration to look stopped after the restart")
        held.beat(datetime.now(UTC), 2.0)
        assert [(probe.running, probe.info.beat_boot) for probe in store.daemons()] == [(True, 2.0)]
    finally:
        held.release()
    assert store.daemons() == []


def _daemons(store: Any) -> list[bool]:
    try:
        return [probe.running for probe in store.daemons()]
    except Exception:  # the server is still coming back
        return []


def test_wake_ups_come_back_after_a_server_restart_logged_once(
    store: Any, pg_server: Any, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The listening session lost to a restart is re-established (one warning, one notice), and another store's
    change wakes the watcher again."""
    caplog.set_level("INFO", logger="agentd.store.postgres")
    store.reach.announce = True  # (as a daemon's store does once registered)
    woken: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
    watching = store.watch(woken.put)
    assert watching is not None
    try:
        pg_server.restart()
        wait_for(lambda: "store reachable again" in caplog.text, DEADLINE, "the wake-up connection to come back")
        while not woken.empty():
            woken.get()  # (the wake-up that says "look: you may have missed something")
        other = open_store(config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": pg_dsn}))
        try:
            other.transaction(lambda txn: txn.task("A1").__setitem__("note", "after the restart"))
        finally:
            other.close()
        assert woken.get(timeout=DEADLINE) == "queue"
    finally:
        watching.stop()
    lost = [r for r in caplog.records if "store unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "store reachable again" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1, [r.getMessage() for r in caplog.records]


def test_structural_findings_follow_changes_of_ids_only(pg_dsn: str, store: Any) -> None:
    """A duplicate id stays quarantined across changes that leave ids and dependencies alone (findings reused), and
    is cured once one of the twins goes (findings recomputed), as another process sees it too."""
    store.transaction(lambda txn: txn.remove("A2"))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a twin, as a bad import or a hand edit could leave
        conn.execute("INSERT INTO agentd_tasks (id, ids, body) VALUES ('A1', '{A1}', %s)", (json.dumps(task("A1")),))
    assert set(store.read().quarantined) == {"A1"}
    store.transaction(lambda txn: txn.add(task("B1")))
    store.transaction(lambda txn: txn.task("B1").__setitem__("status", "blocked"))
    assert set(store.read().quarantined) == {"A1"}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM agentd_tasks WHERE position = (SELECT max(position) FROM agentd_tasks WHERE id = 'A1')"
        )
    assert store.read().quarantined == {}


CUT_AT_COMMIT = """
CREATE SEQUENCE cut_once;
CREATE FUNCTION cut_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('cut_once') = 1 THEN  -- (a sequence: not undone by the abort it causes)
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(30);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER cut_at_commit AFTER UPDATE ON agentd_tasks DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cut_at_commit();
"""


def test_a_session_lost_at_commit_is_asked_about_and_the_change_runs_again(store: Any, pg_dsn: str) -> None:
    """The server ends the transaction's session during its COMMIT (a deferred trigger): the store asks the server
    what became of the transaction (aborted), runs the change again on a new session, and the change is written
    exactly once."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(CUT_AT_COMMIT)
    tries = []

    def change(txn: Any) -> int:
        raw = txn.task("A1")
        raw["count"] = raw.get("count", 0) + 1
        tries.append(raw["count"])
        return int(raw["count"])

    assert store.transaction(change) == 1
    assert tries == [1, 1]
    assert [t.get("count") for t in store.read().data["tasks"] if t["id"] == "A1"] == [1]


def test_the_fate_of_a_transaction_whose_session_was_lost_is_asked_of_the_server(store: Any, pg_dsn: str) -> None:
    """Committed: True; rolled back: False; still in progress on a session the server thinks alive (a cut
    network): that session is ended first, then False."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("UPDATE agentd_tasks SET rev = rev WHERE id = 'A1'")
            committed = conn.execute("SELECT txid_current()").fetchone()[0]
        with contextlib.suppress(RuntimeError), conn.transaction():
            conn.execute("UPDATE agentd_tasks SET rev = rev WHERE id = 'A1'")
            aborted = conn.execute("SELECT txid_current()").fetchone()[0]
            raise RuntimeError("roll it back")
    assert store._committed(int(committed), "cut") is True
    assert store._committed(int(aborted), "cut") is False
    hanging = psycopg.connect(pg_dsn)
    try:
        hanging.execute("UPDATE agentd_tasks SET rev = rev WHERE id = 'A2'")
        pending = hanging.execute("SELECT txid_current()").fetchone()[0]
        assert store._committed(int(pending), "cut") is False
        with pytest.raises(psycopg.OperationalError):
            hanging.execute("SELECT 1")  # (its session was ended)
    finally:
        hanging.close()


def test_a_lost_lease_session_the_server_thinks_alive_is_ended_and_its_lock_taken_again(
    store: Any, pg_dsn: str
) -> None:
    """After a cut network the server may keep the lease's old session, and its lock, for hours: the holder's next
    renewal ends that session and takes the lock on its new one (else the lock would come free whenever the server
    noticed, with a fresh heartbeat: breakable as abandoned while the run goes on)."""
    import os

    held = claim(store, "A1")
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (held._conn.info.backend_pid,))
            # (the old session as the server still has it: named as the holder names it, holding the token's lock)
            old = psycopg.connect(pg_dsn, autocommit=True, application_name=f"agentd lease A1 {os.getpid()}")
            try:
                old.execute("SELECT pg_advisory_lock(%s)", (held.token,))
                assert held.renew(datetime.now(UTC)) is True
                holder = admin.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                    " AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (held.token,),
                ).fetchall()
                assert holder == [(held._conn.info.backend_pid,)], holder
                with pytest.raises(psycopg.OperationalError):
                    old.execute("SELECT 1")
            finally:
                old.close()
    finally:
        held.release()
