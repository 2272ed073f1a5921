"""One pass of a role's daemon, as a single queue transaction: record the runs that ended, recover stale leases,
unblock tasks, and claim as many as there is room for.

One transaction per pass keeps agentd's cost per task close to the cost of one locked rewrite of the queue. The
transaction's change may run more than once (a hand edit meanwhile): leases created on an earlier try are kept and
reused, and those not claimed in the end are released. Everything goes through the project's
:class:`~agentd.store.base.Store`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta

from agentd import faults
from agentd.config import Config
from agentd.core import control, scheduler, transitions
from agentd.core.clock import Clock
from agentd.core.model import Task
from agentd.core.record import MutableRecord, Record, set_field
from agentd.core.scheduler import Decision, LeaseObservation, View
from agentd.core.validate import Finding
from agentd.core.workflow import Role
from agentd.run import recovery
from agentd.run.execution import Executor, Running
from agentd.run.taskviews import Changes, TaskViews
from agentd.store.base import HeldLease, Snapshot, Store, Txn, new_record
from agentd.workspaces import settings as workspaces

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("agentd.daemon")


class Claim(Record):
    """A task claimed in this pass: its lease and the task as written (for the command's placeholders)."""

    _fields = ("task_id", "held", "raw", "workspace")

    task_id: str
    held: HeldLease
    raw: dict[str, Any]
    workspace: str | None = None  # whose worktree it runs in (worktree mode: a subtask shares its parent's)

    def __init__(self, task_id: str, held: HeldLease, raw: dict[str, Any], workspace: str | None = None) -> None:
        set_field(self, "task_id", task_id)
        set_field(self, "held", held)
        set_field(self, "raw", raw)
        set_field(self, "workspace", workspace)


class PassResult(MutableRecord):
    """What one pass did and saw."""

    _fields = (
        "finished",
        "recovered",
        "killed",
        "unblocked",
        "claims",
        "claimable",
        "recount",
        "room",
        "busy",
        "limit",
        "waits",
        "stop",
        "quarantined",
        "expired",
        "timers",
    )
    _no_repr = ("recount",)

    finished: list[tuple[Running, Decision | str]]
    recovered: list[recovery.Recovery]
    killed: list[recovery.Recovery]  # hung holders on this kernel whose processes died
    unblocked: list[str]
    claims: list[Claim]
    claimable: int  # claimable for the role before this pass's claims, counted up to one past the room (see _measure)
    recount: Callable[[], int] | None  # the exact number, when not counted
    room: int
    busy: int  # tasks in the role's working status
    limit: int
    waits: list[datetime]  # not_before of the role's tasks backing off
    stop: list[tuple[str, str]]  # (task, status): runs here whose task was cancelled
    quarantined: dict[str, Finding]  # the read's quarantined tasks (see Snapshot)
    expired: list[tuple[str, str]]  # (task, note): questions unanswered too long
    timers: list[datetime]  # when a waiting question of the role expires

    def __init__(
        self,
        finished: list[tuple[Running, Decision | str]] | None = None,
        recovered: list[recovery.Recovery] | None = None,
        killed: list[recovery.Recovery] | None = None,
        unblocked: list[str] | None = None,
        claims: list[Claim] | None = None,
        claimable: int = 0,
        recount: Callable[[], int] | None = None,
        room: int = 0,
        busy: int = 0,
        limit: int = 0,
        waits: list[datetime] | None = None,
        stop: list[tuple[str, str]] | None = None,
        quarantined: dict[str, Finding] | None = None,
        expired: list[tuple[str, str]] | None = None,
        timers: list[datetime] | None = None,
    ) -> None:
        # (a list or dict not given is a new one, as a dataclass's default_factory makes it)
        self.finished = [] if finished is None else finished
        self.recovered = [] if recovered is None else recovered
        self.killed = [] if killed is None else killed
        self.unblocked = [] if unblocked is None else unblocked
        self.claims = [] if claims is None else claims
        self.claimable = claimable
        self.recount = recount
        self.room = room
        self.busy = busy
        self.limit = limit
        self.waits = [] if waits is None else waits
        self.stop = [] if stop is None else stop
        self.quarantined = {} if quarantined is None else quarantined
        self.expired = [] if expired is None else expired
        self.timers = [] if timers is None else timers

    @property
    def claimable_left(self) -> int:
        return max(0, self.claimable - len(self.claims)) + len(self.waits)

    def waiting(self) -> int:
        """How many claimable tasks wait (counted now if the look did not)."""
        if self.recount is not None:
            self.claimable = self.recount()
            self.recount = None
        return self.claimable


class _Ranking:
    """The claimable tasks of one view, best first, judged only as far as asked for (:func:`scheduler.ranked`)."""

    __slots__ = ("_rest", "done", "found")

    def __init__(self, tasks: Iterator[Task]) -> None:
        self._rest = tasks
        self.found: list[Task] = []  # judged claimable so far, in order
        self.done = False  # every candidate judged

    def first(self, count: int) -> list[Task]:
        """The best ``count`` (fewer when there are not as many)."""
        while len(self.found) < count and not self.done:
            task = next(self._rest, None)
            if task is None:
                self.done = True
            else:
                self.found.append(task)
        return self.found[:count]

    def all(self) -> list[Task]:
        if not self.done:
            self.found.extend(self._rest)
            self.done = True
        return self.found

    def __iter__(self) -> Iterator[Task]:
        index = 0
        while index < len(self.found) or len(self.first(index + 1)) > index:
            yield self.found[index]
            index += 1


def _field(txn: Txn) -> Callable[[str], Any]:
    """A task's ``workspace`` field, as written."""
    return lambda task_id: (txn.task(task_id) or {}).get("workspace")


def waiting_for_answers(tasks: list[Task], role: Role) -> list[Task]:
    """The tasks whose question ``role``'s command asked and nobody has answered yet."""
    return [t for t in tasks if t.status == role.waiting and t.asked_by == role.name and not t.answered]


class Dispatcher:
    """Decides and writes one pass for one role (the daemon owns the loop, the clock and the processes)."""

    def __init__(
        self,
        config: Config,
        role: Role,
        store: Store,
        executor: Executor,
        clock: Clock,
        instance: str | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.store = store
        self.executor = executor
        self.clock = clock
        self.instance = instance
        self._views = TaskViews(scheduler.considered(config.workflow))  # (considered, by id), pass to pass
        self._read: Snapshot | None = None  # the read of the look or transaction under way (see _changes_of)
        self._ranked: tuple[View, _Ranking] | None = None  # the claimable tasks of the last view, as far as judged
        self._suspects = recovery.Suspects()  # hung holders seen once, killed only if still so at a later look

    def _ranking(self, view: View) -> _Ranking:
        """:func:`agentd.core.scheduler.ranked` for ``view``, once per view (a pass measures, then claims from it)."""
        if self._ranked is None or self._ranked[0] is not view:
            self._ranked = (view, _Ranking(scheduler.ranked(self.role, view)))
        return self._ranked[1]

    def _claimable(self, view: View) -> list[Task]:
        """:func:`agentd.core.scheduler.claimable` for ``view`` (every task judged)."""
        return self._ranking(view).all()

    def _view(self, tasks: list[Task], seen: Mapping[str, LeaseObservation], now: datetime, snapshot: Snapshot) -> View:
        # Every member of a cycle is quarantined by the read, so there is no cycle to look for. Selection looks only
        # at the tasks in a status it considers (on a big queue most are done: no pass walks them again and again).
        quarantined = {task_id: problem.text for task_id, problem in snapshot.quarantined.items()}
        considered, by_id = self._considered_of(tasks)
        return View.build(
            considered,
            self.config.workflow,
            now,
            seen,
            self.role.lease_ttl,
            acyclic=True,
            quarantined=quarantined,
            archived=snapshot.archived,
            by_id=by_id,
        )

    def _considered_of(self, tasks: list[Task]) -> tuple[list[Task], dict[str, Task]]:
        """The tasks in a status selection considers, and every task by id (patched where the views changed since
        the last look: see :mod:`agentd.run.taskviews`)."""
        return self._views.of(tasks, self._changes_of(tasks))

    def _changes_of(self, tasks: list[Task]) -> Changes | None:
        """Where ``tasks``, when it is the very list of views of the read under way, may differ from an earlier
        read's (see :meth:`agentd.store.base.Snapshot.tasks_changed_since`); else None."""
        read = self._read
        return read.tasks_changed_since if read is not None and tasks is read.tasks else None

    def _plan(
        self, tasks: list[Task], seen: Mapping[str, LeaseObservation], now: datetime, held: set[str]
    ) -> list[recovery.Recovery]:
        considered, by_id = self._considered_of(tasks)  # (the working statuses are among those considered)
        return recovery.plan(considered, seen, self.config.workflow, now, held=held, by_id=by_id)

    def _confirmed(self, plans: list[recovery.Recovery]) -> list[recovery.Recovery]:
        """The plans to apply: a hung holder's only once it still looks hung at a later look (see
        :class:`agentd.run.recovery.Suspects`: a holder coming back looks hung for an instant)."""
        kept, new, cleared = self._suspects.sift(plans, self.clock.monotonic())
        for item in new:
            lease = item.lease
            log.warning(
                "%s: its holder looks hung (%s; pid %s on %s, lock held); killed if it still does in %g s",
                item.task_id,
                item.cause,
                lease.pid if lease else "?",
                lease.host if lease else "?",
                self._suspects.confirm,
            )
        for task_id in cleared:
            log.info("%s: its holder no longer looks hung (it beat again, or let its lease go); not killed", task_id)
        return kept

    def _measure(
        self, data: dict[str, Any], tasks: list[Task], view: View, room_cap: int | None, *, count: bool = True
    ) -> PassResult:
        """WIP room and what is claimable; ``count=False``: with no room, only whether anything is (a look made on
        every queue change by every daemon of a role whose WIP is full need not rank thousands of tasks)."""
        limits: dict[str, int] = dict(data.get("wip_limits") or {})
        room = scheduler.wip_room(view.tasks, self.role, limits, view.leases, view.now, view.quarantined)
        if room_cap is not None:
            room = max(0, min(room, room_cap))
        recount = None
        limited = self.role.max_waiting is not None or self.role.waiting_expiry is not None
        asking = waiting_for_answers(tasks, self.role) if limited else []  # a pass over every task: only if used
        if not control.may_take_new(len(asking), self.role.max_waiting):
            claimable = sum(1 for _ in self._eligible(view, len(asking)))  # answered ones only: few, counted always
        elif count or room > 0:
            # Counted up to one past the room: what the pass compares it with (whether some would be left, whether the
            # WIP is full), never past it. A log line that says how many wait counts them all (PassResult.waiting).
            ranking = self._ranking(view)
            claimable = len(ranking.first(max(room, 0) + 1))
            if not ranking.done:
                recount = lambda: len(ranking.all())  # noqa: E731 - for a log line, rarely
        else:
            claimable = int(scheduler.any_claimable(self.role, view))
            recount = lambda: len(scheduler.claimable(self.role, view))  # noqa: E731 - for a log line, rarely
        waits = [
            t.not_before
            for t in view.tasks
            if t.status in self.role.claims and t.not_before and t.not_before > view.now
        ]
        expiry = self.role.waiting_expiry
        timers = []
        if expiry is not None:
            timers = [asked + timedelta(seconds=expiry) for t in asking if (asked := t.asked_at) is not None]
        return PassResult(
            claimable=claimable,
            recount=recount,
            room=room,
            busy=len(scheduler.holders(view.tasks, self.role, view.leases, view.now, view.quarantined)),
            limit=scheduler.wip_limit(self.role, limits),
            waits=waits,
            timers=timers,
        )

    def _eligible(self, view: View, waiting: int) -> Iterable[Task]:
        """What the role may claim now, best first: with ``max_waiting`` of its tasks waiting for answers, only
        answered ones (it resumes them, and takes nothing new)."""
        if control.may_take_new(waiting, self.role.max_waiting):
            return self._ranking(view)  # (judged as far as the caller goes)
        return [task for task in self._claimable(view) if task.answered]

    def _expired(self, tasks: list[Task], now: datetime) -> list[Task]:
        """The role's questions unanswered past its ``waiting_expiry``."""
        if self.role.waiting_expiry is None:
            return []
        return [
            task
            for task in waiting_for_answers(tasks, self.role)
            if (asked := task.asked_at) is not None and control.expired(asked, self.role.waiting_expiry, now)
        ]

    def needed(self, held: set[str], room_cap: int | None) -> tuple[bool, PassResult]:
        """Without the lock: is there anything to recover, unblock or claim? (Most wake-ups find nothing.)"""
        now = self.clock.now()
        snapshot = self._read = self.store.read()
        seen = self.store.leases()
        for task_id, lease in seen.items():
            if lease.error is not None and lease.locked is None:  # left alone: say so (once per path and problem)
                self.store.report(task_id, lease.error)
        tasks = snapshot.tasks
        view = self._view(tasks, seen, now, snapshot)
        seen_now = self._measure(snapshot.data, tasks, view, room_cap, count=False)
        seen_now.stop = scheduler.to_stop(self._views.running(tasks, held), self.config.workflow, held)
        seen_now.quarantined = snapshot.quarantined
        stale = self._plan(tasks, seen, now, held | set(snapshot.quarantined))
        self._confirmed(stale)  # (suspicions begun and ended are said at any look; kills only in the transaction)
        unblock = scheduler.to_unblock(self.config.workflow, view)
        expired = self._expired(tasks, now)
        return bool(stale or unblock or expired or (seen_now.claimable and seen_now.room > 0)), seen_now

    def run(self, done: list[Running], held: set[str], room_cap: int | None) -> PassResult:
        """The pass's one transaction; lease files of finished runs are released by the caller afterwards."""
        outcomes = {run.task_id: self.executor.outcome(run) for run in done}
        acquired: dict[str, HeldLease] = {}
        if done:
            faults.point("complete.before-queue-write")

        def change(txn: Txn) -> PassResult:
            now = self.clock.now()
            self._read = txn.snapshot
            result = PassResult(quarantined=txn.snapshot.quarantined)
            for run in done:
                problem = txn.snapshot.quarantined.get(run.task_id)
                if problem is not None:  # its bytes are left alone; once fixed, recovery puts it back
                    result.finished.append((run, f"the task is quarantined ({problem.text}); not recorded"))
                    continue
                raw = txn.task(run.task_id)
                task = Task.from_dict(raw, index=0, path="") if raw is not None else None
                outcome = outcomes[run.task_id]
                last = self.executor.last_run(run, outcome)
                decided = transitions.complete(
                    raw, task, self.role, outcome, run.token, now, self.config.workflow, last
                )
                result.finished.append((run, decided))
            seen = txn.leases()
            for task_id in acquired:
                seen.pop(task_id, None)  # our own fresh claims from an earlier try of this transaction
            # The views of the file as read (reused from earlier reads), with the tasks changed since rebuilt.
            refreshed = self._views.refreshed
            tasks = txn.snapshot.tasks
            tasks = refreshed(tasks, txn.task, (run.task_id for run in done), self._changes_of(tasks))
            plans = self._confirmed(self._plan(tasks, seen, now, held | set(txn.snapshot.quarantined)))
            stopped: list[recovery.Recovery] = []
            result.recovered = recovery.apply(txn, plans, self.config.workflow, now, stopped)
            result.killed = [item for item in stopped if item.killed]
            for item in result.recovered:
                seen.pop(item.task_id, None)
            tasks = refreshed(tasks, txn.task, (item.task_id for item in result.recovered))
            rule = self.config.workflow.unblock
            for task in scheduler.to_unblock(self.config.workflow, self._view(tasks, seen, now, txn.snapshot)):
                raw = txn.task(task.id)
                if rule is not None and raw is not None and raw["status"] == rule.from_status:
                    raw["status"] = rule.to_status
                    result.unblocked.append(task.id)
            tasks = refreshed(tasks, txn.task, result.unblocked)
            for task in self._expired(tasks, now):
                raw = txn.task(task.id)
                if raw is not None and task.id not in txn.snapshot.quarantined:
                    result.expired.append((task.id, transitions.expire(raw, self.role, now, self.config.workflow)))
            tasks = refreshed(tasks, txn.task, (task_id for task_id, _ in result.expired))
            for run in done:  # ended and recorded here, released right after: their slots are free for these claims
                if (lease := seen.get(run.task_id)) is not None and lease.token == run.token:
                    del seen[run.task_id]
            view = self._view(tasks, seen, now, txn.snapshot)
            measured = self._measure(txn.snapshot.data, tasks, view, room_cap)
            result.claimable, result.recount = measured.claimable, measured.recount
            result.room, result.busy = measured.room, measured.busy
            result.limit, result.waits = measured.limit, measured.waits
            result.timers = measured.timers
            if result.room > 0:
                if done:
                    faults.point("complete.before-claim")
                waiting = len(waiting_for_answers(tasks, self.role)) if self.role.max_waiting is not None else 0
                result.claims = self._claim_all(txn, view, result.room, acquired, now, held, waiting)
            running = held - {run.task_id for run in done}
            result.stop = scheduler.to_stop(self._views.running(tasks, running), self.config.workflow, running)
            return result

        try:
            outcome = self.store.transaction(change, settle_later=True)  # (settled once its starts are made)
        except BaseException:
            for held_lease in acquired.values():
                held_lease.release()
            raise
        finally:
            self._ranked = None
        if done:
            faults.point("complete.after-queue-write")
        claimed = {claim.task_id for claim in outcome.claims}
        for task_id, held_lease in acquired.items():
            if task_id not in claimed:
                held_lease.release()
        return outcome

    def _claim_all(
        self,
        txn: Txn,
        view: View,
        room: int,
        acquired: dict[str, HeldLease],
        now: datetime,
        running: set[str],
        waiting: int,
    ) -> list[Claim]:
        # ``waiting``: the role's questions unanswered, counted over every task (the view holds only the statuses
        # selection considers, not the waiting one).
        # Never a task this daemon still runs (its lease broken by a peer that judged it hung, a queue reverted by
        # hand): one daemon runs a task once at a time, and its own record of the run must not be overwritten.
        eligible = (task for task in self._eligible(view, waiting) if task.id not in running)
        chosen = list(itertools.islice(eligible, max(room, 0)))
        fresh = [task for task in chosen if task.id not in acquired]
        records = {task.id: txn.read_lease(task.id) for task in fresh}
        floors = [transitions.next_token(t, r.token if (r := records[t.id]) else None) - 1 for t in fresh]
        tokens = dict(zip((t.id for t in fresh), txn.issue_tokens(floors), strict=True))
        claims = []
        for task in chosen:
            held = self._lease(txn, task, now, acquired, tokens.get(task.id, 0))
            if held is None:
                continue
            record = held.record
            lease = {
                "owner": record.owner,
                "role": record.role,
                "host": record.host,
                "pid": record.pid,
                "acquired": record.acquired,
                "ttl": record.ttl,
                "token": record.token,
            }
            raw = txn.task(task.id)
            assert raw is not None  # chosen from the views of this very read
            transitions.claim(raw, self.role, lease)
            owner = None
            if self.config.workspaces.enabled:
                owner = workspaces.owner(task.id, lambda t: getattr(view.by_id.get(t), "parent", None), _field(txn))
            claims.append(Claim(task.id, held, dict(raw), owner))
        return claims

    def _lease(
        self, txn: Txn, task: Task, now: datetime, acquired: dict[str, HeldLease], token: int
    ) -> HeldLease | None:
        """The lease for a claim: created (and held) before the queue says so; reused on a re-try. A leftover lease
        whose holder is gone is broken first; one still held means the task is not claimed."""
        held = acquired.get(task.id)
        if held is not None:
            return held
        if not txn.break_free(task.id):  # (nothing to break: True)
            return None
        record = new_record(
            task.id,
            token,
            self.role.name,
            now=now,
            ttl=self.role.lease_ttl,
            heartbeat=self.role.heartbeat,
            attempt=task.attempts + 1,
            instance=self.instance,
            boot=self.clock.boottime(),
        )
        held = txn.claim(record)
        if held is None:
            return None
        acquired[task.id] = held
        faults.point("lease.after-create")
        return held
