"""The storage contract: every store (``agentd.store.base.Store``) passes this one module.

The ``project`` fixture is parametrised by kind: ``"file"`` and ``"postgresql"`` (a real server the suite starts,
a fresh database per test, the schema made by ``agentd store init``'s migrations). A new store adds its kind to
``KINDS`` (and whatever server it needs to the fixture) and must pass every test unchanged. Processes that claim,
crash or race are real child processes opening the same store (``CHILD`` below), never threads or mocks.
"""

from __future__ import annotations

import json
import os
import queue as queue_mod
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd import faults
from agentd.core import scheduler, transitions
from agentd.core.model import Task
from agentd.core.scheduler import Kind, Outcome
from agentd.store import open_store
from agentd.store.base import Filter, Store, Txn, new_record
from tests.helpers.daemons import task, wait_for, write_queue

KINDS = ["file", "postgresql"]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEADLINE = 60.0  # s: children on a loaded machine

# A child process that opens the project's store and does one thing (argv: root, action, args...).
CHILD = r"""
import json, os, sys, time
from datetime import UTC, datetime
from pathlib import Path
from agentd import config as config_mod
from agentd.store import open_store
from agentd.store.base import new_record

root, action, *args = sys.argv[1:]
store = open_store(config_mod.load(root=Path(root)))
if action == "claim":  # args: the task, then "new" (a file made for it), "ahead" (made ahead) or "spare" (reused)
    def claim(task_id):
        def change(txn):
            token = txn.issue_tokens([0])[0]
            record = new_record(task_id, token, "builder", now=datetime.now(UTC), ttl=600, heartbeat=60, attempt=1)
            held = txn.claim(record)
            assert held is not None
            return held
        return store.transaction(change)
    how = args[1] if len(args) > 1 else "new"
    if how in ("ahead", "spare"):
        store.prepare(1)  # (as a daemon's store: files made ahead, released ones kept as spares)
    if how == "spare":
        claim("A3").release()  # (its file kept: the claim below reuses it)
    held = claim(args[0])
    print("claimed", held.token, flush=True)
    sys.stdin.read()  # hold it until killed
elif action == "wip":  # one claim pass as a daemon makes it: count WIP, claim task args[0] if there is room
    from agentd.core import scheduler, transitions
    role = config_mod.load(root=Path(root)).role("builder")
    acquired = {}
    print("ready", flush=True)
    sys.stdin.readline()  # all start together
    def change(txn):
        seen = txn.leases()
        for task_id in acquired:
            seen.pop(task_id, None)  # (our own claim from an earlier try)
        snap = txn.snapshot
        if scheduler.wip_room(snap.tasks, role, snap.wip_limits, seen, txn.now) <= 0:
            return None
        time.sleep(0.2)  # (widens the race: the others count meanwhile)
        for view in snap.tasks:
            if view.id != args[0] or view.status != "ready" or view.id in seen:
                continue
            held = acquired.get(view.id)
            if held is None:
                token = txn.issue_tokens([0])[0]
                held = txn.claim(new_record(view.id, token, "builder", now=txn.now, ttl=600, heartbeat=60, attempt=1))
            if held is None:
                continue
            acquired[view.id] = held
            transitions.claim(txn.task(view.id), role, {"role": "builder", "token": held.token})
            return held
        return None
    held = store.transaction(change)
    for task_id, other in acquired.items():
        if held is None or task_id != held.task_id:
            other.release()
    print("claimed", held.task_id if held else "-", flush=True)
    sys.stdin.read()  # hold it until killed
elif action == "state":
    store.transaction(lambda txn: txn.state.__setitem__("mode", args[0]))
elif action == "count":
    for _ in range(int(args[0])):
        def bump(txn):
            raw = txn.task("A1")
            raw["count"] = raw.get("count", 0) + 1
            txn.state["count"] = txn.state.get("count", 0) + 1
        store.transaction(bump)
"""


@dataclass
class Project:
    """A project folder, its store, and how to start a child process on the same store."""

    root: Path
    kind: str
    store: Store
    uri: str  # what AGENTD_STORE says for this store

    def child(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a child that opens this project's store and runs ``args`` (see ``CHILD``)."""
        full = {**os.environ, "AGENTD_STORE": self.uri, **(env or {})}
        full.pop("AGENTD_QUEUE", None)
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self.root), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full,
        )


