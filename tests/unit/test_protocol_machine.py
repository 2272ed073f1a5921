"""A state machine over the pure core: claim / heartbeat / complete / crash / hang / resume / recover.

Workers are modelled as the daemon uses the core: select under WIP, claim with a fresh token and a lease file, renew
heartbeats, finish through the fencing token, and recover stale leases (killing a hung holder's work first). The
invariants are the protocol's promises: no task runs twice at once, none is lost, tokens only grow, WIP holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agentd.config import build
from agentd.core import scheduler, transitions
from agentd.core.model import index_by_id, views
from agentd.core.scheduler import Kind, LeaseObservation, Outcome, View
from agentd.run import recovery
from tests.helpers.examples import examples

CONFIG = build(
    {
        "roles_replace_defaults": True,
        "defaults": {"lease_ttl": 60, "heartbeat": 10, "max_attempts": 3, "backoff": {"initial": 5}},
        "roles": {
            "builder": {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"},
            "tester": {"claims": "awaiting_test", "working": "testing", "on_success": "done"},
        },
    },
    root=__import__("pathlib").Path("/"),
    path=None,
)
WF = CONFIG.workflow
HOST = "here"
WORKERS = ("w1", "w2", "w3")
LIMITS = {"builder": 2, "tester": 1}


@dataclass
class Lease:
    """A lease file: who created it, its token, and its last heartbeat."""

    worker: str
    role: str
    token: int
    beat: datetime


@dataclass
class Worker:
    role: str
    state: str = "alive"  # alive | hung | dead
    holds: dict[str, int] = field(default_factory=dict)  # task id -> token it believes it holds


class Protocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.doc: dict[str, Any] = {
            "wip_limits": LIMITS,
            "tasks": [
                {"id": f"t{i}", "status": "ready", "dependencies": [f"t{i - 1}"] if i % 3 == 2 else []}
                for i in range(6)
            ],
        }
        self.ids = [t["id"] for t in self.doc["tasks"]]
        self.files: dict[str, Lease] = {}
        self.workers = {name: Worker("builder" if name != "w3" else "tester") for name in WORKERS}
        self.executing: dict[str, list[tuple[str, int]]] = {}  # task id -> [(worker, token)] of live executions
        self.tokens: dict[str, list[int]] = {}

    # -- what peers observe ------------------------------------------------------------------------------------------

    def observations(self) -> dict[str, LeaseObservation]:
        seen = {}
        for task_id, lease in self.files.items():
            holder = self.workers[lease.worker]
            locked = holder.state != "dead" and holder.holds.get(task_id) == lease.token
            seen[task_id] = LeaseObservation(
                task_id,
                token=lease.token,
                role=lease.role,
                host=HOST,
                pgid=1,
                locked=locked,
                heartbeat_at=lease.beat,
                acquired=lease.beat,
                ttl=60,
            )
        return seen

    def stop_execution(self, task_id: str, worker: str) -> None:
        self.executing[task_id] = [e for e in self.executing.get(task_id, []) if e[0] != worker]

    # -- rules -------------------------------------------------------------------------------------------------------

    @rule(name=st.sampled_from(WORKERS))
    def claim(self, name: str) -> None:
        worker = self.workers[name]
        if worker.state != "alive":
            return
        role = WF.role(worker.role)
        self.recover()
        view = View.build(views(self.doc), WF, self.now, self.observations(), role.lease_ttl)
        by_id = index_by_id(self.doc)
        for task in scheduler.select(role, view, LIMITS):
            old = self.files.get(task.id)
            if old is not None:
                continue  # a live file (stale ones were just recovered)
            token = transitions.next_token(task)
            transitions.claim(by_id[task.id], role, {"token": token, "role": role.name, "host": HOST})
            self.files[task.id] = Lease(name, role.name, token, self.now)
            worker.holds[task.id] = token
            self.executing.setdefault(task.id, []).append((name, token))
            previous = self.tokens.setdefault(task.id, [])
            assert not previous or token > previous[-1], (task.id, previous, token)
            previous.append(token)

    @rule(name=st.sampled_from(WORKERS), ok=st.booleans())
    def finish(self, name: str, ok: bool) -> None:
        worker = self.workers[name]
        if worker.state != "alive" or not worker.holds:
            return
        task_id, token = sorted(worker.holds.items())[0]
        role = WF.role(worker.role)
        by_id = index_by_id(self.doc)
        task = {t.id: t for t in views(self.doc)}.get(task_id)
        outcome = Outcome(Kind.SUCCESS, 0) if ok else Outcome(Kind.FAILURE, 1)
        transitions.complete(by_id.get(task_id), task, role, outcome, token, self.now, WF)
        del worker.holds[task_id]
        self.stop_execution(task_id, name)
        lease = self.files.get(task_id)
        if lease is not None and lease.worker == name and lease.token == token:
            del self.files[task_id]  # release removes only its own file

    @rule(name=st.sampled_from(WORKERS))
    def heartbeat(self, name: str) -> None:
        worker = self.workers[name]
        if worker.state != "alive":
            return
        for task_id, token in list(worker.holds.items()):
            lease = self.files.get(task_id)
            if lease is None or lease.worker != name or lease.token != token:
                # The lease was taken over: stop the task's process group.
                del worker.holds[task_id]
                self.stop_execution(task_id, name)
            else:
                lease.beat = self.now

    @rule(name=st.sampled_from(WORKERS))
    def crash(self, name: str) -> None:
        worker = self.workers[name]
        worker.state = "dead"
        for task_id in worker.holds:
            self.stop_execution(task_id, name)  # the shim kills the group when its daemon dies
        worker.holds.clear()

    @rule(name=st.sampled_from(WORKERS))
    def hang(self, name: str) -> None:
        if self.workers[name].state == "alive":
            self.workers[name].state = "hung"

    @rule(name=st.sampled_from(WORKERS))
    def resume_or_restart(self, name: str) -> None:
        # A resumed daemon may try to finish a task before its next heartbeat notices the lease is gone:
        # only the fencing token stands between that completion and the queue.
        self.workers[name].state = "alive"

    @rule(seconds=st.sampled_from([1, 10, 61, 61, 300]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def recover(self) -> None:
        plans = recovery.plan(views(self.doc), self.observations(), WF, self.now, this_host=HOST)
        by_id = index_by_id(self.doc)
        tasks = {t.id: t for t in views(self.doc)}
        for item in plans:
            lease = self.files.get(item.task_id)
            if item.kill and lease is not None:
                self.stop_execution(item.task_id, lease.worker)  # kill the hung holder's group first
            if lease is not None and not item.kill and item.lease is not None and item.lease.locked:
                raise AssertionError("a locked lease on this host is only broken after killing its group")
            self.files.pop(item.task_id, None)
            if item.action is recovery.Action.REQUEUE and item.role is not None:
                transitions.requeue(
                    by_id[item.task_id], tasks[item.task_id], WF.role(item.role), item.cause, self.now, WF
                )

    # -- invariants --------------------------------------------------------------------------------------------------

    @invariant()
    def never_twice_at_once(self) -> None:
        for task_id, running in self.executing.items():
            assert len(running) <= 1, f"{task_id} runs twice: {running}"

    @invariant()
    def running_work_owns_its_task(self) -> None:
        by_id = index_by_id(self.doc)
        for task_id, running in self.executing.items():
            for worker, token in running:
                role = WF.role(self.workers[worker].role)
                raw = by_id[task_id]
                assert raw["status"] == role.working, f"{task_id} is {raw['status']} while {worker} runs it"
                assert transitions.current_token(raw) == token, f"{task_id}: queue token is not {worker}'s {token}"

    @invariant()
    def none_lost(self) -> None:
        tasks = views(self.doc)
        assert [t.id for t in tasks] == self.ids
        known = WF.known_statuses()
        assert all(t.status in known for t in tasks)

    @invariant()
    def wip_respected(self) -> None:
        tasks = views(self.doc)
        for role in WF.roles.values():
            assert len(scheduler.in_progress(tasks, role)) <= LIMITS[role.name]

    @invariant()
    def working_tasks_are_held_or_recoverable(self) -> None:
        tasks = views(self.doc)
        stuck = {r.task_id for r in recovery.plan(tasks, self.observations(), WF, self.now, this_host=HOST)}
        for task in tasks:
            if task.status in ("in_progress", "testing"):
                lease = self.files.get(task.id)
                live = lease is not None and self.workers[lease.worker].holds.get(task.id) == lease.token
                assert live or task.id in stuck, f"{task.id} is stuck in {task.status} with nobody holding it"


Protocol.TestCase.settings = settings(max_examples=examples(300, 100), stateful_step_count=30, deadline=None)
TestProtocol = Protocol.TestCase


def check_all(machine: Protocol) -> None:
    machine.never_twice_at_once()
    machine.running_work_owns_its_task()
    machine.none_lost()
    machine.wip_respected()
    machine.working_tasks_are_held_or_recoverable()


def test_a_hung_worker_that_resumes_cannot_complete_a_task_it_lost() -> None:
    """The fencing scenario step by step: hang, lease goes stale, a peer re-claims, the old one wakes and finishes."""
    machine = Protocol()
    steps = [
        lambda: machine.claim("w1"),
        lambda: machine.hang("w1"),
        lambda: machine.time_passes(61),
        lambda: machine.claim("w2"),
        lambda: machine.resume_or_restart("w1"),
        lambda: machine.finish("w1", True),
    ]
    for step in steps:
        step()
        check_all(machine)
    assert machine.executing["t0"] == [("w2", 2)]
    assert index_by_id(machine.doc)["t0"]["status"] == "in_progress"