@pytest.fixture(params=KINDS)
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """A fresh project with three tasks (one with fields agentd does not know), on the store of each kind."""
    kind = str(request.param)
    path = write_queue(
        tmp_path,
        [task("A1"), task("A2", custom={"z": 1, "a": [2, 3]}, zeta="last"), task("A3", status="done")],
        {"builder": 1},
    )
    # Four processes of one test take the queue lock in turn a hundred times: on a loaded machine one may wait past
    # the default 30 s. The contract is about lost updates, not how long a lock is waited for.
    (tmp_path / "agentd.toml").write_text("lock_timeout = 300\n")
    uri = kind
    if kind == "postgresql":
        uri = request.getfixturevalue("pg_dsn")
        _load_into_database(uri, json.loads(path.read_text()))
        path.unlink()  # (nothing may read the file: the queue is in the database)
    config = config_mod.load(root=tmp_path, environ={"AGENTD_STORE": uri})
    store = open_store(config)
    yield Project(tmp_path, kind, store, uri)
    store.close()


def _load_into_database(uri: str, queue: dict[str, Any]) -> None:
    """Make the schema (as ``agentd store init`` does) and load ``queue`` into the database."""
    from agentd.store.postgres import migrations
    from agentd.store.postgres.connect import connect

    with connect(uri) as conn:
        migrations.migrate(conn, uri)
    store = open_store(config_mod.load(root=Path("/nonexistent"), environ={"AGENTD_STORE": uri}))
    try:
        assert store.create(queue)
    finally:
        store.close()


def builder() -> Any:
    return config_mod.load(root=Path("/nonexistent"), environ={}).role("builder")


def claim_in(txn: Txn, task_id: str, token: int | None = None) -> Any:
    """Claim ``task_id`` for the builder as a daemon does: a token, the lease, then the task says so."""
    role = builder()
    raw = txn.task(task_id)
    assert raw is not None
    floor = transitions.next_token(Task.from_dict(raw, index=0, path=""), token) - 1
    issued = txn.issue_tokens([floor])[0]
    held = txn.claim(new_record(task_id, issued, "builder", now=NOW, ttl=600, heartbeat=60, attempt=1))
    if held is not None:
        transitions.claim(raw, role, {"role": "builder", "token": held.token, "owner": held.record.owner})
    return held


def test_added_tasks_read_back_with_unknown_fields_in_order(project: Project) -> None:
    """Tasks added (at the end, and as a subtask) read back whole: unknown fields, key order and task order kept."""
    new = {"id": "N1", "title": "new", "zz_custom": {"b": 1, "a": 2}, "status": "ready", "aa_last": None}
    sub = {"id": "N2", "title": "child", "status": "ready", "x": [1]}

    def change(txn: Txn) -> None:
        txn.add(dict(new))
        txn.add(dict(sub), parent="N1")

    project.store.transaction(change)
    snapshot = project.store.read()
    assert [t.id for t in snapshot.tasks] == ["A1", "A2", "A3", "N1", "N2"]
    got = snapshot.task("N1")
    assert got is not None and list(got)[: len(new)] == list(new) and got["zz_custom"] == {"b": 1, "a": 2}
    assert snapshot.task("N2") == sub
    old = snapshot.task("A2")
    assert old is not None and old["custom"] == {"z": 1, "a": [2, 3]} and list(old)[-1] == "zeta"
    assert project.store.transaction(lambda txn: txn.ids()) == ["A1", "A2", "A3", "N1", "N2"]


def test_removed_tasks_are_gone_and_the_rest_unchanged(project: Project) -> None:
    """A removed task (and its subtasks) is gone; the others read back as they were."""
    before = project.store.read()
    kept = before.task("A3")
    project.store.transaction(lambda txn: (txn.add({"id": "S1", "status": "ready"}, parent="A1"), txn.remove("A1")))
    after = project.store.read()
    assert [t.id for t in after.tasks] == ["A2", "A3"] and after.task("A3") == kept
    assert project.store.transaction(lambda txn: txn.remove("nope")) is None


def test_a_transaction_that_raises_changes_nothing(project: Project) -> None:
    """A change that raises leaves the tasks and the project state as they were."""
    project.store.transaction(lambda txn: txn.state.__setitem__("mode", "on"))
    before = project.store.read().data

    def change(txn: Txn) -> None:
        raw = txn.task("A1")
        assert raw is not None
        raw["status"] = "done"
        txn.add({"id": "X1", "status": "ready"})
        txn.state["mode"] = "off"
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        project.store.transaction(change)
    assert project.store.read().data == before
    assert project.store.state() == {"mode": "on"}


def test_a_replaced_queue_reads_back_whole_in_its_own_order(project: Project) -> None:
    """Txn.replace swaps the whole queue (top-level fields, tasks, key order); the change sees the new tasks; a
    change that replaces and then raises leaves the old queue."""
    queue = {
        "metadata": {"z": 1, "a": None},
        "tasks": [
            {"id": "R1", "title": "one", "status": "ready", "zz": {"b": 1, "a": 2}},
            {"id": "R2", "title": "two", "status": "ready", "subtasks": [{"id": "R3", "title": "three"}]},
        ],
        "sprint": 9,
    }
    before = project.store.read().data

    def failing(txn: Txn) -> None:
        txn.replace(json.loads(json.dumps(queue)))
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        project.store.transaction(failing)
    assert project.store.read().data == before

    def change(txn: Txn) -> list[str]:
        txn.replace(json.loads(json.dumps(queue)))
        sub = txn.task("R3")
        assert sub is not None and txn.task("A1") is None
        sub["status"] = "ready"
        return txn.ids()

    assert project.store.transaction(change) == ["R1", "R2", "R3"]
    data = project.store.read().data
    assert list(data) == ["metadata", "tasks", "sprint"] and list(data["metadata"]) == ["z", "a"]
    assert [t.id for t in project.store.read().tasks] == ["R1", "R2", "R3"]
    assert data["tasks"][0] == queue["tasks"][0] and list(data["tasks"][0]["zz"]) == ["b", "a"]
    assert data["tasks"][1]["subtasks"][0] == {"id": "R3", "title": "three", "status": "ready"}


def test_claim_tokens_rise_also_after_the_queue_is_reverted(project: Project) -> None:
    """Each claim's token is above every earlier one, even when the task is put back as it was before any claim."""
    first = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert first is not None and first.token >= 1
    original = project.store.read().task("A2")
    first.release()
    second = project.store.transaction(lambda txn: claim_in(txn, "A2"))
    assert second.token > first.token
    second.release()

    def revert(txn: Txn) -> None:  # both tasks as they were before any claim (a queue checked out again, say)
        for task_id in ("A1", "A2"):
            txn.remove(task_id)
        txn.add(task("A1"))
        txn.add(dict(original or {}))

    project.store.transaction(revert)
    third = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert third.token > second.token
    third.release()


def test_a_second_claim_of_a_leased_task_fails(project: Project) -> None:
    """While a lease is held, claiming the same task again gets nothing."""
    held = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    try:
        again = project.store.transaction(
            lambda txn: txn.claim(new_record("A1", 99, "builder", now=NOW, ttl=600, heartbeat=60, attempt=1))
        )
        assert again is None
        assert project.store.leases()["A1"].token == held.token
    finally:
        held.release()


def test_wip_counting_sees_live_leases(project: Project) -> None:
    """A live lease holds the role's WIP even when the queue does not say the task runs (a hand edit undid it)."""
    role = builder()
    held = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    try:
        snapshot = project.store.read()
        leases = project.store.leases()
        assert scheduler.wip_room(snapshot.tasks, role, snapshot.wip_limits, leases, NOW) == 0

        def undo(txn: Txn) -> None:
            raw = txn.task("A1")
            assert raw is not None
            raw.update(status="ready", lease=None)

        project.store.transaction(undo)
        snapshot = project.store.read()
        assert scheduler.wip_room(snapshot.tasks, role, snapshot.wip_limits, project.store.leases(), NOW) == 0
    finally:
        held.release()
    snapshot = project.store.read()
    assert scheduler.wip_room(snapshot.tasks, role, snapshot.wip_limits, project.store.leases(), NOW) == 1


def test_a_completion_with_a_stale_token_is_refused(project: Project) -> None:
    """Recording an outcome under an old token changes nothing; under the current one it is recorded."""
    role = builder()
    config = config_mod.load(root=project.root, environ={})
    first = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    first.release()
    second = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    before = project.store.read().data

    def complete(token: int) -> Any:
        def change(txn: Txn) -> Any:
            raw = txn.task("A1")
            view = Task.from_dict(raw, index=0, path="") if raw is not None else None
            return transitions.complete(raw, view, role, Outcome(Kind.SUCCESS, 0), token, txn.now, config.workflow)

        return project.store.transaction(change)

    refused = complete(first.token)
    assert isinstance(refused, str) and "no longer current" in refused
    assert project.store.read().data == before
    done = complete(second.token)
    assert not isinstance(done, str)
    assert project.store.read().task("A1")["status"] == role.on_success  # type: ignore[index]
    second.release()


def test_a_released_lease_is_gone(project: Project) -> None:
    """After release the lease is not observed, not listed, and the task can be claimed again."""
    held = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert project.store.lease_ids() == ["A1"] and project.store.read_lease("A1") is not None
    held.release()
    held.release()  # (idempotent)
    assert project.store.leases() == {} and project.store.lease_ids() == []
    assert project.store.read_lease("A1") is None
    again = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert again is not None
    again.release()


def test_a_renewed_lease_stays_ours_until_broken(project: Project) -> None:
    """Renewing a held lease succeeds; once a peer breaks it, renewing says it is lost."""
    held = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert held.renew(NOW) is True
    project.store.transaction(lambda txn: txn.break_held("A1"))
    assert held.renew(NOW) is False
    held.release()
    assert held.renew(NOW) is None


def test_a_lease_whose_holder_died_is_judged_free(project: Project) -> None:
    """A real child claims and is SIGKILLed: its lease is judged free at once and can be broken and re-claimed."""
    child = project.child("claim", "A1")
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("claimed"), (line, child.stderr.read() if child.stderr else "")
        seen = project.store.leases()["A1"]
        assert scheduler.judge(seen, NOW, 600).live  # alive: held
        assert project.store.transaction(lambda txn: txn.break_free("A1")) is False
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=DEADLINE)
    seen = wait_for(
        lambda: (lease := project.store.leases().get("A1")) and not scheduler.judge(lease, NOW, 600).live and lease,
        DEADLINE,
        "the dead holder's lease to be judged free",
    )
    assert seen.locked is False
    assert project.store.transaction(lambda txn: txn.break_free("A1")) is True
    assert project.store.leases() == {}
    held = project.store.transaction(lambda txn: claim_in(txn, "A1"))
    assert held is not None and held.token > (seen.token or 0)
    held.release()


def test_journal_append_and_read_with_filters(project: Project) -> None:
    """Events written by two writers read back oldest first, and each filter keeps only what it names."""
    builder_log = project.store.journal("builder")
    tester_log = project.store.journal("tester")
    builder_log.emit("claimed", "claimed A1", task="A1", token=1)
    tester_log.emit("claimed", "claimed A2", task="A2", token=2)
    builder_log.emit("finished", "finished A1", task="A1", outcome="success")
    every = list(project.store.events())
    assert [(e.name, e.task, e.role) for e in every] == [
        ("claimed", "A1", "builder"),
        ("claimed", "A2", "tester"),
        ("finished", "A1", "builder"),
    ]
    assert every[0].data["token"] == 1 and every[2].message == "finished A1"
    assert [e.name for e in project.store.events(Filter(task="A1"))] == ["claimed", "finished"]
    assert [e.task for e in project.store.events(Filter(role="tester"))] == ["A2"]
    assert [e.task for e in project.store.events(Filter(types=frozenset({"finished"})))] == ["A1"]
    assert list(project.store.events(Filter(since=every[-1].time.replace(year=2999)))) == []


def test_daemons_registry_shows_a_daemon_and_forgets_it_on_release(project: Project) -> None:
    """A registration is listed as running for as long as it is held, and a second one of the same name refused."""
    assert project.store.daemons() == []
    held = project.store.register("builder", "b1", started=NOW, interval=5.0, log=None, boot=1.0, beat_every=2.0)
    try:
        listed = project.store.daemons()
        assert len(listed) == 1 and listed[0].running
        assert listed[0].info is not None and listed[0].info.name == "builder.b1" and listed[0].info.pid == os.getpid()
        with pytest.raises(RuntimeError):  # AlreadyRunning
            project.store.register("builder", "b1", started=NOW, interval=5.0, log=None)
        held.beat(NOW, 2.0)
        assert project.store.daemons()[0].info.beat_boot == 2.0  # type: ignore[union-attr]
    finally:
        held.release()
    assert [probe for probe in project.store.daemons() if probe.running] == []


def test_project_state_round_trips(project: Project) -> None:
    """State set in a transaction reads back (outside and in the next transaction); the queue is not touched."""
    queue_before = project.store.read().data
    assert project.store.state() == {}
    project.store.transaction(lambda txn: txn.state.update(paused={"builder": True}, note="ünïcode"))
    assert project.store.state() == {"paused": {"builder": True}, "note": "ünïcode"}
    assert project.store.transaction(lambda txn: dict(txn.state)) == {"paused": {"builder": True}, "note": "ünïcode"}
    project.store.transaction(lambda txn: txn.state.pop("note"))
    assert project.store.state() == {"paused": {"builder": True}}
    assert project.store.read().data == queue_before


@pytest.mark.parametrize("action", ["exit", "kill"])
@pytest.mark.parametrize("point", [*faults.STORE_POINTS])
def test_project_state_survives_a_crash_mid_transaction(project: Project, point: str, action: str) -> None:
    """A real process killed while writing state leaves the old state whole; the next transaction writes the new."""
    project.store.transaction(lambda txn: txn.state.__setitem__("mode", "old"))
    child = project.child("state", "new", env={"AGENTD_CRASH_AT": f"{point}:{action}"})
    _, err = child.communicate(timeout=DEADLINE)
    assert child.returncode == (-signal.SIGKILL if action == "kill" else faults.CRASH_EXIT_CODE), err
    assert project.store.state() == {"mode": "old"}
    done = project.child("state", "new")
    _, err = done.communicate(timeout=DEADLINE)
    assert done.returncode == 0, err
    assert project.store.state() == {"mode": "new"}


def test_concurrent_transactions_from_processes_lose_no_update(project: Project) -> None:
    """Four processes each add 1 twenty-five times, to a task and to the state: every increment is kept."""
    children = [project.child("count", "25") for _ in range(4)]
    for child in children:
        _, err = child.communicate(timeout=DEADLINE * 2)
        assert child.returncode == 0, err
    counted = project.store.read().task("A1")
    assert counted is not None and counted["count"] == 100
    assert project.store.state()["count"] == 100
    json.dumps(project.store.read().data)  # (still one JSON document)


def test_wip_holds_with_claimers_in_several_processes(project: Project) -> None:
    """Four processes make a claim pass at once, each for a task of its own, under a builder WIP limit of 1: exactly
    one claims, and one lease lives."""
    project.store.transaction(lambda txn: [txn.add(task(f"W{n}")) for n in range(4)])
    children = [project.child("wip", f"W{n}") for n in range(4)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
        for child in children:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
        said = []
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("claimed"), (line, child.stderr.read() if child.stderr else "")
            said.append(line.split()[1])
        claimed = [task_id for task_id in said if task_id != "-"]
        assert len(claimed) == 1, said
        assert list(project.store.leases()) == claimed
        assert [t.id for t in project.store.read().tasks if t.status == "in_progress"] == claimed
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=DEADLINE)


@pytest.mark.parametrize("how", ["new", "ahead", "spare"])
def test_watch_wakes_on_another_process_changing_the_queue_and_on_a_lease_going(project: Project, how: str) -> None:
    """A watcher is woken with "queue" when another process changes the queue, "lease" when a lease's holder dies:
    whether its file was made for the claim, made ahead (the file store: unnamed, named once written) or reused
    from a spare (a daemon's claims: the kernel reports the close of those under another name than the lease's)."""
    woken: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
    watching = project.store.watch(woken.put)
    assert watching is not None
    try:
        writer = project.child("count", "1")
        _, err = writer.communicate(timeout=DEADLINE)
        assert writer.returncode == 0, err
        wait_for(lambda: _drain(woken, "queue"), DEADLINE, "a wake-up for the queue changed by another process")
        holder = project.child("claim", "A2", how)
        assert holder.stdout is not None and holder.stdout.readline().startswith("claimed")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=DEADLINE)
        wait_for(lambda: _drain(woken, "lease"), DEADLINE, "a wake-up for the lease whose holder died")
    finally:
        watching.stop()


def _drain(woken: queue_mod.SimpleQueue[str], reason: str) -> bool:
    """Whether ``reason`` is among the wake-ups received so far (those read are consumed)."""
    while not woken.empty():
        if woken.get() == reason:
            return True
    return False
